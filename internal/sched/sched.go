// Package sched places waiting tasks on nodes with free capacity. It is pure:
// no I/O, no clock, no goroutines, no map iteration; the same input always
// gives the same placements, so it can be table-tested, property-tested and
// driven by the simulator. The core owns the queues and applies placements
// through Queue.Take.
//
// One pass works priority level by priority level, highest first. Within a
// level, jobs take turns one task at a time (round-robin), so a job with a
// million tasks does not starve a small job submitted after it. A job whose
// next task fits no free node drops out of the pass; lower levels may then
// use the capacity (no reservation, as in Azure Batch).
package sched

// Request is what one task needs. Cores and Memory of zero mean "not stated".
type Request struct {
	Slots  int
	Cores  int
	Memory int64
	Labels map[string]string
	// Exclude, when set, names nodes (by index) the request may not use:
	// a job barred from a node whose job preparation task failed there.
	Exclude func(node int) bool
}

// Node is a node's free capacity as the core sees it at the start of a pass.
// FreeSlots includes the node's prefill allowance (tasks queued on the agent
// ahead of a free slot); cores and memory never overcommit.
type Node struct {
	Slots      int // the node's own slots: a task needing more never fits, prefill or not
	FreeSlots  int
	FreeCores  int
	FreeMemory int64
	Labels     map[string]string
}

// Queue is one job's waiting tasks.
type Queue interface {
	// Priority orders queues: higher goes first.
	Priority() int
	// Next reports the requirements of the task Take would place next, or
	// false when nothing can be dispatched now (empty, or held by a cap).
	Next() (Request, bool)
	// Take places that task on nodes[node].
	Take(node int)
}

// Policy chooses among nodes that fit.
type Policy uint8

// Policies.
const (
	Spread Policy = iota // the node with the most free slots
	Pack                 // the node with the fewest free slots that still fits
)

// Outcome says, per queue in input order, how many tasks were placed and
// whether the queue still had a dispatchable task when the pass ended.
type Outcome struct {
	Placed  []int
	Blocked []bool
	// Preempted marks blocked queues that stopped because higher-priority
	// queues used the capacity this pass rather than because none was free.
	Preempted []bool
}

// Plan places as many tasks as fit. queues must already be in the order the
// caller wants ties broken (the core passes them in job creation order).
func Plan(nodes []Node, queues []Queue, policy Policy) Outcome {
	out := Outcome{
		Placed:    make([]int, len(queues)),
		Blocked:   make([]bool, len(queues)),
		Preempted: make([]bool, len(queues)),
	}
	if len(queues) == 0 {
		return out
	}
	free := newIndex(nodes)
	order := byPriority(queues)
	placedAbove := false
	for start := 0; start < len(order); {
		end := start
		for end < len(order) && queues[order[end]].Priority() == queues[order[start]].Priority() {
			end++
		}
		level := append([]int(nil), order[start:end]...)
		placedHere := false
		for len(level) > 0 {
			kept := level[:0]
			for _, qi := range level {
				q := queues[qi]
				req, ok := q.Next()
				if !ok {
					continue
				}
				n := free.pick(nodes, req, policy)
				if n < 0 {
					out.Blocked[qi] = true
					out.Preempted[qi] = placedAbove
					continue
				}
				free.take(nodes, n, req)
				q.Take(n)
				out.Placed[qi]++
				placedHere = true
				kept = append(kept, qi)
			}
			level = kept
		}
		placedAbove = placedAbove || placedHere
		start = end
	}
	return out
}

// byPriority returns queue positions sorted by descending priority, stable.
func byPriority(queues []Queue) []int {
	order := make([]int, len(queues))
	for i := range order {
		order[i] = i
	}
	// Insertion sort: the queue list is short and usually already sorted.
	for i := 1; i < len(order); i++ {
		for j := i; j > 0 && queues[order[j]].Priority() > queues[order[j-1]].Priority(); j-- {
			order[j], order[j-1] = order[j-1], order[j]
		}
	}
	return order
}

// index buckets nodes by free slots so a placement costs a bucket scan, not
// a scan of every node.
type index struct {
	buckets [][]int // buckets[f] = nodes with f free slots, f ≥ 1
	slot    []int   // position of each node in its bucket
	maxFree int
}

func newIndex(nodes []Node) *index {
	ix := &index{slot: make([]int, len(nodes))}
	for _, n := range nodes {
		ix.maxFree = max(ix.maxFree, n.FreeSlots)
	}
	ix.buckets = make([][]int, ix.maxFree+1)
	for i, n := range nodes {
		if n.FreeSlots > 0 {
			ix.add(i, n.FreeSlots)
		}
	}
	return ix
}

func (ix *index) add(node, f int) {
	ix.slot[node] = len(ix.buckets[f])
	ix.buckets[f] = append(ix.buckets[f], node)
}

func (ix *index) remove(node, f int) {
	b := ix.buckets[f]
	i := ix.slot[node]
	last := b[len(b)-1]
	b[i] = last
	ix.slot[last] = i
	ix.buckets[f] = b[:len(b)-1]
}

// pick returns the node to place req on, or -1. Buckets keep a
// deterministic order (appends and swap-removes only), so the same input
// always gives the same choice.
func (ix *index) pick(nodes []Node, req Request, policy Policy) int {
	slots := max(req.Slots, 1)
	if policy == Pack {
		for f := slots; f <= ix.maxFree; f++ {
			if n := firstFit(nodes, ix.buckets[f], req); n >= 0 {
				return n
			}
		}
		return -1
	}
	for f := ix.maxFree; f >= slots; f-- {
		if n := firstFit(nodes, ix.buckets[f], req); n >= 0 {
			return n
		}
	}
	return -1
}

func firstFit(nodes []Node, bucket []int, req Request) int {
	for _, n := range bucket {
		if fits(&nodes[n], req) && (req.Exclude == nil || !req.Exclude(n)) {
			return n
		}
	}
	return -1
}

func fits(n *Node, req Request) bool {
	if n.Slots > 0 && req.Slots > n.Slots {
		return false
	}
	if req.Cores > 0 && req.Cores > n.FreeCores {
		return false
	}
	if req.Memory > 0 && req.Memory > n.FreeMemory {
		return false
	}
	for k, v := range req.Labels {
		if n.Labels[k] != v {
			return false
		}
	}
	return true
}

func (ix *index) take(nodes []Node, n int, req Request) {
	slots := max(req.Slots, 1)
	f := nodes[n].FreeSlots
	ix.remove(n, f)
	nodes[n].FreeSlots -= slots
	nodes[n].FreeCores -= req.Cores
	nodes[n].FreeMemory -= req.Memory
	if nodes[n].FreeSlots > 0 {
		ix.add(n, nodes[n].FreeSlots)
	}
}
