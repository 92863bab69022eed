package core

// Pools: creation, lookup and their nodes in a stable order.

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// PoolSpec describes a pool to create.
type PoolSpec struct {
	ID           string
	Provider     string
	SlotsPerNode int
	Fill         FillPolicy
	Prefill      int // -1: default
	TargetNodes  int
	Labels       map[string]string
	JoinToken    string
	// AllowRoot lets tasks run as root on agents that run as root; without
	// it such agents drop to their unprivileged run-as user (DESIGN §6).
	AllowRoot bool
	StartTask *StartTask
	// Apps are application packages (NAME@VERSION) every task of the pool gets.
	Apps []string
	// Scaling: autoscale formula, bounds, provider command, prices.
	Scaling Scaling
}

// prefillWindow is how long a node's default prefill should keep its slots
// busy: longer than a report's trip to the server, its group commit (20 ms
// apart by default) and the assignment's trip back.
const prefillWindow = 40 * time.Millisecond

// DefaultPrefill is how many tasks an agent may hold beyond its free slots:
// enough to replace finished tasks without waiting for a round trip. Nodes
// whose tasks run for run (recent average; 0 = not known yet) get enough
// for prefillWindow, up to 16 per slot: tasks of a millisecond would
// otherwise leave slots idle while the server commits, and long tasks gain
// nothing from a deep queue, which would only hold work another node could
// start.
func DefaultPrefill(slots int, run time.Duration) int {
	base := max(2*slots, 4)
	if run <= 0 {
		return base
	}
	want := int64(slots) * int64(prefillWindow) / max(int64(run), 1)
	return int(min(max(want, int64(base)), int64(16*slots)))
}

// CreatePool adds a pool.
func (c *Core) CreatePool(s PoolSpec, now time.Time) (*Pool, error) {
	if !ValidID(s.ID) {
		return nil, fieldErr("id", "must be 1-64 characters of letters, digits, '_' and '-'")
	}
	if _, ok := c.pools[key(s.ID)]; ok {
		return nil, fmt.Errorf("pool %q: %w", s.ID, ErrConflict)
	}
	if s.SlotsPerNode < 0 || s.SlotsPerNode > 1<<16 {
		return nil, fieldErr("slots_per_node", "must be between 0 and 65536")
	}
	if s.Prefill < -1 || s.Prefill > 1<<16 {
		return nil, fieldErr("prefill", "must be between 0 and 65536")
	}
	if err := s.Scaling.validate(); err != nil {
		return nil, err
	}
	p := &Pool{
		ID: s.ID, Provider: s.Provider, SlotsPerNode: s.SlotsPerNode, Fill: s.Fill,
		Prefill: s.Prefill, TargetNodes: s.TargetNodes, Labels: s.Labels, JoinToken: s.JoinToken,
		AllowRoot: s.AllowRoot, StartTask: s.StartTask, Apps: s.Apps, Scaling: s.Scaling,
		CreatedAt: now.UnixNano(), Nodes: map[string]*Node{},
	}
	c.pools[key(p.ID)] = p
	c.fx.SavePool(p)
	return p, nil
}

// Pool finds a pool by ID.
func (c *Core) Pool(id string) *Pool { return c.pools[key(id)] }

// Pools lists pools by ID.
func (c *Core) Pools() []*Pool {
	out := make([]*Pool, 0, len(c.pools))
	for _, p := range c.pools {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Pool) int { return strings.Compare(key(a.ID), key(b.ID)) })
	return out
}

// SortedNodes lists a pool's nodes by ID. The list is cached until a node
// joins or leaves: every scheduling pass needs it. Callers must not modify it.
func (p *Pool) SortedNodes() []*Node {
	if p.sorted != nil {
		return p.sorted
	}
	out := make([]*Node, 0, len(p.Nodes))
	for _, n := range p.Nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *Node) int { return strings.Compare(key(a.ID), key(b.ID)) })
	p.sorted = out
	return out
}
func (p *Pool) addNode(n *Node) {
	p.Nodes[key(n.ID)] = n
	p.sorted = nil
}
func (p *Pool) removeNode(n *Node) {
	delete(p.Nodes, key(n.ID))
	p.sorted = nil
}
func (p *Pool) prefill(n *Node) int {
	if p.Prefill >= 0 {
		return p.Prefill
	}
	return DefaultPrefill(n.Slots, time.Duration(n.runAvg))
}

// noteRun folds an attempt's run time into the node's moving average (one
// eighth weight for the newest), which follows a change of workload within a
// few dozen tasks.
func (n *Node) noteRun(started, ended int64) {
	d := ended - started
	if started == 0 || d <= 0 {
		return
	}
	if n.runAvg == 0 {
		n.runAvg = d
		return
	}
	n.runAvg += (d - n.runAvg) / 8
}
