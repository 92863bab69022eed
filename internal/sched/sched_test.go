package sched_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/lotehq/lote/internal/sched"
)

// queue is a fake sched.Queue: a list of requests, then count more copies
// of req, held back by limit like a concurrency cap.
type queue struct {
	name  string
	prio  int
	reqs  []sched.Request // first tasks, head first
	req   sched.Request   // the rest
	count int
	limit int // Next says no after this many takes; 0: no cap

	takes []int     // node of each placement
	log   *[]string // shared placement log: "name@node"
}

func (q *queue) Priority() int { return q.prio }

func (q *queue) Next() (sched.Request, bool) {
	if q.limit > 0 && len(q.takes) >= q.limit {
		return sched.Request{}, false
	}
	if len(q.reqs) > 0 {
		return q.reqs[0], true
	}
	return q.req, q.count > 0
}

func (q *queue) Take(node int) {
	if len(q.reqs) > 0 {
		q.reqs = q.reqs[1:]
	} else {
		q.count--
	}
	q.takes = append(q.takes, node)
	if q.log != nil {
		*q.log = append(*q.log, fmt.Sprintf("%s@%d", q.name, node))
	}
}

// tasks is a queue of n tasks needing req.
func tasks(name string, prio, n int, req sched.Request) *queue {
	return &queue{name: name, prio: prio, req: req, count: n}
}

// free builds nodes with the given free slots and no stated cores or memory.
func free(slots ...int) []sched.Node {
	out := make([]sched.Node, len(slots))
	for i, s := range slots {
		out[i] = sched.Node{FreeSlots: s}
	}
	return out
}

func slotsOf(nodes []sched.Node) []int {
	out := make([]int, len(nodes))
	for i, n := range nodes {
		out[i] = n.FreeSlots
	}
	return out
}

func asQueues(qs ...*queue) []sched.Queue {
	out := make([]sched.Queue, len(qs))
	for i, q := range qs {
		out[i] = q
	}
	return out
}

func TestPlanPolicy(t *testing.T) {
	one := sched.Request{}
	two := sched.Request{Slots: 2}
	tests := []struct {
		name   string
		nodes  []int
		policy sched.Policy
		req    sched.Request
		n      int
		want   []int // free slots after the pass
		sorted bool  // compare as a multiset: ties may go either way
	}{
		{"spread takes the emptiest node", []int{4, 2, 1}, sched.Spread, one, 1, []int{3, 2, 1}, false},
		{"pack takes the fullest node", []int{4, 2, 1}, sched.Pack, one, 1, []int{4, 2, 0}, false},
		{"spread evens out", []int{2, 2, 2}, sched.Spread, one, 3, []int{1, 1, 1}, true},
		{"pack fills a node before the next", []int{2, 2, 2}, sched.Pack, one, 3, []int{0, 1, 2}, true},
		{"spread levels the largest first", []int{5, 1, 3}, sched.Spread, one, 3, []int{3, 1, 2}, false},
		{"pack skips nodes too small", []int{1, 3, 2}, sched.Pack, two, 1, []int{1, 3, 0}, false},
		{"spread with two-slot tasks", []int{1, 3, 2}, sched.Spread, two, 1, []int{1, 1, 2}, false},
		{"no node is large enough", []int{1, 1, 1}, sched.Spread, two, 1, []int{1, 1, 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := free(tt.nodes...)
			sched.Plan(nodes, asQueues(tasks("q", 0, tt.n, tt.req)), tt.policy)
			got := slotsOf(nodes)
			if tt.sorted {
				slices.Sort(got)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("free slots %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPlanRequirements(t *testing.T) {
	labeled := func(slots int, kv ...string) sched.Node {
		n := sched.Node{FreeSlots: slots, Labels: map[string]string{}}
		for i := 0; i < len(kv); i += 2 {
			n.Labels[kv[i]] = kv[i+1]
		}
		return n
	}
	tests := []struct {
		name  string
		nodes []sched.Node
		req   sched.Request
		want  []int // tasks placed per node
	}{
		{"label lands only on matching nodes",
			[]sched.Node{labeled(4), labeled(4, "gpu", "a100"), labeled(4, "gpu", "v100"), labeled(2, "gpu", "a100", "zone", "b")},
			sched.Request{Labels: map[string]string{"gpu": "a100"}}, []int{0, 4, 0, 2}},
		{"every label must match",
			[]sched.Node{labeled(4, "gpu", "a100"), labeled(4, "gpu", "a100", "zone", "b")},
			sched.Request{Labels: map[string]string{"gpu": "a100", "zone": "b"}}, []int{0, 4}},
		{"cores never overcommit",
			[]sched.Node{{FreeSlots: 8, FreeCores: 4}, {FreeSlots: 8, FreeCores: 7}},
			sched.Request{Cores: 3}, []int{1, 2}},
		{"memory never overcommits",
			[]sched.Node{{FreeSlots: 8, FreeMemory: 10}, {FreeSlots: 1, FreeMemory: 100}},
			sched.Request{Memory: 4}, []int{2, 1}},
		{"stated cores never fit a node that states none",
			[]sched.Node{{FreeSlots: 8}}, sched.Request{Cores: 1}, []int{0}},
		{"unstated needs count only slots",
			[]sched.Node{{FreeSlots: 3}}, sched.Request{}, []int{3}},
		{"multi-slot tasks",
			[]sched.Node{{FreeSlots: 3}, {FreeSlots: 4}, {FreeSlots: 1}}, sched.Request{Slots: 2}, []int{1, 2, 0}},
	}
	for _, tt := range tests {
		for _, policy := range []sched.Policy{sched.Spread, sched.Pack} {
			t.Run(fmt.Sprintf("%s/policy %d", tt.name, policy), func(t *testing.T) {
				q := tasks("q", 0, 100, tt.req)
				out := sched.Plan(slices.Clone(tt.nodes), asQueues(q), policy)
				got := make([]int, len(tt.nodes))
				for _, n := range q.takes {
					got[n]++
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("placed per node %v, want %v", got, tt.want)
				}
				if !out.Blocked[0] || out.Placed[0] != len(q.takes) {
					t.Errorf("outcome %+v after %d placements, want blocked", out, len(q.takes))
				}
			})
		}
	}
}

func TestPlanPriorityAndRoundRobin(t *testing.T) {
	tests := []struct {
		name   string
		slots  int
		queues func() []*queue
		want   []string // placements in order
	}{
		{"higher priority is placed first on a full pool", 2, func() []*queue {
			return []*queue{tasks("low", 0, 5, sched.Request{}), tasks("high", 10, 5, sched.Request{})}
		}, []string{"high", "high"}},
		{"levels in order", 5, func() []*queue {
			return []*queue{tasks("low", -3, 5, sched.Request{}), tasks("high", 10, 2, sched.Request{}), tasks("mid", 0, 2, sched.Request{})}
		}, []string{"high", "high", "mid", "mid", "low"}},
		{"equal priority takes turns", 6, func() []*queue {
			return []*queue{tasks("big", 0, 1_000_000, sched.Request{}), tasks("small", 0, 10, sched.Request{})}
		}, []string{"big", "small", "big", "small", "big", "small"}},
		{"three queues take turns", 7, func() []*queue {
			return []*queue{tasks("a", 1, 100, sched.Request{}), tasks("b", 1, 1, sched.Request{}), tasks("c", 1, 100, sched.Request{})}
		}, []string{"a", "b", "c", "a", "c", "a", "c"}},
		{"a queue that runs dry leaves the turn", 5, func() []*queue {
			return []*queue{tasks("a", 0, 1, sched.Request{}), tasks("b", 0, 9, sched.Request{})}
		}, []string{"a", "b", "b", "b", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			qs := tt.queues()
			for _, q := range qs {
				q.log = &log
			}
			sched.Plan(free(tt.slots), asQueues(qs...), sched.Spread)
			var got []string
			for _, l := range log {
				got = append(got, l[:len(l)-2]) // drop "@0"
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("placed %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPlanOutcome(t *testing.T) {
	gpu := sched.Request{Labels: map[string]string{"gpu": "yes"}}
	tests := []struct {
		name      string
		slots     []int
		queues    []*queue
		placed    []int
		blocked   []bool
		preempted []bool
	}{
		{"blocked by higher priority placements",
			[]int{2}, []*queue{tasks("low", 0, 5, sched.Request{}), tasks("high", 10, 5, sched.Request{})},
			[]int{0, 2}, []bool{true, true}, []bool{true, false}},
		{"blocked on a pool already full",
			[]int{0}, []*queue{tasks("low", 0, 5, sched.Request{}), tasks("high", 10, 5, sched.Request{})},
			[]int{0, 0}, []bool{true, true}, []bool{false, false}},
		{"blocked by equal priority is not preempted",
			[]int{1}, []*queue{tasks("a", 0, 5, sched.Request{}), tasks("b", 0, 5, sched.Request{})},
			[]int{1, 0}, []bool{true, true}, []bool{false, false}},
		{"head fitting nowhere lets lower priority use the capacity",
			[]int{2, 2}, []*queue{tasks("high", 10, 5, gpu), tasks("low", 0, 9, sched.Request{})},
			[]int{0, 4}, []bool{true, true}, []bool{false, false}},
		{"large head does not reserve capacity",
			[]int{2, 2}, []*queue{tasks("high", 10, 5, sched.Request{Slots: 3}), tasks("low", 0, 3, sched.Request{})},
			[]int{0, 3}, []bool{true, false}, []bool{false, false}},
		{"capped queue is not blocked",
			[]int{4}, []*queue{{name: "capped", count: 9, limit: 2}, tasks("other", -1, 1, sched.Request{})},
			[]int{2, 1}, []bool{false, false}, []bool{false, false}},
		{"empty queue",
			[]int{4}, []*queue{tasks("empty", 0, 0, sched.Request{})},
			[]int{0}, []bool{false}, []bool{false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := sched.Plan(free(tt.slots...), asQueues(tt.queues...), sched.Spread)
			if !slices.Equal(out.Placed, tt.placed) || !slices.Equal(out.Blocked, tt.blocked) || !slices.Equal(out.Preempted, tt.preempted) {
				t.Errorf("placed %v blocked %v preempted %v, want %v %v %v",
					out.Placed, out.Blocked, out.Preempted, tt.placed, tt.blocked, tt.preempted)
			}
		})
	}
}

func TestPlanNoQueues(t *testing.T) {
	out := sched.Plan(free(1, 2), nil, sched.Pack)
	if len(out.Placed) != 0 || len(out.Blocked) != 0 || len(out.Preempted) != 0 {
		t.Errorf("outcome %+v, want empty", out)
	}
}
