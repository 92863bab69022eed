package core_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// rejoin reconnects a known node reporting the tasks it knows.
func (w *world) rejoin(n *core.Node, known ...core.AgentTask) core.Reconcile {
	w.t.Helper()
	w.c.NodeDisconnected(n, w.now)
	got, rec, err := w.c.NodeJoin(core.Join{
		NodeID: n.ID, Pool: n.Pool, Hostname: n.Hostname, Slots: n.Slots, Cores: n.Cores, Memory: n.Memory,
		Labels: n.Labels, Known: known,
	}, w.now)
	if err != nil || got != n {
		w.t.Fatalf("rejoin %s: node %v, error %v", n.ID, got, err)
	}
	return rec
}

// savedTask is the durable record of a task as last committed.
func savedTask(fx *coretest.Effects, job, id string) (core.TaskRecord, bool) {
	for _, r := range fx.Snapshot().Tasks {
		if r.JobID == job && r.ID == id {
			return r, true
		}
	}
	return core.TaskRecord{}, false
}

func TestNodeJoinReconcile(t *testing.T) {
	queued := func(t *core.Task) []core.AgentTask { return []core.AgentTask{coretest.Known(t, core.PhaseQueued)} }
	running := func(t *core.Task) []core.AgentTask { return []core.AgentTask{coretest.Known(t, core.PhaseRunning)} }
	unknown := func(*core.Task) []core.AgentTask { return nil }

	tests := []struct {
		name    string
		started bool // the task ran before the agent reconnected
		revoke  bool // a revoke of the task was in flight
		knows   func(*core.Task) []core.AgentTask
		kept    bool
		resent  bool // dispatched again with the same attempt
		state   core.TaskState
		attempt int
		history []core.Category
		drop    []string
	}{
		{name: "running task the agent runs is kept", started: true, knows: running,
			kept: true, state: core.TaskRunning, attempt: 1},
		{name: "assigned task the agent holds is kept", knows: queued,
			kept: true, state: core.TaskAssigned, attempt: 1},
		{name: "assigned task the agent started meanwhile is kept as running", knows: running,
			kept: true, state: core.TaskRunning, attempt: 1},
		{name: "assigned task the agent never received is sent again", knows: unknown,
			resent: true, state: core.TaskAssigned, attempt: 1},
		{name: "running task the agent lost is requeued as infra", started: true, knows: unknown,
			state: core.TaskActive, attempt: 1, history: []core.Category{core.CategoryInfra}},
		{name: "agent holding another attempt gets ours again and drops its own",
			knows: func(t *core.Task) []core.AgentTask {
				k := coretest.Known(t, core.PhaseRunning)
				k.Attempt = 9
				return []core.AgentTask{k}
			},
			resent: true, state: core.TaskAssigned, attempt: 1, drop: []string{"j/0#9"}},
		{name: "task being revoked that the agent no longer has comes back unused", revoke: true, knows: unknown,
			state: core.TaskActive, attempt: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 4)
			n := coretest.Node(w.c, p, "n1", 4)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0-3")
			w.schedule()
			task := w.task(j, "0")
			if tt.started {
				w.start(task)
			}
			if tt.revoke {
				high := coretest.Job(w.c, p, "high", coretest.Priority(10))
				coretest.Array(w.c, high, "0")
				w.schedule()
				if !core.TaskRevoking(task) {
					t.Fatal("setup: no revoke in flight")
				}
			}
			known := tt.knows(task)
			for _, other := range n.Tasks() {
				if other != task {
					known = append(known, coretest.Known(other, core.PhaseQueued))
				}
			}

			rec := w.rejoin(n, known...)
			w.fx.Commit()
			checkInvariants(t, w.c)

			if got := slices.Contains(rec.Keep, task); got != tt.kept {
				t.Errorf("kept: %v, want %v", got, tt.kept)
			}
			if len(rec.Keep) != 3+b2i(tt.kept) {
				t.Errorf("kept %d tasks, want the other three too", len(rec.Keep))
			}
			resent := sentIDs(w.fx.TakeDispatched())
			if want := b2i(tt.resent); len(resent) != want || want == 1 && resent[0] != "n1<-j/0#1" {
				t.Errorf("dispatched %v, resend wanted: %v", resent, tt.resent)
			}
			var drop []string
			for _, d := range rec.Drop {
				drop = append(drop, fmt.Sprintf("%s/%s#%d", d.JobID, d.TaskID, d.Attempt))
			}
			if !slices.Equal(drop, tt.drop) {
				t.Errorf("drop %v, want %v", drop, tt.drop)
			}
			var history []core.Category
			for _, a := range task.History {
				history = append(history, a.Category)
			}
			if task.State != tt.state || task.Attempt != tt.attempt || !slices.Equal(history, tt.history) {
				t.Errorf("task %s attempt %d history %v, want %s attempt %d history %v",
					task.State, task.Attempt, history, tt.state, tt.attempt, tt.history)
			}
			if r, ok := savedTask(w.fx, "j", "0"); !ok || r.State != task.State || r.Attempt != task.Attempt {
				t.Errorf("saved as %s attempt %d, core holds %s attempt %d", r.State, r.Attempt, task.State, task.Attempt)
			}
		})
	}
}

func TestNodeJoinDrops(t *testing.T) {
	tests := []struct {
		name  string
		known func(j *core.Job, done *core.Task) core.AgentTask
		drop  bool
	}{
		{"task the server never heard of", func(j *core.Job, _ *core.Task) core.AgentTask {
			return core.AgentTask{JobID: j.ID, TaskID: "ghost", Attempt: 1, Phase: core.PhaseRunning}
		}, true},
		{"task of an unknown job", func(*core.Job, *core.Task) core.AgentTask {
			return core.AgentTask{JobID: "nope", TaskID: "0", Attempt: 1, Phase: core.PhaseQueued}
		}, true},
		{"task the server completed", func(_ *core.Job, done *core.Task) core.AgentTask {
			return coretest.Known(done, core.PhaseRunning)
		}, true},
		{"finished task awaiting its report is not dropped", func(j *core.Job, _ *core.Task) core.AgentTask {
			return core.AgentTask{JobID: j.ID, TaskID: "ghost", Attempt: 1, Phase: core.PhaseFinished}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 1)
			n := coretest.Node(w.c, p, "n1", 1)
			j := coretest.Job(w.c, p, "j")
			coretest.Array(w.c, j, "0")
			w.schedule()
			done := w.task(j, "0")
			w.finish(done, 0)
			k := tt.known(j, done)
			rec := w.rejoin(n, k)
			if got := slices.Contains(rec.Drop, k); got != tt.drop || len(rec.Drop) != b2i(tt.drop) {
				t.Errorf("drop %v, want %v dropped: %v", rec.Drop, k, tt.drop)
			}
		})
	}
}

func TestNodeJoinNames(t *testing.T) {
	long := strings.Repeat("x", 64)
	tests := []struct {
		name  string
		names []string
		want  []string
	}{
		{"proposed name", []string{"alpha"}, []string{"alpha"}},
		{"taken name gets a suffix", []string{"alpha", "alpha", "ALPHA"}, []string{"alpha", "alpha-2", "ALPHA-3"}},
		{"empty name", []string{"", ""}, []string{"node", "node-2"}},
		{"invalid name", []string{"bad name", "bad name"}, []string{"node", "node-2"}},
		{"longest name", []string{long, long}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 1)
			var got []string
			for _, name := range tt.names {
				n, _, err := w.c.NodeJoin(core.Join{Name: name, Pool: p, Slots: 1}, w.now)
				if err != nil {
					t.Fatal(err)
				}
				if !core.ValidID(n.ID) {
					t.Errorf("node %q joined with invalid ID %q", name, n.ID)
				}
				got = append(got, n.ID)
			}
			if tt.want != nil && !slices.Equal(got, tt.want) {
				t.Errorf("IDs %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNodeJoinRefused(t *testing.T) {
	tests := []struct {
		name string
		join core.Join
		want error
	}{
		{"no slots", core.Join{Name: "a"}, &core.FieldError{}},
		{"unknown node ID", core.Join{NodeID: "nope", Slots: 1}, core.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			tt.join.Pool = coretest.Pool(w.c, "p", 1)
			_, _, err := w.c.NodeJoin(tt.join, w.now)
			var fe *core.FieldError
			if _, isField := tt.want.(*core.FieldError); isField && !errors.As(err, &fe) || !isField && !errors.Is(err, tt.want) {
				t.Errorf("error %v, want %T %v", err, tt.want, tt.want)
			}
			if len(tt.join.Pool.Nodes) != 0 {
				t.Errorf("a refused join added a node")
			}
		})
	}
}
