package core_test

import (
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
