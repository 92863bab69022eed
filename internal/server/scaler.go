package server

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/autoscale"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/provider"
)

// scaler sizes pools. Every scaleTick it sweeps nodes past their join
// timeout and leaving nodes that emptied, evaluates the formulas that are
// due, and lets the pure autoscale.Decide turn each managed pool's targets
// into a plan. The plan is committed through the core first (a node asked
// of a provider is durable before its machine exists), and only then are
// the providers called, outside the core's lock, one call at a time per
// pool. A provider failure becomes a resize error on the pool and a pause
// before the next try; the server carries on.
type scaler struct {
	s     *Server
	mu    sync.Mutex // after the engine's lock when both are held
	pools map[string]*poolScale
	local *provider.Local // shared: it reaps the agents it started
}

// Timings of the scaler.
const (
	scaleTick      = 250 * time.Millisecond
	keepRuns       = 20 // evaluations and resize errors kept per pool
	reconcileEvery = 30 * time.Second
	historyAge     = 2 * time.Hour
	minBackoff     = 2 * time.Second
	maxBackoff     = time.Minute
)

// poolScale is the scaler's memory of one pool.
type poolScale struct {
	hist     *autoscale.History
	formula  *autoscale.Formula
	lastEval time.Time
	dealloc  core.Deallocation // the last evaluation's, if it set one
	runs     []api.AutoscaleRun
	errs     []api.ResizeError
	busy     bool // a provider call is in flight
	// doomed are nodes the core dropped (join timed out, left) whose
	// machines await deletion until the call in flight returned: a
	// provider never has two calls for a pool at once.
	doomed   []*core.Node
	backoff  time.Duration
	retryAt  time.Time
	lastSeen time.Time // last reconciliation with the provider
	prov     provider.Provider
	provKey  string // what prov was built from
}

// scaleWork is what one provider round does for a pool.
type scaleWork struct {
	pool      string
	ps        *poolScale
	prov      provider.Provider
	create    []*core.Node
	req       provider.CreateRequest
	remove    []*core.Node
	reconcile bool
}

func newScaler(s *Server) *scaler { return &scaler{s: s, pools: map[string]*poolScale{}} }

func (sc *scaler) run(ctx context.Context) {
	t := time.NewTicker(scaleTick)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, w := range sc.tick(ctx) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc.carryOut(ctx, w)
			}()
		}
	}
}

// state is the scaler's memory of p; sc.mu is held.
func (sc *scaler) state(p *core.Pool) *poolScale {
	k := lower(p.ID)
	ps := sc.pools[k]
	if ps == nil {
		ps = &poolScale{hist: autoscale.NewHistory(historyAge)}
		sc.pools[k] = ps
	}
	return ps
}

// tick decides under the core's lock and returns the provider work of the
// committed decisions.
func (sc *scaler) tick(ctx context.Context) []*scaleWork {
	var work []*scaleWork
	seq := sc.s.eng.do(func(c *core.Core, now time.Time) {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		work = sc.decide(c, now)
	})
	if len(work) == 0 {
		return nil
	}
	if err := sc.s.eng.wait(ctx, seq); err != nil {
		// Nothing was promised to a provider; the plan is made again.
		sc.mu.Lock()
		for _, w := range work {
			w.ps.busy = false
		}
		sc.mu.Unlock()
		return nil
	}
	return work
}

func (sc *scaler) decide(c *core.Core, now time.Time) []*scaleWork {
	byPool := map[*core.Pool]*scaleWork{}
	timedOut, left := c.SweepNodes(now)
	for _, n := range timedOut {
		jt := cmp.Or(n.Pool.Scaling.JoinTimeout, core.DefaultJoinTimeout)
		sc.addError(sc.state(n.Pool), now, fmt.Sprintf("node %s did not join within %s; its machine is deleted", n.ID, jt))
	}
	for _, n := range append(timedOut, left...) {
		ps := sc.state(n.Pool)
		ps.doomed = append(ps.doomed, n)
	}
	for _, p := range c.Pools() {
		ps := sc.state(p)
		if a := p.Scaling.Autoscale; a != nil && a.Enabled && now.Sub(ps.lastEval) >= a.Interval {
			ps.hist.SetSampleInterval(a.Interval)
			if run := sc.evaluate(c, p, ps, a.Formula, now); run.Deallocation != "" {
				ps.dealloc = core.Deallocation(run.Deallocation)
			}
		}
		if ps.busy {
			continue
		}
		if len(ps.doomed) > 0 {
			// Not held back by a backoff: a machine nobody uses costs.
			w := sc.work(byPool, p)
			w.remove, ps.doomed = ps.doomed, nil
		}
		if !p.Scaling.Managed || now.Before(ps.retryAt) {
			continue
		}
		mode := cmp.Or(ps.dealloc, p.Scaling.Deallocation, core.DeallocRequeue)
		created, removed := c.Resize(p, mode, now)
		reconcile := now.Sub(ps.lastSeen) >= reconcileEvery
		if len(created)+len(removed) == 0 && !reconcile {
			continue
		}
		w := sc.work(byPool, p)
		w.reconcile = reconcile
		w.remove = append(w.remove, removed...)
		w.create = created
		w.req = provider.CreateRequest{Pool: p.ID, Server: sc.s.advertiseURL(), JoinToken: p.JoinToken, Slots: p.SlotsPerNode}
		for _, n := range w.create {
			w.req.Nodes = append(w.req.Nodes, provider.NodeRequest{ID: n.ID, Spot: n.Spot})
		}
	}
	var work []*scaleWork
	for _, w := range byPool {
		prov, err := sc.provider(c.Pool(w.pool), w.ps)
		if err != nil {
			sc.addError(w.ps, now, err.Error())
			w.ps.busy = false
			continue
		}
		w.prov = prov
		work = append(work, w)
	}
	slices.SortFunc(work, func(a, b *scaleWork) int { return cmp.Compare(a.pool, b.pool) })
	return work
}

func (sc *scaler) work(byPool map[*core.Pool]*scaleWork, p *core.Pool) *scaleWork {
	w := byPool[p]
	if w == nil {
		ps := sc.state(p)
		w = &scaleWork{pool: p.ID, ps: ps}
		ps.busy = true
		byPool[p] = w
	}
	return w
}

// evaluate runs a pool's formula on its metrics, sets its targets and
// keeps the run for pool show.
func (sc *scaler) evaluate(c *core.Core, p *core.Pool, ps *poolScale, formula string, now time.Time) api.AutoscaleRun {
	ps.lastEval = now
	f, err := ps.compile(formula)
	if err != nil {
		return sc.keep(ps, api.AutoscaleRun{Time: now.UTC(), Error: err.Error()})
	}
	res, err := c.Autoscale(p, f, ps.hist, now)
	return sc.keep(ps, runOut(now, res, err, false))
}

// compile returns the pool's compiled formula, compiling it when it changed.
func (ps *poolScale) compile(formula string) (*autoscale.Formula, error) {
	if ps.formula != nil && ps.formula.Source() == formula {
		return ps.formula, nil
	}
	f, err := autoscale.Compile(formula)
	if err == nil {
		ps.formula = f
	}
	return f, err
}

func runOut(now time.Time, res autoscale.Result, err error, dry bool) api.AutoscaleRun {
	run := api.AutoscaleRun{Time: now.UTC(), Vars: res.Vars, DryRun: dry}
	if err != nil {
		run.Error = err.Error()
	} else {
		run.TargetNodes, run.TargetSpotNodes, run.Deallocation = res.TargetNodes, res.TargetSpotNodes, res.Deallocation
	}
	return run
}

func (sc *scaler) keep(ps *poolScale, run api.AutoscaleRun) api.AutoscaleRun {
	ps.runs = append(ps.runs, run)
	if len(ps.runs) > keepRuns {
		ps.runs = slices.Delete(ps.runs, 0, len(ps.runs)-keepRuns)
	}
	return run
}

func (sc *scaler) addError(ps *poolScale, now time.Time, msg string) {
	sc.s.log.Warn("pool resize error", "err", msg)
	ps.errs = append(ps.errs, api.ResizeError{Time: now.UTC(), Message: msg})
	if len(ps.errs) > keepRuns {
		ps.errs = slices.Delete(ps.errs, 0, len(ps.errs)-keepRuns)
	}
}

// provider builds (once per configuration) the provider of a pool.
func (sc *scaler) provider(p *core.Pool, ps *poolScale) (provider.Provider, error) {
	if p == nil {
		return nil, fmt.Errorf("pool gone")
	}
	key := p.Provider
	if e := p.Scaling.Exec; e != nil {
		key = fmt.Sprint(p.Provider, e.Command, e.Args, e.Timeout)
	}
	if ps.prov != nil && ps.provKey == key {
		return ps.prov, nil
	}
	var prov provider.Provider
	var err error
	switch p.Provider {
	case provider.KindLocal:
		if sc.local == nil {
			exe := sc.s.cfg.Exe
			if exe == "" {
				exe, err = os.Executable()
			}
			if err == nil {
				sc.local, err = provider.NewLocal(provider.LocalConfig{
					Exe: exe, DataDir: sc.s.cfg.Dir, Logger: sc.s.log,
					// As lote up's agents: see agent.Config.AdoptTimeout.
					AdoptTimeout: cmp.Or(sc.s.cfg.HeartbeatTimeout, core.DefaultHeartbeatTimeout) / 2,
				})
			}
		}
		prov = sc.local
	case provider.KindExec:
		e := p.Scaling.Exec
		prov, err = provider.NewExec(provider.ExecConfig{Command: e.Command, Args: e.Args, Timeout: e.Timeout})
	default:
		prov, err = provider.New(p.Provider, provider.Config{})
	}
	if err != nil {
		return nil, fmt.Errorf("pool %s: provider %s: %w", p.ID, p.Provider, err)
	}
	ps.prov, ps.provKey = prov, key
	return prov, nil
}

// carryOut calls the provider for one pool's committed plan: machines of
// removed nodes are deleted (their kills went out with the commit), new
// ones created, and, now and then, the provider's machines reconciled with
// the pool's nodes.
func (sc *scaler) carryOut(ctx context.Context, w *scaleWork) {
	failed := false
	fail := func(msg string) {
		failed = true
		sc.mu.Lock()
		sc.addError(w.ps, sc.s.cfg.Now(), msg)
		sc.mu.Unlock()
	}
	if len(w.remove) > 0 {
		ids := nodeIDs(w.remove)
		if err := w.prov.Delete(ctx, w.pool, ids); err != nil {
			fail(err.Error())
		}
		sc.s.dropSessions(w.remove)
	}
	if len(w.create) > 0 {
		w.req.CAPEM = sc.s.caPEM()
		ms, err := w.prov.Create(ctx, w.req)
		if err != nil {
			fail(err.Error())
			sc.forgetMissing(ctx, w, ms)
		}
	}
	if w.reconcile && ctx.Err() == nil {
		if err := sc.reconcile(ctx, w); err != nil {
			fail(err.Error())
		}
	}
	sc.mu.Lock()
	defer sc.mu.Unlock()
	w.ps.busy = false
	if w.reconcile {
		w.ps.lastSeen = sc.s.cfg.Now()
	}
	if failed {
		w.ps.backoff = min(max(2*w.ps.backoff, minBackoff), maxBackoff)
		w.ps.retryAt = sc.s.cfg.Now().Add(w.ps.backoff)
	} else {
		w.ps.backoff = 0
	}
}

// forgetMissing drops the provisioned nodes a failed create did not report
// as made, and deletes their machines in case they exist after all.
func (sc *scaler) forgetMissing(ctx context.Context, w *scaleWork, made []provider.Machine) {
	ok := map[string]bool{}
	for _, m := range made {
		if m.State == "creating" || m.State == "running" {
			ok[lower(m.ID)] = true
		}
	}
	var lost []*core.Node
	for _, n := range w.create {
		if !ok[lower(n.ID)] {
			lost = append(lost, n)
		}
	}
	if len(lost) == 0 {
		return
	}
	seq := sc.s.eng.do(func(c *core.Core, now time.Time) { c.ForgetProvisioned(lost, now) })
	if err := sc.s.eng.wait(ctx, seq); err != nil {
		return
	}
	if err := w.prov.Delete(ctx, w.pool, nodeIDs(lost)); err != nil {
		sc.s.log.Warn("deleting machines of a failed create", "pool", w.pool, "err", err)
	}
}

// reconcile deletes machines the provider has for the pool that the server
// has no node for (made just before a crash, before the server could
// record them as joined, or left behind by a failed delete), and drops
// provisioned nodes whose machine failed.
func (sc *scaler) reconcile(ctx context.Context, w *scaleWork) error {
	ms, err := w.prov.Status(ctx, w.pool)
	if err != nil {
		return err
	}
	var leaked []string
	var failed []*core.Node
	seq := sc.s.eng.do(func(c *core.Core, now time.Time) {
		for _, m := range ms {
			n := c.Node(m.ID)
			switch {
			case m.State == "deleted":
			case n == nil || !lowerEq(n.Pool.ID, w.pool):
				leaked = append(leaked, m.ID)
			case n.Provisioned && m.State == "failed":
				failed = append(failed, n)
			}
		}
		c.ForgetProvisioned(failed, now)
	})
	if err := sc.s.eng.wait(ctx, seq); err != nil {
		return err
	}
	gone := append(slices.Clone(leaked), nodeIDs(failed)...)
	if len(gone) == 0 {
		return nil
	}
	sc.mu.Lock()
	for _, id := range leaked {
		sc.addError(w.ps, sc.s.cfg.Now(), fmt.Sprintf("machine %s has no node in pool %s (leaked by a crash or a failed delete); deleting it", id, w.pool))
	}
	for _, n := range failed {
		sc.addError(w.ps, sc.s.cfg.Now(), fmt.Sprintf("machine of node %s failed; deleting it", n.ID))
	}
	sc.mu.Unlock()
	return w.prov.Delete(ctx, w.pool, gone)
}

// view is what pool show adds from the scaler: the latest evaluations and
// resize errors.
func (sc *scaler) view(p *core.Pool) (runs []api.AutoscaleRun, errs []api.ResizeError) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if ps := sc.pools[lower(p.ID)]; ps != nil {
		return slices.Clone(ps.runs), slices.Clone(ps.errs)
	}
	return nil, nil
}

// dryRun evaluates a formula (the pool's when empty) without applying it.
func (sc *scaler) dryRun(c *core.Core, p *core.Pool, formula string, now time.Time) api.AutoscaleRun {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if formula == "" && p.Scaling.Autoscale != nil {
		formula = p.Scaling.Autoscale.Formula
	}
	f, err := autoscale.Compile(formula)
	if err != nil {
		return api.AutoscaleRun{Time: now.UTC(), DryRun: true, Error: err.Error()}
	}
	res, err := f.Eval(now, c.Metrics(p), sc.state(p).hist, p.Scaling.Bounds())
	return runOut(now, res, err, true)
}

func nodeIDs(nodes []*core.Node) []string {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	return ids
}

func lowerEq(a, b string) bool { return lower(a) == lower(b) }

// deleteMachines deletes the machines of a deleted managed pool's nodes.
func (sc *scaler) deleteMachines(ctx context.Context, p *core.Pool, nodes []*core.Node) {
	sc.mu.Lock()
	ps := sc.state(p)
	nodes = append(slices.Clone(nodes), ps.doomed...)
	var prov provider.Provider
	var err error
	if p.Scaling.Managed && len(nodes) > 0 {
		prov, err = sc.provider(p, ps)
	}
	delete(sc.pools, lower(p.ID))
	sc.mu.Unlock()
	if err == nil && prov != nil {
		err = prov.Delete(ctx, p.ID, nodeIDs(nodes))
	}
	if err != nil {
		sc.s.log.Warn("deleting the machines of a deleted pool", "pool", p.ID, "err", err)
	}
}
