package autoscale

import (
	"cmp"
	"slices"
)

// NodeInfo is what Decide needs to know of one node of the pool.
type NodeInfo struct {
	ID       string
	Spot     bool
	Joined   bool  // false: asked of the provider, not yet connected
	Running  int   // tasks assigned or running on it
	JoinedAt int64 // unix nanos
}

// Plan is how to move a pool to a Result's targets.
type Plan struct {
	CreateNodes, CreateSpotNodes int
	Remove                       []string // node IDs to remove, in order
}

// Decide compares the pool's nodes with a Result and says what to create and
// what to remove. Dedicated and spot nodes are counted against their own
// targets. Removal takes the cheapest nodes first: not yet joined (nothing
// runs there), then those running fewest tasks (idle ones first), newest
// first among equals, then by ID, so the plan does not depend on input order.
func Decide(nodes []NodeInfo, r Result) Plan {
	var dedicated, spot []NodeInfo
	for _, n := range nodes {
		if n.Spot {
			spot = append(spot, n)
		} else {
			dedicated = append(dedicated, n)
		}
	}
	var p Plan
	p.CreateNodes = max(0, r.TargetNodes-len(dedicated))
	p.CreateSpotNodes = max(0, r.TargetSpotNodes-len(spot))
	remove := slices.Concat(
		cheapest(dedicated, len(dedicated)-max(0, r.TargetNodes)),
		cheapest(spot, len(spot)-max(0, r.TargetSpotNodes)))
	slices.SortFunc(remove, removalOrder)
	for _, n := range remove {
		p.Remove = append(p.Remove, n.ID)
	}
	return p
}

// cheapest returns the n nodes first in removal order (none when n <= 0).
// It sorts nodes in place; Decide owns the slice.
func cheapest(nodes []NodeInfo, n int) []NodeInfo {
	if n <= 0 {
		return nil
	}
	slices.SortFunc(nodes, removalOrder)
	return nodes[:n]
}

// removalOrder is a total order on nodes: not joined first, then fewest
// running tasks, then newest, then ID, then dedicated before spot.
func removalOrder(a, b NodeInfo) int {
	if a.Joined != b.Joined {
		if !a.Joined {
			return -1
		}
		return 1
	}
	if c := cmp.Compare(a.Running, b.Running); c != 0 {
		return c
	}
	if c := cmp.Compare(b.JoinedAt, a.JoinedAt); c != 0 {
		return c
	}
	if c := cmp.Compare(a.ID, b.ID); c != 0 {
		return c
	}
	if a.Spot != b.Spot {
		if !a.Spot {
			return -1
		}
		return 1
	}
	return 0
}
