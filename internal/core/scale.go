package core

// Pool sizing: nodes asked of a provider, scale-down by deallocation option,
// spot preemption, and the node time and cost of pools and jobs. The
// autoscaler (internal/autoscale) decides how many nodes; these handlers
// record the decision so the shell's provider calls follow a committed plan.

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/lotehq/lote/internal/autoscale"
)

// Scaling is how a pool's size is decided and what its nodes cost.
type Scaling struct {
	// Managed pools have their nodes created and deleted by the server
	// through their provider; others (static pools, lote up's own pool)
	// get agents started by someone else, and a formula only sets their
	// target.
	Managed   bool       `json:"managed,omitempty"`
	Autoscale *Autoscale `json:"autoscale,omitempty"`
	// MinNodes and MaxNodes bound every size the autoscaler sets (dedicated
	// and spot together); MaxNodes 0 means no bound.
	MinNodes        int `json:"min_nodes,omitempty"`
	MaxNodes        int `json:"max_nodes,omitempty"`
	TargetSpotNodes int `json:"target_spot_nodes,omitempty"`
	// Deallocation is what scale-down does to running tasks; empty means
	// requeue, Azure Batch's default.
	Deallocation Deallocation `json:"deallocation,omitempty"`
	// JoinTimeout is how long a provisioned node may take to join before it
	// is deleted and counted as a resize error.
	JoinTimeout time.Duration `json:"join_timeout,omitempty"`
	Exec        *ExecProvider `json:"exec,omitempty"`
	// Price and SpotPrice are per node-hour, in whatever currency the
	// operator thinks in.
	Price     float64 `json:"price,omitempty"`
	SpotPrice float64 `json:"spot_price,omitempty"`
}

// Autoscale is a pool's formula and how often it is evaluated.
type Autoscale struct {
	Formula  string        `json:"formula"`
	Interval time.Duration `json:"interval"`
	Enabled  bool          `json:"enabled"`
}

// ExecProvider names the user command that creates, lists and deletes the
// machines of a pool with provider exec.
type ExecProvider struct {
	Command string        `json:"command"`
	Args    []string      `json:"args,omitempty"`
	Timeout time.Duration `json:"timeout,omitempty"`
}

// Usage is node time and its cost.
type Usage struct {
	NodeSeconds     float64 `json:"node_seconds,omitempty"`
	SpotNodeSeconds float64 `json:"spot_node_seconds,omitempty"`
	Cost            float64 `json:"cost,omitempty"`
}

// Deallocation is what removing a busy node does to its tasks (Azure
// Batch's nodeDeallocationOption).
type Deallocation string

// Deallocation options.
const (
	DeallocRequeue        Deallocation = "requeue"         // kill, requeue without using a retry
	DeallocTerminate      Deallocation = "terminate"       // kill, the task fails
	DeallocTaskCompletion Deallocation = "task_completion" // no new tasks; go when the running ones end
)

// ParseDeallocation reads a wire deallocation option; empty is requeue.
func ParseDeallocation(s string) (Deallocation, bool) {
	switch d := Deallocation(s); d {
	case "":
		return DeallocRequeue, true
	case DeallocRequeue, DeallocTerminate, DeallocTaskCompletion:
		return d, true
	}
	return "", false
}

// Default bounds of autoscaling.
const (
	DefaultAutoscaleInterval = 30 * time.Second
	MinAutoscaleInterval     = time.Second
	DefaultJoinTimeout       = 10 * time.Minute
	// MaxPoolsPerJob bounds a job's burst list.
	MaxPoolsPerJob = 8
)

func (s *Scaling) validate() error {
	if a := s.Autoscale; a != nil {
		if _, err := autoscale.Compile(a.Formula); err != nil {
			return fieldErr("autoscale.formula", "%v", err)
		}
		if a.Interval == 0 {
			a.Interval = DefaultAutoscaleInterval
		}
		if a.Interval < MinAutoscaleInterval {
			return fieldErr("autoscale.interval", "must be at least 1s")
		}
	}
	switch {
	case s.MinNodes < 0 || s.MinNodes > 100000:
		return fieldErr("min_nodes", "must be between 0 and 100000")
	case s.MaxNodes < 0 || s.MaxNodes > 100000:
		return fieldErr("max_nodes", "must be between 0 and 100000")
	case s.MaxNodes > 0 && s.MaxNodes < s.MinNodes:
		return fieldErr("max_nodes", "must be at least min_nodes (%d)", s.MinNodes)
	case s.TargetSpotNodes < 0 || s.TargetSpotNodes > 100000:
		return fieldErr("target_spot_nodes", "must be between 0 and 100000")
	case s.JoinTimeout < 0:
		return fieldErr("join_timeout", "must not be negative")
	case s.Price < 0 || s.Price != s.Price || s.Price > 1e9:
		return fieldErr("price", "must be between 0 and 1e9")
	case s.SpotPrice < 0 || s.SpotPrice != s.SpotPrice || s.SpotPrice > 1e9:
		return fieldErr("spot_price", "must be between 0 and 1e9")
	}
	if _, ok := ParseDeallocation(string(s.Deallocation)); !ok {
		return fieldErr("deallocation", "must be requeue, terminate or task_completion")
	}
	if s.Exec != nil && s.Exec.Command == "" {
		return fieldErr("exec.command", "is required for provider exec")
	}
	return nil
}

// MaxPoolNodes bounds any pool's target.
const MaxPoolNodes = 100000

// Bounds are the node count limits the autoscaler applies; MaxNodes 0
// means no bound of the pool's own.
func (s *Scaling) Bounds() autoscale.Bounds {
	b := autoscale.Bounds{Min: s.MinNodes, Max: s.MaxNodes}
	if b.Max == 0 {
		b.Max = MaxPoolNodes
	}
	return b
}

// SetAutoscale replaces (or, with nil, removes) a pool's formula.
func (c *Core) SetAutoscale(p *Pool, a *Autoscale) error {
	s := p.Scaling
	s.Autoscale = a
	if err := s.validate(); err != nil {
		return err
	}
	p.Scaling = s
	c.fx.SavePool(p)
	return nil
}

// Metrics observes a pool for its autoscale formula. A job that may burst
// counts its waiting tasks in each of its pools: a later pool only gets
// tasks its earlier pools could not place, and waiting tasks are exactly
// those after a scheduling pass.
func (c *Core) Metrics(p *Pool) autoscale.Metrics {
	m := autoscale.Metrics{SlotsPerNode: max(p.SlotsPerNode, 1)}
	for _, j := range c.jobList {
		if j.State != JobActive || !slices.Contains(j.Pools, p) {
			continue
		}
		m.ActiveTasks += j.Counts[TaskActive]
		m.PendingSlots += j.Counts[TaskActive] * j.headSlots()
		if j.Pool == p {
			m.SucceededTasks += j.Succeeded
			m.FailedTasks += j.Failed
		}
	}
	for _, n := range p.SortedNodes() {
		m.RunningTasks += len(n.tasks)
		m.PendingSlots += n.usedSlots
		switch {
		case n.Preempted:
			// Counted as spot nodes too, as Azure Batch counts them.
			m.PreemptedNodes++
			if n.Spot {
				m.CurrentSpotNodes++
			}
			continue
		case n.Leaving:
			continue
		}
		if n.Spot {
			m.CurrentSpotNodes++
		} else {
			m.CurrentNodes++
		}
		if len(n.tasks) == 0 && !n.Provisioned && n.Connected {
			m.IdleNodes++
		}
	}
	m.PendingTasks = m.ActiveTasks + m.RunningTasks
	return m
}

// headSlots is the slots one of the job's next tasks needs.
func (j *Job) headSlots() int {
	for _, g := range j.Groups[j.openGroup:] {
		if !g.closed && g.cursor < g.count {
			return max(g.TemplateAt(g.cursor).Req.Slots, 1)
		}
	}
	if len(j.ready) > 0 {
		return max(j.ready[0].Template().Req.Slots, 1)
	}
	return 1
}

// ScaleNodes describes the pool's nodes for autoscale.Decide. Preempted
// and leaving nodes are on their way out and not offered.
func (p *Pool) ScaleNodes() []autoscale.NodeInfo {
	var out []autoscale.NodeInfo
	for _, n := range p.SortedNodes() {
		if n.Preempted || n.Leaving {
			continue
		}
		out = append(out, autoscale.NodeInfo{
			ID: n.ID, Spot: n.Spot, Joined: !n.Provisioned, Running: len(n.tasks), JoinedAt: n.JoinedAt,
		})
	}
	return out
}

// Autoscale evaluates a pool's formula on its metrics, which it adds to
// the pool's history, and on success sets the pool's targets.
func (c *Core) Autoscale(p *Pool, f *autoscale.Formula, h *autoscale.History, now time.Time) (autoscale.Result, error) {
	m := c.Metrics(p)
	h.Add(now, m)
	res, err := f.Eval(now, m, h, p.Scaling.Bounds())
	if err == nil {
		c.SetTargets(p, res.TargetNodes, res.TargetSpotNodes)
	}
	return res, err
}

// Resize moves a managed pool toward its targets: it provisions the nodes
// missing and takes out those autoscale.Decide picks, as mode says. It
// returns both for the shell's provider calls.
func (c *Core) Resize(p *Pool, mode Deallocation, now time.Time) (created, removed []*Node) {
	plan := autoscale.Decide(p.ScaleNodes(), autoscale.Result{
		TargetNodes: p.TargetNodes, TargetSpotNodes: p.Scaling.TargetSpotNodes,
	})
	removed = c.ScaleDown(p, plan.Remove, mode, now)
	created = append(c.ProvisionNodes(p, plan.CreateNodes, false, now), c.ProvisionNodes(p, plan.CreateSpotNodes, true, now)...)
	return created, removed
}

// ProvisionNodes records n nodes about to be asked of the pool's provider,
// under IDs POOL-N. They are durable before the provider is called, so a
// machine that never joins is found by its join timeout and one created
// just before a crash is recognised, not leaked.
func (c *Core) ProvisionNodes(p *Pool, n int, spot bool, now time.Time) []*Node {
	out := make([]*Node, 0, n)
	for range n {
		var id string
		for {
			p.NodeSeq++
			suffix := "-" + strconv.Itoa(p.NodeSeq)
			id = p.ID[:min(len(p.ID), 64-len(suffix))] + suffix
			if c.nodes[key(id)] == nil {
				break
			}
		}
		nd := &Node{ID: id, Pool: p, Spot: spot, Provisioned: true, RequestedAt: now.UnixNano(), Slots: p.SlotsPerNode}
		c.nodes[key(id)] = nd
		p.addNode(nd)
		c.fx.SaveNode(nd)
		out = append(out, nd)
	}
	if n > 0 {
		c.fx.SavePool(p)
	}
	return out
}

// ScaleDown takes nodes out of their pool as the deallocation option says.
// It returns the nodes removed now, for the shell to close their streams
// and delete their machines; task_completion nodes go later, through
// SweepNodes, once their running tasks ended. Unknown IDs are skipped.
func (c *Core) ScaleDown(p *Pool, ids []string, mode Deallocation, now time.Time) []*Node {
	var gone []*Node
	for _, id := range ids {
		n := c.nodes[key(id)]
		if n == nil || n.Pool != p {
			continue
		}
		if mode == DeallocTaskCompletion && len(n.tasks) > 0 {
			n.Leaving = true
			p.dirty = true
			for _, t := range n.tasks {
				if t.State == TaskAssigned && !t.revoking {
					t.revoking = true
					c.fx.Revoke(n, t)
				}
			}
			c.fx.SaveNode(n)
			continue
		}
		for _, t := range slices.Clone(n.tasks) {
			c.fx.Kill(n, t.Job.ID, t.ID, t.Attempt)
			switch {
			case t.State == TaskAssigned:
				c.unassign(t)
			case mode == DeallocTerminate:
				c.endInfra(t, "node "+n.ID+" removed by a pool resize (deallocation terminate)", now)
				c.complete(t, now)
			default:
				c.requeueFree(t, "node "+n.ID+" removed by a pool resize", now)
			}
		}
		c.dropNode(n, now)
		gone = append(gone, n)
	}
	return gone
}

// requeueFree returns a task to the queue without using a retry or a
// requeue: the cluster took the node away, the task did nothing wrong.
func (c *Core) requeueFree(t *Task, why string, now time.Time) {
	c.endInfra(t, why, now)
	c.toReady(t)
}

// dropNode forgets a node with no tasks left, adding its time to the pool's
// usage.
func (c *Core) dropNode(n *Node, now time.Time) {
	p := n.Pool
	secs, cost := n.usage(now)
	if n.Spot {
		p.Usage.SpotNodeSeconds += secs
	} else {
		p.Usage.NodeSeconds += secs
	}
	p.Usage.Cost += cost
	delete(c.nodes, key(n.ID))
	p.removeNode(n)
	p.dirty = true
	c.fx.DeleteNode(n)
	c.fx.SavePool(p)
}

// usage is the node's time so far and its price: paid from the request to
// the provider (or the join, for nodes nobody asked for).
func (n *Node) usage(now time.Time) (secs, cost float64) {
	since := n.JoinedAt
	if n.RequestedAt != 0 {
		since = n.RequestedAt
	}
	if since == 0 || now.UnixNano() <= since {
		return 0, 0
	}
	secs = float64(now.UnixNano()-since) / 1e9
	return secs, secs / 3600 * n.price()
}

func (n *Node) price() float64 {
	if n.Spot {
		return n.Pool.Scaling.SpotPrice
	}
	return n.Pool.Scaling.Price
}

// UsageAt is the pool's node time and cost up to now, its live nodes
// included.
func (p *Pool) UsageAt(now time.Time) Usage {
	u := p.Usage
	for _, n := range p.SortedNodes() {
		secs, cost := n.usage(now)
		if n.Spot {
			u.SpotNodeSeconds += secs
		} else {
			u.NodeSeconds += secs
		}
		u.Cost += cost
	}
	return u
}

// account adds an ended attempt's slot time and cost to its job.
func (c *Core) account(t *Task) {
	a, n := &t.Cur, t.Node
	if n == nil || a.StartedAt == 0 || a.EndedAt <= a.StartedAt {
		return
	}
	slots := float64(max(t.Template().Req.Slots, 1))
	secs := float64(a.EndedAt-a.StartedAt) / 1e9 * slots
	nodeSecs := secs / float64(max(n.Slots, 1))
	t.Job.SlotSeconds += secs
	t.Job.NodeSeconds += nodeSecs
	t.Job.Cost += nodeSecs / 3600 * n.price()
	c.fx.SaveJob(t.Job)
}

// PreemptNode is a spot node taken back by its provider: it takes no more
// tasks; its tasks are stopped (SIGTERM, then the agent's grace period, so
// a checkpoint is saved) and requeued without using a retry when their end
// is reported, or at once when they had not started.
func (c *Core) PreemptNode(n *Node, now time.Time) error {
	if n.Provisioned {
		return fmt.Errorf("node %q has not joined yet: %w", n.ID, ErrConflict)
	}
	n.Preempted = true
	n.Pool.dirty = true
	for _, t := range slices.Clone(n.tasks) {
		c.fx.Kill(n, t.Job.ID, t.ID, t.Attempt)
		if t.State == TaskAssigned {
			c.unassign(t)
		}
	}
	c.fx.SaveNode(n)
	return nil
}

// SweepNodes removes provisioned nodes past their join timeout and leaving
// nodes whose tasks ended; in managed pools also preempted nodes once their
// tasks were requeued, and unreachable ones (Tick requeued theirs), so that
// the provider replaces them. It returns both, for the shell to delete their
// machines (and record the timeouts as resize errors).
func (c *Core) SweepNodes(now time.Time) (timedOut, left []*Node) {
	for _, p := range c.Pools() {
		jt := cmp.Or(p.Scaling.JoinTimeout, DefaultJoinTimeout)
		for _, n := range slices.Clone(p.SortedNodes()) {
			switch {
			case n.Provisioned && now.UnixNano()-n.RequestedAt > int64(jt):
				c.dropNode(n, now)
				timedOut = append(timedOut, n)
			case (n.Leaving || (n.Preempted || n.Unreachable) && p.Scaling.Managed) && len(n.tasks) == 0:
				c.dropNode(n, now)
				left = append(left, n)
			}
		}
	}
	return timedOut, left
}

// ForgetProvisioned removes provisioned nodes whose machines the provider
// failed to create.
func (c *Core) ForgetProvisioned(nodes []*Node, now time.Time) {
	for _, n := range nodes {
		if c.nodes[key(n.ID)] == n && n.Provisioned {
			c.dropNode(n, now)
		}
	}
}
