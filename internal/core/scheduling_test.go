package core_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// liveOf lists the live tasks of group g, by ID.
func liveOf(c *core.Core, g *core.Group) []*core.Task {
	var out []*core.Task
	for _, n := range allNodes(c) {
		for _, t := range n.Tasks() {
			if t.Group == g {
				out = append(out, t)
			}
		}
	}
	slices.SortFunc(out, byTaskID)
	return out
}

func TestConcurrencyCap(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		cap     int
		prefill int
	}{
		{"cap of three", "1-100%3", 3, 0},
		{"cap of one runs tasks one by one", "0-19%1", 1, 0},
		{"prefilled tasks count against the cap", "1-100%3", 3, 8},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 4, coretest.Prefill(tt.prefill))
			coretest.Nodes(w.c, p, "n", 4, 4)
			j := coretest.Job(w.c, p, "j")
			g := coretest.Array(w.c, j, tt.spec)
			for left := g.Count(); left > 0; left-- {
				w.schedule()
				checkInvariants(t, w.c)
				live := liveOf(w.c, g)
				if want := min(tt.cap, left); len(live) != want {
					t.Fatalf("%d tasks left: %d live, want %d", left, len(live), want)
				}
				if waiting := left - len(live); waiting > 0 && j.PendingReason != "concurrency_cap" {
					t.Fatalf("%d tasks waiting for the cap, pending reason %q", waiting, j.PendingReason)
				}
				w.start(live[0])
				w.finish(live[0], 0)
			}
			if j.Succeeded != g.Count() {
				t.Errorf("%d succeeded, want %d", j.Succeeded, g.Count())
			}
		})
	}
}

// busyPool adds a pool with one node of two slots, no prefill, both slots
// running tasks of a job "first" that has plenty more waiting.
func busyPool(w *world) (*core.Pool, *core.Job) {
	p := coretest.Pool(w.c, "p", 2)
	coretest.Node(w.c, p, "n1", 2)
	first := coretest.Job(w.c, p, "first")
	coretest.Array(w.c, first, "0-99")
	for _, s := range w.schedule() {
		w.start(s.Task)
	}
	return p, first
}

// finishOldest finishes the running task dispatched earliest.
func finishOldest(w *world) {
	w.t.Helper()
	var oldest *core.Task
	for _, n := range allNodes(w.c) {
		for _, t := range n.Tasks() {
			if t.State == core.TaskRunning && (oldest == nil || t.Cur.AssignedAt < oldest.Cur.AssignedAt ||
				t.Cur.AssignedAt == oldest.Cur.AssignedAt && byTaskID(t, oldest) < 0) {
				oldest = t
			}
		}
	}
	if oldest == nil {
		w.t.Fatal("no running task to finish")
	}
	w.finish(oldest, 0)
}

func TestPriorityTakesFreeSlots(t *testing.T) {
	tests := []struct {
		name     string
		priority int    // of the job submitted second
		want     string // the job the freed slots go to
	}{
		{"higher priority submitted later goes first", 10, "second"},
		{"lower priority submitted later waits", -10, "first"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p, _ := busyPool(w)
			second := coretest.Job(w.c, p, "second", coretest.Priority(tt.priority))
			coretest.Array(w.c, second, "0-99")
			if sent := w.schedule(); len(sent) != 0 {
				t.Fatalf("a full pool dispatched %v", sentIDs(sent))
			}
			for i := range 6 {
				w.advance(1)
				finishOldest(w)
				sent := w.schedule()
				if got := jobsOf(sent); !slices.Equal(got, []string{tt.want}) {
					t.Fatalf("freed slot %d went to %v, want %s", i+1, got, tt.want)
				}
				w.start(sent[0].Task)
			}
		})
	}
}

func TestRoundRobinInOnePass(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "p", 2)
	coretest.Nodes(w.c, p, "n", 4, 2)
	a := coretest.Job(w.c, p, "a")
	coretest.Array(w.c, a, "0-999999")
	b := coretest.Job(w.c, p, "b")
	coretest.Array(w.c, b, "0-9")
	got := jobsOf(w.schedule())
	if want := []string{"a", "b", "a", "b", "a", "b", "a", "b"}; !slices.Equal(got, want) {
		t.Errorf("one pass dispatched jobs %v, want %v", got, want)
	}
}

// TestRoundRobinAcrossPasses frees one slot at a time, as a busy pool does:
// a small job submitted after a large one at the same priority must still
// get every other slot and finish long before it.
func TestRoundRobinAcrossPasses(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "p", 2)
	coretest.Node(w.c, p, "n1", 2)
	a := coretest.Job(w.c, p, "a")
	coretest.Array(w.c, a, "0-999")
	b := coretest.Job(w.c, p, "b")
	coretest.Array(w.c, b, "0-9")
	for b.Counts[core.TaskCompleted] < 10 {
		w.advance(1)
		for _, s := range w.schedule() {
			w.start(s.Task)
		}
		finishOldest(w)
		if a.Succeeded > 30 {
			t.Fatalf("job a finished %d tasks while b finished %d of 10", a.Succeeded, b.Succeeded)
		}
	}
}

func TestDrainedNode(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "p", 1)
	n1 := coretest.Node(w.c, p, "n1", 1)
	coretest.Node(w.c, p, "n2", 1)
	j := coretest.Job(w.c, p, "j")
	coretest.Array(w.c, j, "0-9")
	w.schedule()
	t0, t1 := w.task(j, "0"), w.task(j, "1")
	w.start(t0, t1)
	if t0.Node != n1 {
		t.Fatalf("task 0 on %s, want n1", t0.Node.ID)
	}

	w.c.SetDrained(n1, true)
	if n1.State() != core.NodeOffline {
		t.Errorf("drained node is %s, want offline", n1.State())
	}
	w.finish(t1, 0)
	sent := w.schedule()
	if got := sentIDs(sent); !slices.Equal(got, []string{"n2<-j/2#1"}) {
		t.Errorf("after draining n1 dispatched %v, want task 2 on n2", got)
	}
	if t0.State != core.TaskRunning || t0.Node != n1 {
		t.Errorf("task 0 on the drained node is %s, want still running there", t0.State)
	}
	w.finish(t0, 0)
	if t0.Cur.Result != core.ResultSuccess {
		t.Errorf("report from the drained node gave %s, want success", t0.Cur.Result)
	}
	if sent := w.schedule(); len(sent) != 0 {
		t.Errorf("freed slot on the drained node got %v", sentIDs(sent))
	}

	w.c.SetDrained(n1, false)
	if got := sentIDs(w.schedule()); !slices.Equal(got, []string{"n1<-j/3#1"}) {
		t.Errorf("after resuming n1 dispatched %v, want task 3 on n1", got)
	}
	checkInvariants(t, w.c)
}

func TestPendingReasons(t *testing.T) {
	tests := []struct {
		name  string
		setup func(w *world) *core.Job // returns the job whose reason is checked
		want  string
	}{
		{"all dispatched", func(w *world) *core.Job {
			p := coretest.Pool(w.c, "p", 4)
			coretest.Node(w.c, p, "n1", 4)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-1")
			return j
		}, ""},
		{"pool full", func(w *world) *core.Job {
			p := coretest.Pool(w.c, "p", 1)
			coretest.Node(w.c, p, "n1", 1)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-2")
			return j
		}, "no_capacity"},
		{"slots taken by higher priority", func(w *world) *core.Job {
			p, first := busyPool(w)
			high := coretest.Job(w.c, p, "high", coretest.Priority(5))
			coretest.Array(w.c, high, "0-9")
			w.schedule()
			finishOldest(w)
			return first
		}, "priority"},
		{"held by the concurrency cap", func(w *world) *core.Job {
			p := coretest.Pool(w.c, "p", 4)
			coretest.Node(w.c, p, "n1", 4)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-9%2")
			return j
		}, "concurrency_cap"},
		{"label no node has", func(w *world) *core.Job {
			p := coretest.Pool(w.c, "p", 4)
			coretest.Node(w.c, p, "n1", 4, coretest.Labeled("gpu", "no"))
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-9", coretest.NeedLabels("gpu", "yes"))
			return j
		}, "no_matching_node"},
		{"more cores than any node has", func(w *world) *core.Job {
			p := coretest.Pool(w.c, "p", 4)
			coretest.Node(w.c, p, "n1", 4, coretest.Cores(8))
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-9", coretest.NeedCores(16))
			return j
		}, "no_matching_node"},
		{"the only matching node is drained", func(w *world) *core.Job {
			p := coretest.Pool(w.c, "p", 4)
			n := coretest.Node(w.c, p, "n1", 4, coretest.Labeled("gpu", "yes"))
			coretest.Node(w.c, p, "n2", 4)
			w.c.SetDrained(n, true)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-9", coretest.NeedLabels("gpu", "yes"))
			return j
		}, "no_matching_node"},
		{"label no node has, while a higher priority job places", func(w *world) *core.Job {
			p := coretest.Pool(w.c, "p", 4)
			coretest.Node(w.c, p, "n1", 4)
			high := coretest.Job(w.c, p, "high", coretest.Priority(5))
			coretest.Array(w.c, high, "0-1")
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-9", coretest.NeedLabels("gpu", "yes"))
			return j
		}, "no_matching_node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			j := tt.setup(w)
			w.schedule()
			if j.PendingReason != tt.want {
				t.Errorf("pending reason %q, want %q", j.PendingReason, tt.want)
			}
		})
	}
}

func TestPrefill(t *testing.T) {
	tests := []struct {
		name    string
		slots   int
		prefill int // -1: the default
		opts    []coretest.NodeOpt
		task    []coretest.TaskOpt
		want    int // tasks the node holds
	}{
		{"no prefill", 2, 0, nil, nil, 2},
		{"prefill of three", 2, 3, nil, nil, 5},
		{"default prefill of a small node", 1, -1, nil, nil, 1 + 4},
		{"default prefill of a large node", 8, -1, nil, nil, 8 + 16},
		{"cores never overcommit", 2, 3, []coretest.NodeOpt{coretest.Cores(2)}, []coretest.TaskOpt{coretest.NeedCores(1)}, 2},
		{"memory never overcommits", 2, 3, []coretest.NodeOpt{coretest.Mem(3 << 30)}, []coretest.TaskOpt{coretest.NeedMem(1 << 30)}, 3},
		{"two-slot tasks", 4, 2, nil, []coretest.TaskOpt{coretest.NeedSlots(2)}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", tt.slots, coretest.Prefill(tt.prefill))
			n := coretest.Node(w.c, p, "n1", tt.slots, tt.opts...)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-99", tt.task...)
			if sent := w.schedule(); len(sent) != tt.want || len(n.Tasks()) != tt.want {
				t.Fatalf("node holds %d tasks after %d dispatches, want %d", len(n.Tasks()), len(sent), tt.want)
			}
			w.start(n.Tasks()[0])
			w.finish(n.Tasks()[0], 0)
			if sent := w.schedule(); len(sent) != 1 || len(n.Tasks()) != tt.want {
				t.Fatalf("a finished task was replaced by %d, node holds %d, want 1 and %d", len(sent), len(n.Tasks()), tt.want)
			}
			checkInvariants(t, w.c)
		})
	}
}

// TestSlotsNeverExceedNode checks that prefill is a queue, not capacity: a
// task needing more slots than a node has must never be given to it.
func TestSlotsNeverExceedNode(t *testing.T) {
	for _, fill := range []coretest.PoolOpt{coretest.Pack(), func(*core.PoolSpec) {}} {
		w := newWorld(t)
		p := coretest.Pool(w.c, "p", 1, coretest.Prefill(-1), fill)
		coretest.Node(w.c, p, "small", 1)
		coretest.Node(w.c, p, "big", 4)
		j := coretest.Job(w.c, p, "j")
		coretest.Array(w.c, j, "0-9", coretest.NeedSlots(3))
		for _, s := range w.schedule() {
			if s.Node.ID != "big" {
				t.Errorf("%s fill: a 3-slot task went to %s (%d slots)", p.Fill, s.Node.ID, s.Node.Slots)
			}
		}
	}
}

// prefilledPool is a pool with one node of two slots and prefill two, full
// of tasks of a job "low": two running and two assigned (prefilled).
func prefilledPool(t *testing.T) (w *world, p *core.Pool, low *core.Job, running, prefilled []*core.Task) {
	w = newWorld(t)
	p = coretest.Pool(w.c, "p", 2, coretest.Prefill(2))
	coretest.Node(w.c, p, "n1", 2)
	low = coretest.Job(w.c, p, "low")
	coretest.Array(w.c, low, "0-9")
	sent := w.schedule()
	if len(sent) != 4 {
		t.Fatalf("prefilled pool took %d tasks, want 4", len(sent))
	}
	for _, s := range sent[:2] {
		w.start(s.Task)
		running = append(running, s.Task)
	}
	for _, s := range sent[2:] {
		prefilled = append(prefilled, s.Task)
	}
	return w, p, low, running, prefilled
}

func TestRevokeForHigherPriority(t *testing.T) {
	tests := []struct {
		name     string
		priority int
		revoked  int
	}{
		{"higher priority takes back prefilled tasks", 10, 2},
		{"equal priority waits", 0, 0},
		{"lower priority waits", -10, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, p, _, _, prefilled := prefilledPool(t)
			j := coretest.Job(w.c, p, "other", coretest.Priority(tt.priority))
			coretest.Array(w.c, j, "0")
			if sent := w.schedule(); len(sent) != 0 {
				t.Fatalf("a full pool dispatched %v", sentIDs(sent))
			}
			revoked := w.fx.TakeRevoked()
			if len(revoked) != tt.revoked {
				t.Fatalf("revoked %v, want %d tasks", revoked, tt.revoked)
			}
			for i, r := range revoked {
				if r.Task != prefilled[i] || r.Attempt != 1 {
					t.Errorf("revoked %s, want only prefilled tasks", r)
				}
			}
			w.schedule()
			if again := w.fx.TakeRevoked(); len(again) != 0 {
				t.Errorf("a second pass revoked %v again while the first revokes were in flight", again)
			}
		})
	}
}

func TestRevokeAnswered(t *testing.T) {
	tests := []struct {
		name         string
		startFirst   bool // the agent started the task before the revoke reached it
		revoked      bool
		wantState    core.TaskState
		wantAttempt  int
		highReplaces bool
	}{
		{"revoked", false, true, core.TaskActive, 0, true},
		{"refused", false, false, core.TaskAssigned, 1, false},
		{"started before the answer", true, true, core.TaskRunning, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, p, low, _, prefilled := prefilledPool(t)
			high := coretest.Job(w.c, p, "high", coretest.Priority(10))
			coretest.Array(w.c, high, "0")
			w.schedule()
			task := prefilled[1]
			n := task.Node
			if !core.TaskRevoking(task) {
				t.Fatalf("task %s not being revoked", task.ID)
			}
			if tt.startFirst {
				w.start(task)
			}
			before := low.Counts
			w.c.RevokeAnswered(n, low.ID, task.ID, 1, tt.revoked)
			checkInvariants(t, w.c)
			if task.State != tt.wantState || task.Attempt != tt.wantAttempt || core.TaskRevoking(task) {
				t.Fatalf("task %s attempt %d revoking %v, want %s attempt %d not revoking",
					task.State, task.Attempt, core.TaskRevoking(task), tt.wantState, tt.wantAttempt)
			}
			if tt.wantState == core.TaskActive {
				if task.Node != nil || task.Cur != (core.AttemptRecord{}) || len(task.History) != 0 || task.Requeues != 0 {
					t.Errorf("revoked task kept node %v, attempt %+v, history %v, requeues %d", task.Node, task.Cur, task.History, task.Requeues)
				}
				if low.Counts[core.TaskActive] != before[core.TaskActive]+1 {
					t.Errorf("counts %v, want one more active than %v", low.Counts, before)
				}
			}
			sent := w.schedule()
			if got := slices.Contains(jobsOf(sent), "high"); got != tt.highReplaces {
				t.Errorf("high priority task dispatched: %v, want %v (sent %v)", got, tt.highReplaces, sentIDs(sent))
			}
			if tt.revoked && !tt.startFirst {
				// Drain the node: the revoked task comes back with attempt 1.
				w.runAll(func(*core.Task) int { return 0 })
				if len(task.History) != 0 || task.Cur.Number != 1 {
					t.Errorf("revoked task ran as attempt %d with history %+v, want attempt 1", task.Cur.Number, task.History)
				}
			}
		})
	}
}

func TestLabelsCoresMemory(t *testing.T) {
	tests := []struct {
		name  string
		task  []coretest.TaskOpt
		nodes map[string][]coretest.NodeOpt
		want  map[string]int // tasks per node after one pass
	}{
		{"label lands only on matching nodes", []coretest.TaskOpt{coretest.NeedLabels("gpu", "a100")},
			map[string][]coretest.NodeOpt{
				"cpu":  nil,
				"gpu":  {coretest.Labeled("gpu", "a100")},
				"gpu2": {coretest.Labeled("gpu", "v100")},
			}, map[string]int{"gpu": 4}},
		{"cores bound tasks per node", []coretest.TaskOpt{coretest.NeedCores(2)},
			map[string][]coretest.NodeOpt{"a": {coretest.Cores(4)}, "b": {coretest.Cores(6)}, "c": nil},
			map[string]int{"a": 2, "b": 3}},
		{"memory bounds tasks per node", []coretest.TaskOpt{coretest.NeedMem(3 << 30)},
			map[string][]coretest.NodeOpt{"a": {coretest.Mem(8 << 30)}, "b": {coretest.Mem(2 << 30)}},
			map[string]int{"a": 2}},
		{"unstated needs count only slots", nil,
			map[string][]coretest.NodeOpt{"a": {coretest.Cores(1), coretest.Mem(1)}},
			map[string]int{"a": 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 4)
			for id, opts := range tt.nodes {
				coretest.Node(w.c, p, id, 4, opts...)
			}
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-99", tt.task...)
			w.schedule()
			got := map[string]int{}
			for _, n := range allNodes(w.c) {
				if len(n.Tasks()) > 0 {
					got[n.ID] = len(n.Tasks())
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("tasks per node %v, want %v", got, tt.want)
			}
			checkInvariants(t, w.c)
		})
	}
}

func TestDefaultPrefill(t *testing.T) {
	tests := []struct {
		slots int
		run   time.Duration
		want  int
	}{
		{2, 0, 4},                         // run time not known yet: 2 per slot, at least 4
		{8, 0, 16},                        //
		{2, time.Minute, 4},               // long tasks: no deeper queue
		{2, 10 * time.Millisecond, 8},     // 2 slots × 40 ms / 10 ms
		{2, time.Millisecond, 32},         // capped at 16 per slot
		{4, 4 * time.Millisecond, 40},     // 4 × 40 / 4
		{1, time.Nanosecond, 16},          //
		{64, 100 * time.Millisecond, 128}, // below the floor of 2 per slot
	}
	for _, tt := range tests {
		if got := core.DefaultPrefill(tt.slots, tt.run); got != tt.want {
			t.Errorf("DefaultPrefill(%d, %v) = %d, want %d", tt.slots, tt.run, got, tt.want)
		}
	}
}

// A node's default prefill follows the run time of its tasks: deep for
// tasks of a millisecond, whose slots would otherwise idle while reports
// make their round trip, and back to two per slot once tasks run long.
func TestPrefillFollowsRunTime(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "p", 2, coretest.Prefill(-1))
	n := coretest.Node(w.c, p, "n1", 2)
	j := coretest.Job(w.c, p, "j")
	coretest.Array(w.c, j, "1-1000")
	run := func(d time.Duration, tasks int) {
		t.Helper()
		for range tasks {
			w.schedule()
			task := n.Tasks()[0]
			w.start(task)
			start := w.now
			w.advance(d)
			f := coretest.Exit(task, 0)
			f.StartedAt, f.EndedAt = start.UnixNano(), w.now.UnixNano()
			w.report(task, f)
			checkInvariants(t, w.c)
		}
		w.schedule()
	}
	if got := core.NodeCapacity(n); got != 2+4 {
		t.Fatalf("capacity before any task ran: %d, want 6", got)
	}
	run(time.Millisecond, 3)
	if got, live := core.NodeCapacity(n), len(n.Tasks()); got != 2+32 || live != got {
		t.Fatalf("after 1 ms tasks: capacity %d with %d tasks held, want 34 and 34", got, live)
	}
	run(time.Minute, 1)
	if got := core.NodeCapacity(n); got != 2+4 {
		t.Errorf("after a 1 min task: capacity %d, want 6", got)
	}
}
