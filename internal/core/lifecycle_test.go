package core_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// counts builds a Job.Counts value in display order.
func counts(active, assigned, running, completed int) [5]int {
	var c [5]int
	c[core.TaskActive], c[core.TaskAssigned], c[core.TaskRunning], c[core.TaskCompleted] = active, assigned, running, completed
	return c
}

func TestJobLife(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "p", 2)
	n := coretest.Node(w.c, p, "n1", 2)
	j := coretest.Job(w.c, p, "j", coretest.TerminateWhenDone())
	coretest.Array(w.c, j, "0-3")

	var sent []coretest.Sent
	steps := []struct {
		name              string
		do                func()
		counts            [5]int
		succeeded, failed int
		node              core.NodeState
		job               core.JobState
	}{
		{"submitted", func() {}, counts(4, 0, 0, 0), 0, 0, core.NodeIdle, core.JobActive},
		{"first pass fills both slots", func() { sent = w.schedule() }, counts(2, 2, 0, 0), 0, 0, core.NodeRunning, core.JobActive},
		{"both start", func() { w.start(w.task(j, "0"), w.task(j, "1")) }, counts(2, 0, 2, 0), 0, 0, core.NodeRunning, core.JobActive},
		{"one succeeds, one fails", func() {
			w.finish(w.task(j, "0"), 0)
			w.finish(w.task(j, "1"), 1)
		}, counts(2, 0, 0, 2), 1, 1, core.NodeIdle, core.JobActive},
		{"second pass takes the rest", func() { sent = w.schedule() }, counts(0, 2, 0, 2), 1, 1, core.NodeRunning, core.JobActive},
		{"the rest succeed without starting first", func() {
			w.finish(w.task(j, "2"), 0)
			w.finish(w.task(j, "3"), 0)
		}, counts(0, 0, 0, 4), 3, 1, core.NodeIdle, core.JobCompleted},
	}
	for _, s := range steps {
		s.do()
		w.fx.Commit()
		if j.Counts != s.counts || j.Succeeded != s.succeeded || j.Failed != s.failed {
			t.Fatalf("%s: counts %v succeeded %d failed %d, want %v, %d, %d",
				s.name, j.Counts, j.Succeeded, j.Failed, s.counts, s.succeeded, s.failed)
		}
		if n.State() != s.node || j.State != s.job {
			t.Fatalf("%s: node %s job %s, want %s and %s", s.name, n.State(), j.State, s.node, s.job)
		}
		checkInvariants(t, w.c)
	}
	if got, want := sentIDs(sent), []string{"n1<-j/2#1", "n1<-j/3#1"}; !slices.Equal(got, want) {
		t.Errorf("last pass dispatched %v, want %v", got, want)
	}
	if r := w.task(j, "1").Cur; r.Result != core.ResultFailure || r.Category != core.CategoryUser || r.ExitCode != 1 {
		t.Errorf("task 1 ended %+v, want a user failure with exit code 1", r)
	}
	if sent := w.schedule(); len(sent) != 0 {
		t.Errorf("a finished job dispatched %v", sentIDs(sent))
	}
}

// Report makers for one attempt.
func exit(code int) func(*core.Task) core.Finish {
	return func(t *core.Task) core.Finish { return coretest.Exit(t, code) }
}

func timedOut(t *core.Task) core.Finish {
	f := coretest.Exit(t, -1)
	f.TimedOut = true
	return f
}

func signaled(sig int) func(*core.Task) core.Finish {
	return func(t *core.Task) core.Finish {
		f := coretest.Exit(t, -1)
		f.Signal = sig
		return f
	}
}

func stagingErr(t *core.Task) core.Finish {
	f := coretest.Exit(t, 0)
	f.StagingErr = "uploading outputs: boom"
	return f
}

// TestPreparing: a task staging its inputs is preparing, counted as such,
// and becomes running when its process starts.
func TestPreparing(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "p", 1)
	coretest.Node(w.c, p, "n1", 1)
	j := coretest.Job(w.c, p, "j")
	coretest.Array(w.c, j, "7")
	w.schedule()
	tk := w.task(j, "7")
	w.c.TaskPreparing(tk.Node, j.ID, tk.ID, tk.Attempt, w.now)
	if tk.State != core.TaskPreparing || j.Counts[core.TaskPreparing] != 1 || j.Counts[core.TaskAssigned] != 0 {
		t.Fatalf("state %s counts %v", tk.State, j.Counts)
	}
	w.c.TaskPreparing(tk.Node, j.ID, tk.ID, tk.Attempt+1, w.now) // stale: ignored
	w.start(tk)
	if tk.State != core.TaskRunning || j.Counts[core.TaskPreparing] != 0 || tk.Node.Running() != 1 {
		t.Fatalf("state %s counts %v", tk.State, j.Counts)
	}
	w.finish(tk, 0)
	checkInvariants(t, w.c)
	if tk.State != core.TaskCompleted {
		t.Fatalf("state %s", tk.State)
	}
}

func startErr(t *core.Task) core.Finish {
	f := coretest.Exit(t, -1)
	f.StartErr = "exec: no such file"
	return f
}

func lost(t *core.Task) core.Finish {
	f := coretest.Exit(t, -1)
	f.Lost = true
	return f
}

func TestAttemptsAndRetries(t *testing.T) {
	exit1, exit3 := exit(1), exit(3)
	tests := []struct {
		name     string
		opts     []coretest.TaskOpt
		attempts []func(*core.Task) core.Finish
		result   core.Result
		category core.Category // of the last attempt
		exitCode int
		retries  int
		requeues int
	}{
		{"exit 3 with two retries fails after three attempts", []coretest.TaskOpt{coretest.Retries(2)},
			[]func(*core.Task) core.Finish{exit3, exit3, exit3}, core.ResultFailure, core.CategoryUser, 3, 2, 0},
		{"success on the second attempt", []coretest.TaskOpt{coretest.Retries(2)},
			[]func(*core.Task) core.Finish{exit1, exit(0)}, core.ResultSuccess, core.CategoryNone, 0, 1, 0},
		{"no retries", nil,
			[]func(*core.Task) core.Finish{exit1}, core.ResultFailure, core.CategoryUser, 1, 0, 0},
		{"unlimited retries", []coretest.TaskOpt{coretest.Retries(-1)},
			[]func(*core.Task) core.Finish{exit1, exit1, exit1, exit1, exit1, exit(0)}, core.ResultSuccess, core.CategoryNone, 0, 5, 0},
		{"timeout", []coretest.TaskOpt{coretest.WallClock(time.Minute)},
			[]func(*core.Task) core.Finish{timedOut}, core.ResultFailure, core.CategoryTimeout, -1, 0, 0},
		{"timeout uses a retry", []coretest.TaskOpt{coretest.Retries(1), coretest.WallClock(time.Minute)},
			[]func(*core.Task) core.Finish{timedOut, timedOut}, core.ResultFailure, core.CategoryTimeout, -1, 1, 0},
		{"signal is a user failure", nil,
			[]func(*core.Task) core.Finish{signaled(9)}, core.ResultFailure, core.CategoryUser, -1, 0, 0},
		{"start error is a user failure", nil,
			[]func(*core.Task) core.Finish{startErr}, core.ResultFailure, core.CategoryUser, -1, 0, 0},
		{"a staging failure keeps the exit code and uses no retry", []coretest.TaskOpt{coretest.Retries(2)},
			[]func(*core.Task) core.Finish{stagingErr}, core.ResultFailure, core.CategoryStaging, 0, 0, 0},
		{"a lost process is requeued without using a retry", nil,
			[]func(*core.Task) core.Finish{lost, exit(0)}, core.ResultSuccess, core.CategoryNone, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 1)
			coretest.Node(w.c, p, "n1", 1)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "7", tt.opts...)
			for i, report := range tt.attempts {
				sent := w.schedule()
				if len(sent) != 1 || sent[0].Attempt != i+1 {
					t.Fatalf("attempt %d: dispatched %v", i+1, sentIDs(sent))
				}
				task := sent[0].Task
				w.start(task)
				w.report(task, report(task))
				checkInvariants(t, w.c)
			}
			if sent := w.schedule(); len(sent) != 0 {
				t.Fatalf("dispatched %v after the last attempt", sentIDs(sent))
			}
			task := w.task(j, "7")
			last := task.Cur
			if task.State != core.TaskCompleted || last.Result != tt.result || last.Category != tt.category || last.ExitCode != tt.exitCode {
				t.Errorf("ended %s %s/%s exit %d, want completed %s/%s exit %d",
					task.State, last.Result, last.Category, last.ExitCode, tt.result, tt.category, tt.exitCode)
			}
			if task.Retries != tt.retries || task.Requeues != tt.requeues {
				t.Errorf("retries %d requeues %d, want %d and %d", task.Retries, task.Requeues, tt.retries, tt.requeues)
			}
			attempts := append(slices.Clone(task.History), task.Cur)
			if len(attempts) != len(tt.attempts) {
				t.Fatalf("history holds %d attempts, want %d: %+v", len(attempts), len(tt.attempts), attempts)
			}
			for i, a := range attempts {
				if a.Number != i+1 || a.NodeID != "n1" || a.Result == core.ResultNone {
					t.Errorf("attempt %d recorded as %+v", i+1, a)
				}
			}
		})
	}
}

func TestNodeLossRequeues(t *testing.T) {
	tests := []struct {
		name      string
		started   bool
		heartbeat bool // the node heartbeats within the timeout
	}{
		{"running task", true, false},
		{"assigned task", false, false},
		{"heartbeating node keeps its task", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 1)
			n1 := coretest.Node(w.c, p, "n1", 1)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0", coretest.Retries(3))
			w.schedule()
			task := w.task(j, "0")
			if tt.started {
				w.start(task)
			}
			w.advance(core.DefaultHeartbeatTimeout / 2)
			if tt.heartbeat {
				w.c.Heartbeat(n1, w.now)
			}
			w.advance(core.DefaultHeartbeatTimeout/2 + time.Second)
			coretest.Node(w.c, p, "n2", 1, coretest.JoinedAt(w.now))
			w.c.Tick(w.now)
			sent := w.schedule()
			checkInvariants(t, w.c)

			if tt.heartbeat {
				if n1.State() == core.NodeUnreachable || task.Node != n1 || len(sent) != 0 {
					t.Fatalf("node %s, task on %v, dispatched %v; want the task left alone", n1.State(), task.Node, sentIDs(sent))
				}
				return
			}
			if n1.State() != core.NodeUnreachable || len(n1.Tasks()) != 0 {
				t.Errorf("n1 is %s with %d tasks, want unreachable and empty", n1.State(), len(n1.Tasks()))
			}
			if got := sentIDs(sent); !slices.Equal(got, []string{"n2<-j/0#2"}) {
				t.Errorf("dispatched %v, want attempt 2 on n2", got)
			}
			if len(task.History) != 1 || task.History[0].Category != core.CategoryInfra || task.History[0].NodeID != "n1" {
				t.Errorf("history %+v, want one infra attempt on n1", task.History)
			}
			if task.Retries != 0 || task.Requeues != 1 {
				t.Errorf("retries %d requeues %d, want 0 and 1", task.Retries, task.Requeues)
			}
		})
	}
}

func TestCrashLimit(t *testing.T) {
	tests := []struct {
		name string
		lose func(w *world, task *core.Task)
	}{
		{"process lost with the spawner", func(w *world, task *core.Task) { w.report(task, lost(task)) }},
		{"node missed its heartbeats", func(w *world, task *core.Task) {
			w.advance(core.DefaultHeartbeatTimeout + time.Second)
			w.c.Tick(w.now)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 1)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0", coretest.Retries(10))
			for i := range core.DefaultCrashLimit + 1 {
				coretest.Node(w.c, p, fmt.Sprint("n", i), 1, coretest.JoinedAt(w.now))
				sent := w.schedule()
				if len(sent) != 1 || sent[0].Attempt != i+1 {
					t.Fatalf("loss %d: dispatched %v", i+1, sentIDs(sent))
				}
				w.start(sent[0].Task)
				tt.lose(w, sent[0].Task)
				checkInvariants(t, w.c)
			}
			task := w.task(j, "0")
			if task.State != core.TaskCompleted || task.Cur.Result != core.ResultFailure || task.Cur.Category != core.CategoryInfra {
				t.Fatalf("after %d losses: %s %s/%s, want completed failure/infra",
					core.DefaultCrashLimit+1, task.State, task.Cur.Result, task.Cur.Category)
			}
			if task.Requeues != core.DefaultCrashLimit || task.Retries != 0 || !strings.Contains(task.Cur.Message, "crash limit") {
				t.Errorf("requeues %d retries %d message %q", task.Requeues, task.Retries, task.Cur.Message)
			}
			if j.Failed != 1 {
				t.Errorf("job counts %d failed, want 1", j.Failed)
			}
		})
	}
}

func TestStaleReportsIgnored(t *testing.T) {
	type stale struct {
		from   *core.Node
		finish *core.Finish // else a start report
	}
	tests := []struct {
		name  string
		setup func(w *world, task *core.Task, n1, n2 *core.Node) stale
	}{
		{"finish of an older attempt", func(w *world, task *core.Task, n1, n2 *core.Node) stale {
			w.finish(task, 1)
			w.schedule()
			f := coretest.Exit(task, 0)
			f.Attempt--
			return stale{task.Node, &f}
		}},
		{"start of an older attempt", func(w *world, task *core.Task, n1, n2 *core.Node) stale {
			w.finish(task, 1)
			w.schedule()
			return stale{from: task.Node} // TaskStarted names attempt-1
		}},
		{"finish from another node", func(w *world, task *core.Task, n1, n2 *core.Node) stale {
			f := coretest.Exit(task, 0)
			return stale{n2, &f}
		}},
		{"second finish after completion", func(w *world, task *core.Task, n1, n2 *core.Node) stale {
			f := coretest.Exit(task, 1)
			w.finish(task, 0)
			return stale{n1, &f}
		}},
		{"finish from the node presumed dead", func(w *world, task *core.Task, n1, n2 *core.Node) stale {
			f := coretest.Exit(task, 0)
			w.advance(core.DefaultHeartbeatTimeout + time.Second)
			w.c.Heartbeat(n2, w.now)
			w.c.Tick(w.now)
			w.schedule()
			return stale{n1, &f}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 1)
			n1 := coretest.Node(w.c, p, "n1", 1)
			n2 := coretest.Node(w.c, p, "n2", 1)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0", coretest.Retries(1))
			w.schedule()
			task := w.task(j, "0")
			w.start(task)
			s := tt.setup(w, task, n1, n2)
			w.fx.Commit()
			before, calls := dump(w.c), len(w.fx.Calls)

			if s.finish != nil {
				w.c.TaskFinished(s.from, *s.finish, w.now)
			} else {
				w.c.TaskStarted(s.from, j.ID, task.ID, task.Attempt-1, w.now)
			}
			if after := dump(w.c); after != before {
				t.Errorf("a stale report changed the core:\n%s", diffLines(before, after))
			}
			if extra := w.fx.Calls[calls:]; len(extra) != 0 {
				t.Errorf("a stale report had effects %v", extra)
			}
		})
	}
}
