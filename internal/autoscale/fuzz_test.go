package autoscale

import (
	"testing"
	"time"
)

// FuzzCompile checks that compiling and evaluating any source never panics,
// and that every successful evaluation respects its bounds.
func FuzzCompile(f *testing.F) {
	h := NewHistory(time.Hour)
	for i := range 20 {
		h.Add(monday9.Add(-time.Duration(i)*30*time.Second), Metrics{PendingTasks: i, PreemptedNodes: i % 3, SlotsPerNode: 4})
	}
	cur := Metrics{PendingTasks: 7, ActiveTasks: 4, RunningTasks: 3, PendingSlots: 9, CurrentNodes: 2, SlotsPerNode: 4}
	bounds := Bounds{Min: 1, Max: 30}
	f.Fuzz(func(t *testing.T, src string) {
		formula, err := Compile(src)
		if err != nil {
			return
		}
		for _, hist := range []*History{nil, h} {
			res, err := formula.Eval(monday9, cur, hist, bounds)
			if err != nil {
				continue
			}
			total := res.TargetNodes + res.TargetSpotNodes
			if res.TargetNodes < 0 || res.TargetSpotNodes < 0 || total < bounds.Min || total > bounds.Max {
				t.Errorf("Eval(%q) = %+v, outside bounds %+v", src, res, bounds)
			}
		}
	})
}
