package sched_test

import (
	"fmt"
	"math/rand"
	"slices"
	"testing"

	"github.com/lotehq/lote/internal/sched"
)

// checked wraps a queue and, on every Take, checks the choice against a
// shadow copy of the nodes' free capacity: the task fits, and the node is
// the one the policy prefers.
type checked struct {
	*queue
	t      *testing.T
	shadow []sched.Node
	policy sched.Policy
	placed *[]int // priority of every placement, in order
}

func fitsShadow(n sched.Node, r sched.Request) bool {
	if max(r.Slots, 1) > n.FreeSlots || r.Cores > 0 && r.Cores > n.FreeCores || r.Memory > 0 && r.Memory > n.FreeMemory {
		return false
	}
	for k, v := range r.Labels {
		if n.Labels[k] != v {
			return false
		}
	}
	return true
}

func (c *checked) Take(node int) {
	req, ok := c.queue.Next()
	if !ok {
		c.t.Fatalf("%s: Take without a dispatchable task", c.name)
	}
	s := c.shadow
	if !fitsShadow(s[node], req) {
		c.t.Fatalf("%s: %+v placed on node %d with %+v", c.name, req, node, s[node])
	}
	for i, n := range s {
		if !fitsShadow(n, req) {
			continue
		}
		if c.policy == sched.Spread && n.FreeSlots > s[node].FreeSlots || c.policy == sched.Pack && n.FreeSlots < s[node].FreeSlots {
			c.t.Fatalf("%s: policy %d chose node %d (%d free) over node %d (%d free)", c.name, c.policy, node, s[node].FreeSlots, i, n.FreeSlots)
		}
	}
	s[node].FreeSlots -= max(req.Slots, 1)
	s[node].FreeCores -= req.Cores
	s[node].FreeMemory -= req.Memory
	*c.placed = append(*c.placed, c.prio)
	c.queue.Take(node)
}

func randomRequest(r *rand.Rand) sched.Request {
	req := sched.Request{Slots: r.Intn(3)}
	if r.Intn(3) == 0 {
		req.Cores = 1 + r.Intn(4)
	}
	if r.Intn(4) == 0 {
		req.Memory = int64(1 + r.Intn(8))
	}
	if r.Intn(5) == 0 {
		req.Labels = map[string]string{"zone": fmt.Sprint(r.Intn(3))}
	}
	return req
}

type scenario struct {
	nodes  []sched.Node
	queues []*queue
	policy sched.Policy
}

func randomScenario(r *rand.Rand) scenario {
	var s scenario
	for range 1 + r.Intn(30) {
		n := sched.Node{FreeSlots: r.Intn(7), FreeCores: r.Intn(9), FreeMemory: int64(r.Intn(17))}
		if r.Intn(2) == 0 {
			n.Labels = map[string]string{"zone": fmt.Sprint(r.Intn(3))}
		}
		s.nodes = append(s.nodes, n)
	}
	for i := range 1 + r.Intn(8) {
		q := &queue{name: fmt.Sprint("q", i), prio: r.Intn(3) * 5, req: randomRequest(r), count: r.Intn(40)}
		for range r.Intn(4) {
			q.reqs = append(q.reqs, randomRequest(r))
		}
		if r.Intn(4) == 0 {
			q.limit = 1 + r.Intn(5)
		}
		s.queues = append(s.queues, q)
	}
	s.policy = sched.Policy(r.Intn(2))
	return s
}

// clone copies a scenario so that two runs start from equal state.
func (s scenario) clone() scenario {
	c := scenario{nodes: slices.Clone(s.nodes), policy: s.policy}
	for _, q := range s.queues {
		cp := *q
		cp.reqs = slices.Clone(q.reqs)
		cp.takes = nil
		c.queues = append(c.queues, &cp)
	}
	return c
}

func TestPlanProperties(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	for i := range 3000 {
		s := randomScenario(r)
		var prios []int
		shadow := slices.Clone(s.nodes) // one shadow, updated by every queue's Take
		qs := make([]sched.Queue, len(s.queues))
		for k, q := range s.queues {
			qs[k] = &checked{queue: q, t: t, shadow: shadow, policy: s.policy, placed: &prios}
		}
		out := sched.Plan(s.nodes, qs, s.policy)

		for k, n := range s.nodes {
			if n.FreeSlots != shadow[k].FreeSlots || n.FreeCores != shadow[k].FreeCores || n.FreeMemory != shadow[k].FreeMemory {
				t.Fatalf("scenario %d: node %d after the pass %+v, placements add up to %+v", i, k, n, shadow[k])
			}
			if n.FreeSlots < 0 || n.FreeCores < 0 || n.FreeMemory < 0 {
				t.Fatalf("scenario %d: node %d overcommitted: %+v", i, k, n)
			}
		}
		if !slices.IsSortedFunc(prios, func(a, b int) int { return b - a }) {
			t.Fatalf("scenario %d: placements by priority %v, want highest first", i, prios)
		}
		placedAbove := map[int]bool{}
		for k, q := range s.queues {
			for _, o := range s.queues {
				if o.prio > q.prio && len(o.takes) > 0 {
					placedAbove[k] = true
				}
			}
		}
		for k, q := range s.queues {
			req, more := q.Next()
			switch {
			case out.Placed[k] != len(q.takes):
				t.Fatalf("scenario %d queue %d: outcome says %d placed, queue took %d", i, k, out.Placed[k], len(q.takes))
			case out.Blocked[k] != more:
				t.Fatalf("scenario %d queue %d: blocked %v, but has a dispatchable task: %v", i, k, out.Blocked[k], more)
			case out.Preempted[k] != (out.Blocked[k] && placedAbove[k]):
				t.Fatalf("scenario %d queue %d: preempted %v, blocked %v, higher priority placed %v", i, k, out.Preempted[k], out.Blocked[k], placedAbove[k])
			}
			if more {
				for _, n := range s.nodes {
					if fitsShadow(n, req) {
						t.Fatalf("scenario %d queue %d: left blocked while %+v fits %+v", i, k, req, n)
					}
				}
			}
		}
	}
}

func TestPlanDeterministic(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	for i := range 500 {
		a := randomScenario(r)
		b := a.clone()
		outA := sched.Plan(a.nodes, asQueues(a.queues...), a.policy)
		outB := sched.Plan(b.nodes, asQueues(b.queues...), b.policy)
		if fmt.Sprint(outA) != fmt.Sprint(outB) {
			t.Fatalf("scenario %d: outcomes %+v and %+v", i, outA, outB)
		}
		for k := range a.queues {
			if !slices.Equal(a.queues[k].takes, b.queues[k].takes) {
				t.Fatalf("scenario %d queue %d: placed on %v, then on %v", i, k, a.queues[k].takes, b.queues[k].takes)
			}
		}
	}
}
