package autoscale

import (
	"math/rand/v2"
	"slices"
	"testing"
)

func TestDecide(t *testing.T) {
	tests := []struct {
		name  string
		nodes []NodeInfo
		r     Result
		want  Plan
	}{
		{
			name: "empty pool grows both kinds",
			r:    Result{TargetNodes: 2, TargetSpotNodes: 3},
			want: Plan{CreateNodes: 2, CreateSpotNodes: 3},
		},
		{
			name:  "requested nodes count toward the target",
			nodes: []NodeInfo{requested("a"), joined("b", 1, 1)},
			r:     Result{TargetNodes: 3},
			want:  Plan{CreateNodes: 1},
		},
		{
			name:  "at target does nothing",
			nodes: []NodeInfo{joined("a", 1, 1), spot(joined("b", 0, 1))},
			r:     Result{TargetNodes: 1, TargetSpotNodes: 1},
			want:  Plan{},
		},
		{
			name: "shrink removes requested, then idle newest first, then fewest running",
			nodes: []NodeInfo{
				joined("busy", 3, 1), joined("one", 1, 9), joined("idle-old", 0, 1),
				joined("idle-new", 0, 5), requested("req"), joined("two", 2, 9),
			},
			r:    Result{TargetNodes: 1},
			want: Plan{Remove: []string{"req", "idle-new", "idle-old", "one", "two"}},
		},
		{
			name:  "equal nodes fall back to ID",
			nodes: []NodeInfo{joined("c", 0, 5), joined("a", 0, 5), joined("b", 0, 5)},
			r:     Result{TargetNodes: 1},
			want:  Plan{Remove: []string{"a", "b"}},
		},
		{
			name:  "requested nodes are ordered by ID",
			nodes: []NodeInfo{requested("r2"), requested("r1"), joined("j", 0, 1)},
			r:     Result{TargetNodes: 1},
			want:  Plan{Remove: []string{"r1", "r2"}},
		},
		{
			name:  "idle spot nodes are not removed to meet the dedicated target",
			nodes: []NodeInfo{joined("d1", 4, 1), joined("d2", 5, 1), spot(joined("s1", 0, 1))},
			r:     Result{TargetNodes: 1, TargetSpotNodes: 1},
			want:  Plan{Remove: []string{"d1"}},
		},
		{
			name:  "spot target zero removes busy spot nodes and keeps idle dedicated ones",
			nodes: []NodeInfo{joined("d1", 0, 1), spot(joined("s1", 2, 1)), spot(joined("s2", 1, 1))},
			r:     Result{TargetNodes: 1},
			want:  Plan{Remove: []string{"s2", "s1"}},
		},
		{
			name:  "shrink one kind while growing the other",
			nodes: []NodeInfo{spot(joined("s1", 0, 1)), spot(requested("s2")), joined("d1", 1, 1)},
			r:     Result{TargetNodes: 3, TargetSpotNodes: 1},
			want:  Plan{CreateNodes: 2, Remove: []string{"s2"}},
		},
		{
			name:  "removals of both kinds share one order",
			nodes: []NodeInfo{joined("d1", 2, 1), joined("d2", 0, 1), spot(joined("s1", 1, 1)), spot(requested("s2"))},
			r:     Result{},
			want:  Plan{Remove: []string{"s2", "d2", "s1", "d1"}},
		},
		{
			name:  "negative targets count as zero",
			nodes: []NodeInfo{joined("d1", 0, 1)},
			r:     Result{TargetNodes: -2, TargetSpotNodes: -1},
			want:  Plan{Remove: []string{"d1"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assertPlan(t, Decide(tt.nodes, tt.r), tt.want)
		})
	}
}

// TestDecideIgnoresInputOrder checks that shuffling the nodes never changes
// the plan, and that Decide leaves its input alone.
func TestDecideIgnoresInputOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		nodes := make([]NodeInfo, 1+rng.IntN(12))
		for i := range nodes {
			nodes[i] = NodeInfo{
				ID:       string(rune('a' + rng.IntN(26))),
				Spot:     rng.IntN(2) == 0,
				Joined:   rng.IntN(3) > 0,
				Running:  rng.IntN(3),
				JoinedAt: int64(rng.IntN(4)),
			}
		}
		r := Result{TargetNodes: rng.IntN(8), TargetSpotNodes: rng.IntN(8)}
		want := Decide(nodes, r)

		shuffled := slices.Clone(nodes)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		before := slices.Clone(shuffled)
		got := Decide(shuffled, r)
		assertPlan(t, got, want)
		if !slices.Equal(before, shuffled) {
			t.Fatalf("round %d: Decide reordered its input", round)
		}

		var dedicated, spotCount int
		for _, n := range nodes {
			if n.Spot {
				spotCount++
			} else {
				dedicated++
			}
		}
		removed := len(got.Remove)
		if kept := dedicated + spotCount - removed + got.CreateNodes + got.CreateSpotNodes; kept != r.TargetNodes+r.TargetSpotNodes {
			t.Fatalf("round %d: plan leaves %d nodes, want %d: %+v", round, kept, r.TargetNodes+r.TargetSpotNodes, got)
		}
	}
}

func assertPlan(t *testing.T, got, want Plan) {
	t.Helper()
	if got.CreateNodes != want.CreateNodes || got.CreateSpotNodes != want.CreateSpotNodes || !slices.Equal(got.Remove, want.Remove) {
		t.Errorf("Decide = %+v, want %+v", got, want)
	}
}
