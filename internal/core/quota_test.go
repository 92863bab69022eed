package core_test

import (
	"errors"
	"testing"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

func TestQueuedQuota(t *testing.T) {
	c, _ := coretest.NewCore(core.Config{MaxQueuedTasksPerUser: 10})
	p := coretest.Pool(c, "p", 1)
	a := coretest.Job(c, p, "a", coretest.Owner("ann"))
	coretest.Array(c, a, "1-8")

	tests := []struct {
		name    string
		owner   string
		spec    string
		refused bool
	}{
		{"up to the quota", "ann", "1-2", false},
		{"one past the quota", "ann", "1-1", true},
		{"another user", "bob", "1-10", false},
		{"more than the quota at once", "cat", "1-11", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := coretest.JobSpec(p, "", coretest.Owner(tt.owner))
			before := len(c.Jobs())
			_, _, err := c.CreateJobWithTasks(spec, coretest.ArrayAdd(tt.spec), coretest.T0)
			var qe *core.QuotaError
			switch {
			case tt.refused && (!errors.Is(err, core.ErrQuota) || !errors.As(err, &qe) || qe.Quota != "max-queued-tasks-per-user"):
				t.Fatalf("err = %v, want a queued-task quota error", err)
			case tt.refused && len(c.Jobs()) != before:
				t.Fatalf("refused submission created a job")
			case !tt.refused && err != nil:
				t.Fatalf("err = %v", err)
			}
		})
	}
	// Adding to an existing job counts too, and refuses the batch whole.
	if _, err := c.AddTasks(a, coretest.ArrayAdd("100-101"), coretest.T0); !errors.Is(err, core.ErrQuota) {
		t.Fatalf("AddTasks past the quota: err = %v", err)
	}
	if a.Counts[core.TaskActive] != 8 {
		t.Fatalf("job a has %d queued tasks after a refused add, want 8", a.Counts[core.TaskActive])
	}
}

func TestRunningQuota(t *testing.T) {
	w := newWorld(t)
	w.c, w.fx = coretest.NewCore(core.Config{MaxRunningTasksPerUser: 2})
	p := coretest.Pool(w.c, "p", 4)
	coretest.Node(w.c, p, "n1", 4)
	q := coretest.Pool(w.c, "q", 4)
	coretest.Node(w.c, q, "m1", 4)
	ann := coretest.Job(w.c, p, "ann1", coretest.Owner("ann"))
	coretest.Array(w.c, ann, "1-5")
	ann2 := coretest.Job(w.c, q, "ann2", coretest.Owner("ann"))
	coretest.Array(w.c, ann2, "1-5")
	bob := coretest.Job(w.c, p, "bob", coretest.Owner("bob"))
	coretest.Array(w.c, bob, "1-5")

	w.schedule()
	live := func(j *core.Job) int {
		return j.Counts[core.TaskAssigned] + j.Counts[core.TaskPreparing] + j.Counts[core.TaskRunning]
	}
	if got := live(ann) + live(ann2); got != 2 {
		t.Fatalf("ann has %d live tasks across pools, want the quota 2", got)
	}
	if live(bob) == 0 {
		t.Fatalf("bob got nothing: one user's quota held another's job")
	}
	for _, j := range []*core.Job{ann, ann2} {
		if j.Counts[core.TaskActive] > 0 && j.PendingReason != "quota" {
			t.Errorf("job %s pending reason %q, want quota", j.ID, j.PendingReason)
		}
	}
	// Ending one of ann's tasks, in whichever pool, lets exactly one more go.
	var done *core.Task
	for _, n := range allNodes(w.c) {
		for _, tk := range n.Tasks() {
			if tk.Job.Owner == "ann" && done == nil {
				done = tk
			}
		}
	}
	w.start(done)
	w.finish(done, 0)
	w.schedule()
	if got := live(ann) + live(ann2); got != 2 {
		t.Fatalf("after one ended, ann has %d live tasks, want 2", got)
	}
	w.runAll(func(*core.Task) int { return 0 })
	if ann.Succeeded+ann2.Succeeded != 10 {
		t.Fatalf("ann's jobs did not all run under the quota: %d succeeded", ann.Succeeded+ann2.Succeeded)
	}
	checkInvariants(t, w.c)
}
