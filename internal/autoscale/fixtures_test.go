package autoscale

import (
	"testing"
	"time"

	"github.com/expr-lang/expr/vm"
)

// monday9 is a weekday morning in UTC, the default evaluation time.
var monday9 = time.Date(2024, 5, 6, 9, 0, 0, 0, time.UTC)

// pend is an observation with only pending_tasks set.
func pend(n int) Metrics { return Metrics{PendingTasks: n} }

// hist returns a History whose samples ms are taken every `every`, the last
// one `every` before now.
func hist(now time.Time, every time.Duration, ms ...Metrics) *History {
	h := NewHistory(time.Hour)
	for i, m := range ms {
		h.Add(now.Add(-time.Duration(len(ms)-i)*every), m)
	}
	return h
}

// at returns a History holding one sample per offset before now, in seconds.
func at(now time.Time, m Metrics, secondsAgo ...int) *History {
	h := NewHistory(time.Hour)
	for _, s := range secondsAgo {
		h.Add(now.Add(-time.Duration(s)*time.Second), m)
	}
	return h
}

func mustCompile(t testing.TB, src string) *Formula {
	t.Helper()
	f, err := Compile(src)
	if err != nil {
		t.Fatalf("Compile(%q): %v", src, err)
	}
	return f
}

// evalNumber runs a formula and returns its raw number, before rounding and
// bounds, to check window functions exactly.
func evalNumber(t *testing.T, src string, now time.Time, cur Metrics, h *History) float64 {
	t.Helper()
	f := mustCompile(t, src)
	machine := vm.VM{MemoryBudget: memoryBudget}
	out, err := machine.Run(f.program, (&evaluation{now: now, cur: cur, h: h}).env())
	if err != nil {
		t.Fatalf("run %q: %v", src, err)
	}
	n, ok := number(out)
	if !ok {
		t.Fatalf("run %q: got %#v, want a number", src, out)
	}
	return n
}

// joined is a connected node running `running` tasks, joined at unix nanos t.
func joined(id string, running int, t int64) NodeInfo {
	return NodeInfo{ID: id, Joined: true, Running: running, JoinedAt: t}
}

// requested is a node asked of the provider that has not connected yet.
func requested(id string) NodeInfo { return NodeInfo{ID: id} }

func spot(n NodeInfo) NodeInfo {
	n.Spot = true
	return n
}
