package core_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// restored rebuilds a core from what w's fake committed, wired to the same
// fake (the store outlives the server).
func restored(t testing.TB, w *world) *world {
	t.Helper()
	c, err := core.Restore(core.Config{}, w.fx, w.fx.Snapshot(), w.now)
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	return &world{t: t, c: c, fx: w.fx, now: w.now}
}

// reconnect rejoins every node that is still reachable, reporting the
// tasks it holds, as agents do after a server restart.
func reconnect(w *world) {
	w.t.Helper()
	for _, n := range allNodes(w.c) {
		if n.State() == core.NodeUnreachable {
			continue
		}
		var known []core.AgentTask
		for _, t := range n.Tasks() {
			phase := core.PhaseQueued
			if t.State == core.TaskRunning {
				phase = core.PhaseRunning
			}
			known = append(known, coretest.Known(t, phase))
		}
		rec := w.rejoin(n, known...)
		if len(rec.Drop) != 0 || len(rec.Keep) != len(known) {
			w.t.Fatalf("node %s reconciled with drop %v and %d of %d kept", n.ID, rec.Drop, len(rec.Keep), len(known))
		}
	}
	w.fx.TakeDispatched()
}

// outcome summarises how every task ended, leaving out which node ran it.
func outcome(c *core.Core) string {
	var b strings.Builder
	for _, j := range c.Jobs() {
		fmt.Fprintf(&b, "job %s %s counts=%v ok=%d failed=%d\n", j.ID, j.State, j.Counts, j.Succeeded, j.Failed)
		for _, t := range sortedTasks(j) {
			fmt.Fprintf(&b, "  %s %s %s/%s exit=%d attempts=%d retries=%d requeues=%d\n",
				t.ID, t.State, t.Cur.Result, t.Cur.Category, t.Cur.ExitCode, len(t.History)+1, t.Retries, t.Requeues)
		}
	}
	return b.String()
}

// flakyExit fails the first attempt of every third task.
func flakyExit(t *core.Task) int {
	if t.Attempt == 1 && t.Pos%3 == 0 {
		return 1
	}
	return 0
}

// TestRestore builds up varied state step by step and after each step
// checks that restoring from the committed records gives an equal core; at
// the end both cores run to completion and must agree on every outcome.
func TestRestore(t *testing.T) {
	w := newWorld(t)
	var p, q *core.Pool
	var mixed, low *core.Job
	steps := []struct {
		name string
		do   func()
	}{
		{"pools, nodes and jobs", func() {
			p = coretest.Pool(w.c, "p", 2, coretest.Prefill(1))
			q = coretest.Pool(w.c, "q", 4, coretest.Pack(), coretest.Prefill(-1))
			coretest.Node(w.c, p, "a", 2, coretest.Labeled("gpu", "yes"), coretest.Cores(4))
			coretest.Nodes(w.c, p, "b", 2, 2)
			coretest.Nodes(w.c, q, "x", 2, 4)
			done := coretest.Job(w.c, p, "done", coretest.TerminateWhenDone())
			coretest.Array(w.c, done, "0-1")
			mixed = coretest.Job(w.c, p, "mixed")
			coretest.Array(w.c, mixed, "0-19%5", coretest.Retries(1))
			coretest.Items(w.c, mixed, []string{"alpha", "beta"}, coretest.NeedLabels("gpu", "yes"), coretest.NeedCores(2))
			low = coretest.Job(w.c, q, "low", coretest.Priority(-5))
			coretest.Array(w.c, low, "0-49")
		}},
		{"first pass", func() {}},
		{"half started", func() {
			for _, n := range allNodes(w.c) {
				w.start(n.Tasks()[:len(n.Tasks())/2]...)
			}
		}},
		{"some finished", func() {
			for i, n := range allNodes(w.c) {
				for _, t := range n.Tasks() {
					if t.State == core.TaskRunning {
						w.finish(t, i%2)
						break
					}
				}
			}
		}},
		{"node lost", func() {
			w.advance(core.DefaultHeartbeatTimeout + time.Second)
			for _, n := range allNodes(w.c) {
				if n.ID != "b0" {
					w.c.Heartbeat(n, w.now)
				}
			}
			w.c.Tick(w.now)
		}},
		{"high priority arrives", func() {
			high := coretest.Job(w.c, q, "high", coretest.Priority(5))
			coretest.Array(w.c, high, "0-9")
		}},
		{"revokes answered", func() {
			for i, r := range w.fx.TakeRevoked() {
				w.c.RevokeAnswered(r.Node, r.Task.Job.ID, r.Task.ID, r.Attempt, i%2 == 0)
			}
		}},
		{"node drained", func() { w.c.SetDrained(w.c.Node("x1"), true) }},
		{"task cancelled", func() {
			if _, err := w.c.CancelTask(low, "49", w.now); err != nil {
				t.Fatal(err)
			}
		}},
		{"job terminated", func() {
			coretest.Node(w.c, p, "d", 2, coretest.JoinedAt(w.now))
			j := coretest.Job(w.c, p, "doomed")
			coretest.Array(w.c, j, "0-999")
			if sent := w.schedule(); len(sent) != 3 {
				t.Fatalf("doomed job got %v, want 3 tasks on the new node", sentIDs(sent))
			}
			w.start(w.task(j, "0"))
			w.c.TerminateJob(j, "test", w.now)
			if len(w.fx.Killed) != 3 {
				t.Fatalf("terminating killed %v, want its 3 live tasks", w.fx.Killed)
			}
		}},
	}
	for _, s := range steps {
		s.do()
		w.schedule()
		checkInvariants(t, w.c)
		r := restored(t, w)
		checkInvariants(t, r.c)
		if want, got := dump(w.c), dump(r.c); want != got {
			t.Fatalf("after %s the restored core differs:\n%s", s.name, diffLines(want, got))
		}
	}

	r := restored(t, w)
	for _, x := range []*world{w, r} {
		reconnect(x)
		checkInvariants(t, x.c)
		x.runAll(flakyExit)
		checkInvariants(t, x.c)
	}
	if want, got := outcome(w.c), outcome(r.c); want != got {
		t.Errorf("the restored core ran to a different outcome:\n%s", diffLines(want, got))
	}
	for _, j := range r.c.Jobs() {
		if j.Counts[core.TaskCompleted] != j.Succeeded+j.Failed || j.Succeeded+j.Failed == 0 {
			t.Errorf("job %s ended with counts %v", j.ID, j.Counts)
		}
	}
}

func TestRestoreRefusesBrokenSnapshots(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "p", 1)
	coretest.Node(w.c, p, "n1", 1)
	j := coretest.Job(w.c, p, "j")
	coretest.Array(w.c, j, "0-1")
	w.schedule()

	tests := []struct {
		name    string
		corrupt func(s *core.Snapshot)
	}{
		{"node of no pool", func(s *core.Snapshot) { s.Pools = nil }},
		{"job of no pool", func(s *core.Snapshot) { s.Jobs[0].PoolID = "nope" }},
		{"group of no job", func(s *core.Snapshot) { s.Groups[0].JobID = "nope" }},
		{"task on no node", func(s *core.Snapshot) { s.Nodes = nil }},
		{"bad array spec", func(s *core.Snapshot) { s.Groups[0].Spec = "9-1" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := w.fx.Snapshot()
			tt.corrupt(&s)
			if _, err := core.Restore(core.Config{}, coretest.NewEffects(), s, w.now); err == nil {
				t.Error("restored a broken snapshot")
			}
		})
	}
}
