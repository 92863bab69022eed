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

// DefaultPrefill is how many tasks an agent may hold beyond its free slots:
// enough to replace a finished task without waiting for a round trip.
func DefaultPrefill(slots int) int { return max(2*slots, 4) }

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
	return DefaultPrefill(n.Slots)
}
