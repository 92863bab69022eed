package core_test

import (
	"strings"
	"testing"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// TestStartTask: a node of a pool with a start task takes no task while it
// runs (wait_for_success) and none after it failed; without
// wait_for_success it takes tasks at once.
func TestStartTask(t *testing.T) {
	for _, tc := range []struct {
		name      string
		wait      bool
		ok        bool
		during    core.NodeState
		after     core.NodeState
		dispDurng int // tasks dispatched while the start task runs
		dispAfter int // tasks dispatched after it ended
	}{
		{name: "success opens the node", wait: true, ok: true,
			during: core.NodeWaitingForStartTask, after: core.NodeRunning, dispDurng: 0, dispAfter: 2},
		{name: "failure closes the node", wait: true, ok: false,
			during: core.NodeWaitingForStartTask, after: core.NodeStartTaskFailed, dispDurng: 0, dispAfter: 0},
		{name: "no wait takes tasks at once", wait: false, ok: false,
			during: core.NodeRunning, after: core.NodeRunning, dispDurng: 2, dispAfter: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			st := &core.StartTask{Command: []string{"true"}, WaitForSuccess: tc.wait, MaxRetries: 1}
			p := coretest.Pool(w.c, "p", 2, func(s *core.PoolSpec) { s.StartTask = st })
			n := coretest.Node(w.c, p, "n1", 2)
			if n.StartTask != core.StartTaskRunning {
				t.Fatalf("joined node's start task phase = %v", n.StartTask)
			}
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-1")
			if got := len(w.schedule()); got != tc.dispDurng {
				t.Errorf("dispatched while the start task runs: %d, want %d", got, tc.dispDurng)
			}
			if n.State() != tc.during {
				t.Errorf("state while the start task runs = %v, want %v", n.State(), tc.during)
			}
			w.c.StartTaskDone(n, tc.ok)
			if got := len(w.schedule()); got != tc.dispAfter {
				t.Errorf("dispatched after the start task: %d, want %d", got, tc.dispAfter)
			}
			if n.State() != tc.after {
				t.Errorf("state after the start task = %v, want %v", n.State(), tc.after)
			}
			// A rejoin neither reruns a finished start task nor reopens a failed node.
			var known []core.AgentTask
			for _, tk := range n.Tasks() {
				known = append(known, coretest.Known(tk, core.PhaseQueued))
			}
			w.rejoin(n, known...)
			if n.StartTask == core.StartTaskRunning {
				t.Errorf("rejoin restarted the start task")
			}
			// The phase is durable.
			for _, r := range w.fx.Snapshot().Nodes {
				if r.ID == "n1" && r.StartTask != n.StartTask {
					t.Errorf("saved phase %v, want %v", r.StartTask, n.StartTask)
				}
			}
			checkInvariants(t, w.c)
		})
	}
}

// TestJobPrepFailureBarsNode: a task whose node reports the job's
// preparation task failed goes back to active without using a retry, and
// the job's tasks never go to that node again; other jobs still may.
func TestJobPrepFailureBarsNode(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "p", 1)
	n1 := coretest.Node(w.c, p, "n1", 1)
	prep := &core.StartTask{Command: []string{"setup"}, WaitForSuccess: true}
	j := coretest.Job(w.c, p, "j", func(s *core.JobSpec) { s.PrepTask = prep })
	coretest.Array(w.c, j, "0")
	sent := w.schedule()
	if len(sent) != 1 {
		t.Fatalf("dispatched %v", sentIDs(sent))
	}
	tk := w.task(j, "0")
	w.c.TaskFinished(n1, core.Finish{JobID: "j", TaskID: "0", Attempt: tk.Attempt, ExitCode: -1,
		PrepFailed: true, StagingErr: "exit code 3"}, w.now)
	if tk.State != core.TaskActive || tk.Retries != 0 || len(tk.History) != 1 || tk.History[0].Category != core.CategoryStaging {
		t.Fatalf("after prep failure: state %v retries %d history %+v", tk.State, tk.Retries, tk.History)
	}
	if got := w.schedule(); len(got) != 0 {
		t.Errorf("dispatched to the barred node: %v", sentIDs(got))
	}
	other := coretest.Job(w.c, p, "other")
	coretest.Array(w.c, other, "0")
	if got := w.schedule(); len(got) != 1 || got[0].Node.ID != "n1" {
		t.Errorf("another job on the barred node: %v", got)
	}
	w.finish(w.task(other, "0"), 0)
	coretest.Node(w.c, p, "n2", 1)
	if got := w.schedule(); len(got) != 1 || got[0].Node.ID != "n2" {
		t.Errorf("after a second node joined: %v", got)
	}
	checkInvariants(t, w.c)
}

// TestJobPrepBarSurvivesRestart: a node barred from a job stays barred
// after the core is rebuilt from its records, without the agent having to
// report its failed preparation task again.
func TestJobPrepBarSurvivesRestart(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "p", 1)
	n1 := coretest.Node(w.c, p, "N1", 1)
	j := coretest.Job(w.c, p, "j", func(s *core.JobSpec) { s.PrepTask = &core.StartTask{Command: []string{"setup"}} })
	coretest.Array(w.c, j, "0")
	if sent := w.schedule(); len(sent) != 1 {
		t.Fatalf("dispatched %v", sentIDs(sent))
	}
	tk := w.task(j, "0")
	w.c.TaskFinished(n1, core.Finish{JobID: "j", TaskID: "0", Attempt: tk.Attempt, ExitCode: -1,
		PrepFailed: true, StagingErr: "exit code 3"}, w.now)
	var barred []string
	for _, r := range w.fx.Snapshot().Jobs {
		barred = r.BarredNodes
	}
	if len(barred) != 1 || barred[0] != "n1" {
		t.Fatalf("saved barred nodes %q, want [n1]", barred)
	}

	w = restored(t, w)
	reconnect(w)
	if got := w.schedule(); len(got) != 0 {
		t.Errorf("dispatched to the barred node after a restart: %v", sentIDs(got))
	}
	p = w.c.Pools()[0]
	coretest.Node(w.c, p, "n2", 1)
	if got := w.schedule(); len(got) != 1 || got[0].Node.ID != "n2" {
		t.Errorf("after a second node joined: %v", sentIDs(got))
	}
	other := coretest.Job(w.c, p, "other")
	coretest.Array(w.c, other, "0")
	if got := w.schedule(); len(got) != 1 || got[0].Node.ID != "N1" {
		t.Errorf("another job: %v, want it on the node barred only from j", sentIDs(got))
	}
	checkInvariants(t, w.c)
}

// TestJobRelease: when a job with a release task ends, every node that ran
// one of its attempts is asked to run it, once, in node order; nodes that
// ran none are not.
func TestJobRelease(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "p", 1)
	coretest.Node(w.c, p, "n1", 1)
	coretest.Node(w.c, p, "n2", 1)
	coretest.Node(w.c, p, "n3", 1)
	rel := &core.StartTask{Command: []string{"cleanup"}}
	j := coretest.Job(w.c, p, "j", coretest.TerminateWhenDone(), func(s *core.JobSpec) { s.ReleaseTask = rel })
	coretest.Array(w.c, j, "0-1")
	w.runAll(func(*core.Task) int { return 0 })
	if j.State != core.JobCompleted {
		t.Fatalf("job %v", j.State)
	}
	ran := map[string]bool{}
	for _, tk := range j.Tasks {
		ran[tk.Cur.NodeID] = true
	}
	var want []string
	for _, n := range []string{"n1", "n2", "n3"} {
		if ran[n] {
			want = append(want, n+"<-j")
		}
	}
	if len(want) == 0 {
		t.Fatal("no task ran")
	}
	if strings.Join(w.fx.Released, ",") != strings.Join(want, ",") {
		t.Errorf("released %v, want %v", w.fx.Released, want)
	}
}
