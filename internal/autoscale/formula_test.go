package autoscale

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/expr-lang/expr/file"
)

// Translations of the example formulas in Azure Batch's autoscale
// documentation (reference/azure-batch.md §2).
const (
	azureTaskBased = `
		let n = coverage(pending_tasks, "3m") < 0.7 ? 1 : avg_over(pending_tasks, "3m");
		{"target_nodes": min(25, n), "deallocation": "task_completion"}`
	azureSpotReplacement = `
		let d = min(25, max_over(preempted_nodes, "3m"));
		{"target_nodes": d, "target_spot_nodes": min(25, 25 - d)}`
	azureTimeOfDay = `
		now.Weekday() >= 1 && now.Weekday() <= 5 && now.Hour() >= 8 && now.Hour() < 18 ? 20 : 10`
	azureIdleShutdown = `
		coverage(pending_tasks, "10m") < 1 ? 4 : (max_over(pending_tasks, "1h") > 0 ? current_nodes : 0)`
)

func TestEvalExamples(t *testing.T) {
	wide := Bounds{Min: 0, Max: 1000}
	tests := []struct {
		name     string
		src      string
		now      time.Time
		cur      Metrics
		h        *History
		bounds   Bounds
		want     Result // Vars not compared
		wantSpot int
	}{
		{
			name: "task-based: no history falls back to one node",
			src:  azureTaskBased, cur: pend(40),
			want: Result{TargetNodes: 1, Deallocation: DeallocTaskCompletion},
		},
		{
			name: "task-based: history under 70% of the window falls back",
			src:  azureTaskBased, cur: pend(40), h: hist(monday9, 30*time.Second, pend(40), pend(40), pend(40)),
			want: Result{TargetNodes: 1, Deallocation: DeallocTaskCompletion},
		},
		{
			name: "task-based: full window averages samples and current value",
			src:  azureTaskBased, cur: pend(12),
			h:    hist(monday9, 30*time.Second, pend(8), pend(8), pend(8), pend(12), pend(12)),
			want: Result{TargetNodes: 10, Deallocation: DeallocTaskCompletion},
		},
		{
			name: "task-based: average rounds up",
			src:  azureTaskBased, cur: pend(3),
			h:    hist(monday9, 30*time.Second, pend(2), pend(2), pend(2), pend(3), pend(3)),
			want: Result{TargetNodes: 3, Deallocation: DeallocTaskCompletion},
		},
		{
			name: "task-based: capped at 25",
			src:  azureTaskBased, cur: pend(400),
			h:    hist(monday9, 30*time.Second, pend(400), pend(400), pend(400), pend(400), pend(400), pend(400)),
			want: Result{TargetNodes: 25, Deallocation: DeallocTaskCompletion},
		},
		{
			name: "spot replacement: no preemption keeps all spot",
			src:  azureSpotReplacement,
			want: Result{TargetNodes: 0, TargetSpotNodes: 25},
		},
		{
			name: "spot replacement: preempted nodes in the window become dedicated",
			src:  azureSpotReplacement, cur: Metrics{PreemptedNodes: 1},
			h:    hist(monday9, time.Minute, Metrics{PreemptedNodes: 4}, Metrics{PreemptedNodes: 2}),
			want: Result{TargetNodes: 4, TargetSpotNodes: 21},
		},
		{
			name: "spot replacement: preemption older than the window is forgotten",
			src:  azureSpotReplacement,
			h:    at(monday9, Metrics{PreemptedNodes: 4}, 600),
			want: Result{TargetNodes: 0, TargetSpotNodes: 25},
		},
		{name: "time of day: Monday 09:00", src: azureTimeOfDay, now: monday9, want: Result{TargetNodes: 20}},
		{name: "time of day: Monday 08:00", src: azureTimeOfDay, now: monday9.Add(-time.Hour), want: Result{TargetNodes: 20}},
		{name: "time of day: Monday 07:59", src: azureTimeOfDay, now: monday9.Add(-61 * time.Minute), want: Result{TargetNodes: 10}},
		{name: "time of day: Monday 18:00", src: azureTimeOfDay, now: monday9.Add(9 * time.Hour), want: Result{TargetNodes: 10}},
		{name: "time of day: Friday 17:59", src: azureTimeOfDay, now: monday9.Add(4*24*time.Hour + 8*time.Hour + 59*time.Minute), want: Result{TargetNodes: 20}},
		{name: "time of day: Saturday 10:00", src: azureTimeOfDay, now: monday9.Add(5*24*time.Hour + time.Hour), want: Result{TargetNodes: 10}},
		{name: "time of day: Sunday 10:00", src: azureTimeOfDay, now: monday9.Add(6*24*time.Hour + time.Hour), want: Result{TargetNodes: 10}},
		{
			name: "time of day: now is taken as UTC",
			src:  azureTimeOfDay, now: time.Date(2024, 5, 6, 9, 0, 0, 0, time.FixedZone("UTC+2", 2*3600)),
			want: Result{TargetNodes: 10}, // 07:00 UTC
		},
		{
			name: "idle shutdown: young history holds the fixed size",
			src:  azureIdleShutdown, cur: Metrics{CurrentNodes: 7},
			want: Result{TargetNodes: 4},
		},
		{
			name: "idle shutdown: tasks within the hour keep the nodes",
			src:  azureIdleShutdown, cur: Metrics{CurrentNodes: 7},
			h:    hist(monday9, 30*time.Second, slices.Concat([]Metrics{pend(3)}, make([]Metrics, 99))...), // 50 minutes ago
			want: Result{TargetNodes: 7},
		},
		{
			name: "idle shutdown: no tasks for an hour empties the pool",
			src:  azureIdleShutdown, cur: Metrics{CurrentNodes: 7},
			h:    hist(monday9, 30*time.Second, make([]Metrics, 120)...),
			want: Result{TargetNodes: 0},
		},
		{name: "min of constant and variable: below", src: `min(4, pending_tasks)`, cur: pend(2), want: Result{TargetNodes: 2}},
		{name: "min of constant and variable: above", src: `min(4, pending_tasks)`, cur: pend(9), want: Result{TargetNodes: 4}},
		{name: "min of constant and variable: none", src: `min(4, pending_tasks)`, want: Result{TargetNodes: 0}},
		{
			name: "slots: pending slots over slots per node rounds up",
			src:  `ceil(pending_slots / slots_per_node)`, cur: Metrics{PendingSlots: 10, SlotsPerNode: 4},
			want: Result{TargetNodes: 3},
		},
		{
			name: "deallocation set in a map",
			src:  `{"target_nodes": 0, "deallocation": "terminate"}`,
			want: Result{TargetNodes: 0, Deallocation: DeallocTerminate},
		},
		{
			name: "map without target_nodes means zero dedicated",
			src:  `{"target_spot_nodes": 3, "deallocation": "requeue"}`,
			want: Result{TargetSpotNodes: 3, Deallocation: DeallocRequeue},
		},
		{
			name: "scalar builtins floor abs round",
			src:  `floor(2.9) + abs(-1) + round(0.4)`,
			want: Result{TargetNodes: 3},
		},
		{
			name: "remainder through int",
			src:  `int(pending_tasks) % 4`, cur: pend(10),
			want: Result{TargetNodes: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = monday9
			}
			b := tt.bounds
			if b == (Bounds{}) {
				b = wide
			}
			got, err := mustCompile(t, tt.src).Eval(now, tt.cur, tt.h, b)
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			got.Vars = nil
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Eval = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWindowFunctions(t *testing.T) {
	// pending_tasks 1, 5, 3, 9 a minute apart, then 2 now; running_tasks 10x.
	h := NewHistory(time.Hour)
	for i, v := range []int{1, 5, 3, 9} {
		h.Add(monday9.Add(-time.Duration(4-i)*time.Minute), Metrics{PendingTasks: v, RunningTasks: 10 * v})
	}
	cur := Metrics{PendingTasks: 2, RunningTasks: 20}
	future := hist(monday9.Add(time.Hour), time.Minute, pend(100))
	atNow := at(monday9, pend(100), 0, 60)

	tests := []struct {
		name string
		src  string
		h    *History
		want float64
	}{
		{"avg over all samples", `avg_over(pending_tasks, "5m")`, h, 4},
		{"sample exactly at the window start is outside", `avg_over(pending_tasks, "4m")`, h, 4.75},
		{"avg over part of the history", `avg_over(pending_tasks, "2m30s")`, h, 14.0 / 3},
		{"max", `max_over(pending_tasks, "5m")`, h, 9},
		{"min", `min_over(pending_tasks, "5m")`, h, 1},
		{"window shorter than the sample spacing holds only the current value", `min_over(pending_tasks, "30s")`, h, 2},
		{"count includes the current value", `count_over(pending_tasks, "5m")`, h, 5},
		{"count over a shorter window", `count_over(pending_tasks, "4m")`, h, 4},
		{"percentile 0 is the minimum", `percentile_over(pending_tasks, 0, "5m")`, h, 1},
		{"percentile 20 is nearest rank 1", `percentile_over(pending_tasks, 20, "5m")`, h, 1},
		{"percentile 50 is nearest rank 3", `percentile_over(pending_tasks, 50, "5m")`, h, 3},
		{"percentile 90 is nearest rank 5", `percentile_over(pending_tasks, 90, "5m")`, h, 9},
		{"percentile 100 is the maximum", `percentile_over(pending_tasks, 100, "5m")`, h, 9},
		{"percentile from an expression", `percentile_over(pending_tasks, 25 * 2, "5m")`, h, 3},
		{"other variables have history too", `avg_over(running_tasks, "5m")`, h, 40},
		{"empty history: avg is the current value", `avg_over(pending_tasks, "5m")`, nil, 2},
		{"empty history: max is the current value", `max_over(pending_tasks, "5m")`, nil, 2},
		{"empty history: min is the current value", `min_over(pending_tasks, "5m")`, nil, 2},
		{"empty history: percentile is the current value", `percentile_over(pending_tasks, 90, "5m")`, nil, 2},
		{"empty history: count is one", `count_over(pending_tasks, "5m")`, nil, 1},
		{"samples after now are ignored", `max_over(pending_tasks, "5m")`, future, 2},
		{"a sample at now yields to the current value", `max_over(pending_tasks, "30s")`, atNow, 2},
		{"window functions compose with scalar ones", `max(avg_over(pending_tasks, "5m"), min_over(pending_tasks, "5m")) + 1`, h, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := evalNumber(t, tt.src, monday9, cur, tt.h); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("%s = %v, want %v", tt.src, got, tt.want)
			}
		})
	}
}

func TestCoverage(t *testing.T) {
	every := func(step time.Duration, span time.Duration) []int {
		var s []int
		for d := step; d <= span; d += step {
			s = append(s, int(d/time.Second))
		}
		return s
	}
	minute := NewHistory(time.Hour)
	minute.SetSampleInterval(time.Minute)
	for _, s := range every(time.Minute, 5*time.Minute) {
		minute.Add(monday9.Add(-time.Duration(s)*time.Second), pend(1))
	}
	tests := []struct {
		name   string
		window string
		h      *History
		want   float64
	}{
		{"no history: the current value covers one interval", "3m", nil, 30.0 / 180},
		{"no history, window within one interval", "10s", nil, 1},
		{"sampled every interval for the whole window", "3m", at(monday9, pend(1), every(30*time.Second, 3*time.Minute)...), 1},
		{"history reaching further back than the window", "3m", at(monday9, pend(1), every(30*time.Second, 10*time.Minute)...), 1},
		{"young history", "3m", at(monday9, pend(1), 30, 60, 90), 120.0 / 180},
		{"missed samples leave a gap", "3m", at(monday9, pend(1), 30, 120, 150), 120.0 / 180},
		{"sampling faster than the interval counts no more", "3m", at(monday9, pend(1), every(10*time.Second, time.Minute)...), 90.0 / 180},
		{"sample interval set on the history", "5m", minute, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := fmt.Sprintf("coverage(pending_tasks, %q)", tt.window)
			if got := evalNumber(t, src, monday9, pend(1), tt.h); math.Abs(got-tt.want) > 1e-12 {
				t.Errorf("%s = %v, want %v", src, got, tt.want)
			}
		})
	}
}

func TestHistory(t *testing.T) {
	t0 := monday9
	tests := []struct {
		name    string
		maxAge  time.Duration
		add     []time.Duration // offsets from t0, in order of Add
		wantLen int
	}{
		{"keeps samples within max age of the newest", 2 * time.Minute, []time.Duration{0, time.Minute, 2 * time.Minute, 3 * time.Minute}, 3},
		{"late sample older than max age is dropped", time.Minute, []time.Duration{5 * time.Minute, 0}, 1},
		{"out of order samples are kept", time.Hour, []time.Duration{2 * time.Minute, 0, time.Minute}, 3},
		{"same instant replaces", time.Hour, []time.Duration{0, time.Minute, 0}, 2},
		{"non-positive max age means the default", 0, []time.Duration{0, DefaultMaxAge, DefaultMaxAge + time.Second}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewHistory(tt.maxAge)
			for i, d := range tt.add {
				h.Add(t0.Add(d), pend(i))
			}
			if h.Len() != tt.wantLen {
				t.Errorf("Len = %d, want %d", h.Len(), tt.wantLen)
			}
			for i := 1; i < len(h.samples); i++ {
				if !h.samples[i-1].at.Before(h.samples[i].at) {
					t.Errorf("samples out of order at %d: %v then %v", i, h.samples[i-1].at, h.samples[i].at)
				}
			}
		})
	}

	t.Run("same instant keeps the later metrics", func(t *testing.T) {
		h := at(monday9, pend(1), 60)
		h.Add(monday9.Add(-time.Minute), pend(7))
		if got := evalNumber(t, `max_over(pending_tasks, "5m")`, monday9, pend(0), h); got != 7 {
			t.Errorf("max_over = %v, want 7", got)
		}
	})
	t.Run("capped at MaxSamples", func(t *testing.T) {
		h := NewHistory(time.Hour)
		for i := range MaxSamples + 5 {
			h.Add(t0.Add(time.Duration(i)*time.Millisecond), pend(i))
		}
		if h.Len() != MaxSamples {
			t.Fatalf("Len = %d, want %d", h.Len(), MaxSamples)
		}
		if got := h.samples[0].m.PendingTasks; got != 5 {
			t.Errorf("oldest kept sample = %d, want 5", got)
		}
	})
}

func TestEvalRoundingAndBounds(t *testing.T) {
	tests := []struct {
		name      string
		src       string
		bounds    Bounds
		wantNodes int
		wantSpot  int
	}{
		{"fraction rounds up", `2.1`, Bounds{0, 100}, 3, 0},
		{"float error does not add a node", `0.1 * 3 * 10`, Bounds{0, 100}, 3, 0},
		{"negative means zero", `-5`, Bounds{0, 100}, 0, 0},
		{"small negative means zero", `-0.5`, Bounds{0, 100}, 0, 0},
		{"huge is clamped to max", `1e300`, Bounds{0, 50}, 50, 0},
		{"below min adds dedicated nodes", `{"target_nodes": 1, "target_spot_nodes": 2}`, Bounds{5, 100}, 3, 2},
		{"zero raised to min", `0`, Bounds{2, 100}, 2, 0},
		{"above max cuts spot first", `{"target_nodes": 3, "target_spot_nodes": 10}`, Bounds{0, 8}, 3, 5},
		{"above max with no spot left cuts dedicated", `{"target_nodes": 3, "target_spot_nodes": 10}`, Bounds{0, 2}, 2, 0},
		{"max zero empties the pool", `{"target_nodes": 3, "target_spot_nodes": 10}`, Bounds{0, 0}, 0, 0},
		{"min equal to max fixes the size", `pending_tasks`, Bounds{4, 4}, 4, 0},
		{"spot fractions round up too", `{"target_spot_nodes": 0.2}`, Bounds{0, 100}, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := mustCompile(t, tt.src).Eval(monday9, pend(40), nil, tt.bounds)
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if got.TargetNodes != tt.wantNodes || got.TargetSpotNodes != tt.wantSpot {
				t.Errorf("targets = %d dedicated, %d spot; want %d, %d", got.TargetNodes, got.TargetSpotNodes, tt.wantNodes, tt.wantSpot)
			}
		})
	}
}

func TestEvalVars(t *testing.T) {
	cur := Metrics{PendingTasks: 1, ActiveTasks: 2, RunningTasks: 3, SucceededTasks: 4, FailedTasks: 5, PendingSlots: 6,
		CurrentNodes: 7, CurrentSpotNodes: 8, IdleNodes: 9, PreemptedNodes: 10, SlotsPerNode: 11}
	want := map[string]float64{
		"pending_tasks": 1, "active_tasks": 2, "running_tasks": 3, "succeeded_tasks": 4, "failed_tasks": 5, "pending_slots": 6,
		"current_nodes": 7, "current_spot_nodes": 8, "idle_nodes": 9, "preempted_nodes": 10, "slots_per_node": 11,
		"now": float64(monday9.Unix()),
	}
	for _, src := range []string{`1`, `"x" + string(pending_tasks) == "" ? 1 : {"bad": 1}`} {
		res, _ := mustCompile(t, src).Eval(monday9, cur, nil, Bounds{0, 10})
		if fmt.Sprint(res.Vars) != fmt.Sprint(want) {
			t.Errorf("Eval(%q).Vars = %v, want %v", src, res.Vars, want)
		}
	}
	// Each variable is readable by name and holds its own value.
	for name, v := range want {
		if name == "now" {
			continue
		}
		if got := evalNumber(t, name, monday9, cur, nil); got != v {
			t.Errorf("%s = %v, want %v", name, got, v)
		}
	}
	if got := evalNumber(t, `now.Unix()`, monday9, cur, nil); got != float64(monday9.Unix()) {
		t.Errorf("now.Unix() = %v, want %v", got, monday9.Unix())
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// at is "line:column" (1-based) of the error, "" when it has none.
		at string
	}{
		{"syntax error", `min(4, pending_tasks`, "1:20"},
		{"syntax error on a later line", "let n = 1;\nn +* 2", "2:4"},
		{"unknown variable", `pending_task + 1`, "1:1"},
		{"window: bad duration", `avg_over(pending_tasks, "5 minutes")`, "1:25"},
		{"window: negative duration", `avg_over(pending_tasks, "-5m")`, "1:25"},
		{"window: duration not a string literal", `avg_over(pending_tasks, 300)`, "1:25"},
		{"window: first argument quoted", `avg_over("pending_tasks", "5m")`, "1:10"},
		{"window: first argument an expression", `max_over(pending_tasks * 2, "5m")`, "1:24"},
		{"window: first argument an unknown name", `min_over(pending, "5m")`, "1:10"},
		{"window: first argument now", `avg_over(now, "5m")`, "1:10"},
		{"window: too few arguments", `percentile_over(pending_tasks, "5m")`, "1:1"},
		{"window: too many arguments", `coverage(pending_tasks, 1, "5m")`, "1:1"},
		{"window: function used as a value", `let f = avg_over; f("pending_tasks", 1)`, "1:9"},
		{"redeclared variable", `let pending_tasks = 1; pending_tasks`, "1:5"},
		{"clock builtin disabled", `now()`, "1:1"},
		{"date builtin disabled", `date("2024-01-01").Hour()`, "1:1"},
		{"string result", `"four"`, ""},
		{"bool result", `pending_tasks > 1`, ""},
		{"array result", `[1, 2]`, ""},
		{"too long", strings.Repeat("1 + ", MaxFormulaLen/4) + "1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Compile(tt.src)
			if err == nil {
				t.Fatalf("Compile(%q) = %v, want an error", tt.src, f.Source())
			}
			var fe *file.Error
			switch {
			case tt.at == "" && errors.As(err, &fe):
				t.Errorf("error has a position, want none: %v", err)
			case tt.at != "" && !errors.As(err, &fe):
				t.Errorf("error has no position, want %s: %v", tt.at, err)
			case tt.at != "":
				if got := fmt.Sprintf("%d:%d", fe.Line, fe.Column+1); got != tt.at {
					t.Errorf("error at %s, want %s: %v", got, tt.at, err)
				}
			}
		})
	}
}

func TestEvalErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// key is the ResultError key expected; "-" when the error is not a ResultError.
		key string
	}{
		{"unknown map key", `{"target_nodes": 1, "nodes": 2}`, "nodes"},
		{"bad deallocation", `{"target_nodes": 1, "deallocation": "drain"}`, "deallocation"},
		{"deallocation not a string", `{"deallocation": 1}`, "deallocation"},
		{"target not a number", `{"target_nodes": "3"}`, "target_nodes"},
		{"spot target NaN", `{"target_spot_nodes": 0 / 0}`, "target_spot_nodes"},
		{"NaN result", `pending_tasks / 0 - pending_tasks / 0`, ""},
		{"infinite result", `1 / 0`, ""},
		{"string result known only at run time", `pending_tasks > 2 ? "three" : 1`, ""},
		{"nil result", `nil`, ""},
		{"map with non-string keys", `groupBy([1, 2], # > 1)`, ""},
		{"percentile out of range", `percentile_over(pending_tasks, 101, "5m")`, "-"},
		{"memory budget", `len(map(1..1000000, #))`, "-"},
		{"too many window calls", `sum(map(1..200, avg_over(pending_tasks, "1m")))`, "-"},
		{"runtime error in expr", `int("x")`, "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := mustCompile(t, tt.src).Eval(monday9, pend(40), nil, Bounds{0, 100})
			if err == nil {
				t.Fatalf("Eval = %+v, want an error", res)
			}
			var re *ResultError
			switch {
			case tt.key == "-" && errors.As(err, &re):
				t.Errorf("got ResultError, want an evaluation error: %v", err)
			case tt.key != "-" && !errors.As(err, &re):
				t.Errorf("got %v, want a ResultError for key %q", err, tt.key)
			case tt.key != "-" && re.Key != tt.key:
				t.Errorf("ResultError key %q, want %q: %v", re.Key, tt.key, err)
			}
			if tt.key != "-" && tt.key != "" && !strings.Contains(err.Error(), tt.key) {
				t.Errorf("error does not name key %q: %v", tt.key, err)
			}
			if res.TargetNodes != 0 || res.TargetSpotNodes != 0 || res.Deallocation != "" {
				t.Errorf("failed Eval returned targets %+v", res)
			}
		})
	}
}

func TestEvalBadBounds(t *testing.T) {
	f := mustCompile(t, `1`)
	for _, b := range []Bounds{{Min: 5, Max: 4}, {Min: -1, Max: 4}} {
		if _, err := f.Eval(monday9, Metrics{}, nil, b); err == nil {
			t.Errorf("Eval with bounds %+v succeeded, want an error", b)
		}
	}
}

func TestFormulaReuse(t *testing.T) {
	f := mustCompile(t, azureTaskBased)
	if f.Source() != azureTaskBased {
		t.Errorf("Source = %q, want %q", f.Source(), azureTaskBased)
	}
	h := hist(monday9, 30*time.Second, pend(8), pend(8), pend(12), pend(12), pend(12))
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			want := 10 + i
			// Each goroutine's current value moves its own average only.
			res, err := f.Eval(monday9, pend(8+6*i), h, Bounds{0, 100})
			if err != nil || res.TargetNodes != want {
				t.Errorf("goroutine %d: Eval = %d, %v; want %d", i, res.TargetNodes, err, want)
			}
		})
	}
	wg.Wait()
}
