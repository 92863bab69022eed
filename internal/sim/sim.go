// Package sim runs the real core, scheduler and autoscaler under simulated
// time: nodes asked of a provider join after a delay, dispatched tasks run
// for a given time, formulas are evaluated on their interval. Nothing
// sleeps and nothing is random, so a run is exact and repeatable; tests use
// it to check how pools grow and shrink with a workload.
package sim

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/lotehq/lote/internal/autoscale"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// Config sets how the simulated world behaves.
type Config struct {
	// Step is the simulated time between two rounds (default 100ms).
	Step time.Duration
	// JoinDelay is how long a provisioned node takes to join.
	JoinDelay time.Duration
	// TaskTime is how long a task runs (default 1s).
	TaskTime func(*core.Task) time.Duration
}

// Sim is one simulated cluster.
type Sim struct {
	cfg   Config
	C     *core.Core
	fx    *coretest.Effects
	Now   time.Time
	start time.Time
	pools map[*core.Pool]*scaled
	ends  map[*core.Task]time.Time // running attempts and when they end
	// Evals records every evaluation, in order.
	Evals []Eval
}

// Eval is one evaluation of a pool's formula.
type Eval struct {
	At     time.Duration // since the start
	Pool   string
	Target int
	Nodes  int // the pool's nodes at evaluation, joined or not
	Err    error
}

type scaled struct {
	f    *autoscale.Formula
	hist *autoscale.History
	last time.Time
}

// New starts an empty simulation at coretest.T0.
func New(cfg Config) *Sim {
	cfg.Step = cmp.Or(cfg.Step, 100*time.Millisecond)
	if cfg.TaskTime == nil {
		cfg.TaskTime = func(*core.Task) time.Duration { return time.Second }
	}
	c, fx := coretest.NewCore(core.Config{})
	return &Sim{cfg: cfg, C: c, fx: fx, Now: coretest.T0, start: coretest.T0,
		pools: map[*core.Pool]*scaled{}, ends: map[*core.Task]time.Time{}}
}

// AutoscalePool creates a managed pool whose formula runs every interval.
func (s *Sim) AutoscalePool(id string, slots int, formula string, interval time.Duration, minN, maxN int) (*core.Pool, error) {
	f, err := autoscale.Compile(formula)
	if err != nil {
		return nil, err
	}
	p, err := s.C.CreatePool(core.PoolSpec{ID: id, Provider: "local", SlotsPerNode: slots, Scaling: core.Scaling{
		Managed: true, MinNodes: minN, MaxNodes: maxN,
		Autoscale: &core.Autoscale{Formula: formula, Interval: interval, Enabled: true},
	}}, s.Now)
	if err != nil {
		return nil, err
	}
	h := autoscale.NewHistory(time.Hour)
	h.SetSampleInterval(interval)
	s.pools[p] = &scaled{f: f, hist: h}
	return p, nil
}

// Elapsed is the simulated time since the start.
func (s *Sim) Elapsed() time.Duration { return s.Now.Sub(s.start) }

// Run advances until done reports true or limit simulated time passed.
func (s *Sim) Run(limit time.Duration, done func() bool) error {
	end := s.Now.Add(limit)
	for !done() {
		if !s.Now.Before(end) {
			return fmt.Errorf("sim: not done after %s", limit)
		}
		s.round()
		s.Now = s.Now.Add(s.cfg.Step)
	}
	return nil
}

// round is what the server does in one step: end the tasks whose time is
// up, join the nodes whose delay passed, evaluate the formulas that are
// due, resize, schedule and start what was dispatched.
func (s *Sim) round() {
	var ended []*core.Task
	for t, at := range s.ends {
		if !at.After(s.Now) {
			ended = append(ended, t)
		}
	}
	slices.SortFunc(ended, func(a, b *core.Task) int { return cmp.Compare(a.Num, b.Num) })
	for _, t := range ended {
		delete(s.ends, t)
		s.C.TaskFinished(t.Node, core.Finish{JobID: t.Job.ID, TaskID: t.ID, Attempt: t.Attempt, EndedAt: s.Now.UnixNano()}, s.Now)
	}
	for _, p := range s.C.Pools() {
		for _, n := range p.SortedNodes() {
			if n.Provisioned && s.Now.Sub(time.Unix(0, n.RequestedAt)) >= s.cfg.JoinDelay {
				if _, _, err := s.C.NodeJoin(core.Join{Name: n.ID, Pool: p, Hostname: n.ID, Slots: p.SlotsPerNode}, s.Now); err != nil {
					panic(fmt.Sprintf("sim: join %s: %v", n.ID, err))
				}
			}
		}
	}
	s.C.SweepNodes(s.Now)
	for _, p := range s.C.Pools() {
		sp := s.pools[p]
		if sp == nil {
			continue
		}
		if s.Now.Sub(sp.last) >= p.Scaling.Autoscale.Interval {
			sp.last = s.Now
			res, err := s.C.Autoscale(p, sp.f, sp.hist, s.Now)
			s.Evals = append(s.Evals, Eval{At: s.Elapsed(), Pool: p.ID, Target: res.TargetNodes, Nodes: len(p.Nodes), Err: err})
		}
		s.C.Resize(p, core.DeallocRequeue, s.Now)
	}
	s.C.Schedule(s.Now)
	s.fx.Commit()
	for _, d := range s.fx.TakeDispatched() {
		t := d.Task
		s.C.TaskStarted(d.Node, t.Job.ID, t.ID, t.Attempt, s.Now)
		s.ends[t] = s.Now.Add(s.cfg.TaskTime(t))
	}
	s.fx.Commit()
}
