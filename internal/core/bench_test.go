package core_test

import (
	"fmt"
	"testing"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// BenchmarkSchedule measures the core's steady state on a large pool: 1,000
// nodes of 4 slots (default prefill) busy with a 1,000,000-task array; each
// op finishes `per pass` tasks, one per node in turn, then runs one
// scheduling pass that replaces them. tasks/s counts tasks placed.
func BenchmarkSchedule(b *testing.B) {
	for _, perPass := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("per pass=%d", perPass), func(b *testing.B) {
			c := core.New(core.Config{}, coretest.Nop{})
			p := coretest.Pool(c, "p", 4, coretest.Prefill(-1))
			nodes := coretest.Nodes(c, p, "n", 1000, 4)
			j := coretest.Job(c, p, "j")
			coretest.Array(c, j, "0-999999")
			c.Schedule(coretest.T0)
			groups := 1

			placed, next := 0, 0
			for b.Loop() {
				if j.Counts[core.TaskActive] < perPass {
					coretest.Array(c, j, "0-999999", coretest.Prefix(fmt.Sprint("more", groups, "-")))
					groups++
				}
				for range perPass {
					n := nodes[next%len(nodes)]
					next++
					t := n.Tasks()[0]
					c.TaskFinished(n, coretest.Exit(t, 0), coretest.T0)
				}
				before := j.Counts[core.TaskCompleted] + j.Counts[core.TaskActive]
				c.Schedule(coretest.T0)
				placed += before - j.Counts[core.TaskCompleted] - j.Counts[core.TaskActive]
			}
			if placed != perPass*b.N {
				b.Fatalf("placed %d tasks in %d passes of %d", placed, b.N, perPass)
			}
			b.ReportMetric(float64(placed)/b.Elapsed().Seconds(), "tasks/s")
		})
	}
}
