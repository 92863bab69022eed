package sched_test

import (
	"fmt"
	"testing"

	"github.com/lotehq/lote/internal/sched"
)

// BenchmarkPlan fills 1,000 empty nodes of 4 slots (plus a prefill of 8)
// from ten equal-priority queues with a million tasks each, the pass a
// scheduler makes when a large pool comes up.
func BenchmarkPlan(b *testing.B) {
	const nodes, slots = 1000, 12
	benches := []struct {
		name  string
		node  func(i int) sched.Node
		req   sched.Request
		prios int // distinct priority levels among the queues
	}{
		{"slots", func(int) sched.Node { return sched.Node{FreeSlots: slots} }, sched.Request{}, 1},
		{"cores and memory", func(int) sched.Node { return sched.Node{FreeSlots: slots, FreeCores: 8, FreeMemory: 32 << 30} },
			sched.Request{Cores: 1, Memory: 2 << 30}, 1},
		{"labels on a tenth of the nodes", func(i int) sched.Node {
			return sched.Node{FreeSlots: slots, Labels: map[string]string{"gpu": fmt.Sprint(i%10 == 0)}}
		}, sched.Request{Labels: map[string]string{"gpu": "true"}}, 1},
		{"priority levels", func(int) sched.Node { return sched.Node{FreeSlots: slots} }, sched.Request{}, 10},
	}
	for _, bb := range benches {
		for _, policy := range []sched.Policy{sched.Spread, sched.Pack} {
			b.Run(fmt.Sprintf("%s/policy=%d", bb.name, policy), func(b *testing.B) {
				base := make([]sched.Node, nodes)
				for i := range base {
					base[i] = bb.node(i)
				}
				free := make([]sched.Node, nodes)
				queues := make([]*queue, 10)
				qs := make([]sched.Queue, len(queues))
				placed := 0
				for b.Loop() {
					copy(free, base)
					for i := range queues {
						queues[i] = &queue{prio: i % bb.prios, req: bb.req, count: 1_000_000}
						qs[i] = queues[i]
					}
					out := sched.Plan(free, qs, policy)
					for _, n := range out.Placed {
						placed += n
					}
				}
				b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "tasks/s")
				b.ReportMetric(float64(placed)/float64(b.N), "tasks/op")
			})
		}
	}
}
