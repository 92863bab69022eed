package core

// Test-only views of the core's derived state, so the black-box tests in
// package core_test can check it against what they count themselves.

// NodeLoad is the capacity the core counts as used on n.
func NodeLoad(n *Node) (slots, cores int, mem int64) { return n.usedSlots, n.usedCores, n.usedMem }

// NodeCapacity is how many slots n may hold, prefill included.
func NodeCapacity(n *Node) int { return n.Slots + n.Pool.prefill(n) }

// GroupLive counts g's tasks on nodes, as the concurrency cap sees them.
func GroupLive(g *Group) int { return g.live }

// JobReady is j's queue of materialized tasks waiting for another attempt.
func JobReady(j *Job) []*Task { return j.ready }

// TaskRevoking reports whether a revoke of t is in flight.
func TaskRevoking(t *Task) bool { return t.revoking }

// NodeMaxCapacity is the most slots n may hold: with a default prefill that
// shrank after tasks were assigned, n holds more than its capacity now.
func NodeMaxCapacity(n *Node) int {
	if n.Pool.Prefill >= 0 {
		return NodeCapacity(n)
	}
	return n.Slots + DefaultPrefill(n.Slots, 1)
}
