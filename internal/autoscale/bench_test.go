package autoscale

import (
	"testing"
	"time"
)

// BenchmarkEval reports the cost of one evaluation over a full History, for
// a typical formula and for the most window work a formula may ask for.
func BenchmarkEval(b *testing.B) {
	h := NewHistory(24 * time.Hour)
	for i := range MaxSamples {
		h.Add(monday9.Add(-time.Duration(i+1)*time.Second), pend(i%50))
	}
	for _, bc := range []struct{ name, src string }{
		{"task-based", azureTaskBased},
		{"max window calls", `sum(map(1..100, percentile_over(pending_tasks, 50, "24h")))`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			f := mustCompile(b, bc.src)
			for b.Loop() {
				if _, err := f.Eval(monday9, pend(7), h, Bounds{0, 1 << 20}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
