package server_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/testenv"
)

// The agent chains queued short tasks in its spawner, each to start the
// moment a running one ends (internal/agent/chain.go). These tests hold
// that to the guarantees plain spawning gives: never more tasks running
// than slots, every task run, and slots given back when chained tasks are
// killed or their spawner dies.

// chainEnv is a pool "p" of one node with two slots.
func chainEnv(t *testing.T) (*testenv.Env, string) {
	t.Helper()
	env := testenv.Start(t)
	if _, err := env.Client.CreatePool(context.Background(), api.PoolCreate{ID: "p", SlotsPerNode: 2, AllowRoot: true}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "node")
	env.Agent("p", testenv.AgentConfig{Name: "n1", Slots: 2, Dir: dir})
	return env, dir
}

// submitMarking submits job id: n tasks that each append their index to
// marks, then sleep for sleep (a sleep(1) argument).
func submitMarking(t *testing.T, cl *api.Client, id string, n int, marks, sleep string) {
	t.Helper()
	cmd := "echo $LOTE_TASK_INDEX >> " + marks
	if sleep != "" {
		cmd += "; sleep " + sleep
	}
	_, err := cl.Submit(context.Background(), api.Submit{
		Job:   api.JobCreate{ID: id, PoolID: "p"},
		Tasks: api.TaskAdd{Array: "1-" + strconv.Itoa(n), Template: &api.TaskSpec{Command: []string{cmd}, Shell: true}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitJob(t *testing.T, cl *api.Client, id string, what string, cond func(api.Job) bool) api.Job {
	t.Helper()
	var j api.Job
	defer func() {
		if t.Failed() {
			t.Logf("job %s: state %s, counts %+v", id, j.State, j.TaskCounts)
		}
	}()
	waitFor(t, what, func() bool {
		var err error
		if j, err = cl.Job(context.Background(), id); err != nil {
			t.Fatal(err)
		}
		return cond(j)
	})
	return j
}

func allTasks(t *testing.T, cl *api.Client, job string) []api.Task {
	t.Helper()
	var all []api.Task
	next := ""
	for {
		page, err := cl.Tasks(context.Background(), job, "", 1000, next)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page.Tasks...)
		if next = page.Next; next == "" {
			return all
		}
	}
}

// maxOverlap is the largest number of tasks running at one instant, by
// the start and end times their spawner took.
func maxOverlap(tasks []api.Task) int {
	type edge struct {
		at    time.Time
		delta int
	}
	var edges []edge
	for _, tk := range tasks {
		if tk.StartedAt != nil && tk.EndedAt != nil {
			edges = append(edges, edge{*tk.StartedAt, 1}, edge{*tk.EndedAt, -1})
		}
	}
	// An end at the same instant as a start comes first: the slot was free.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.delta - b.delta
	})
	n, most := 0, 0
	for _, e := range edges {
		n += e.delta
		most = max(most, n)
	}
	return most
}

// markCounts reads marks: how many times each index ran.
func markCounts(t *testing.T, marks string) map[int]int {
	t.Helper()
	b, err := os.ReadFile(marks)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for _, line := range strings.Fields(string(b)) {
		i, err := strconv.Atoi(line)
		if err != nil {
			t.Fatalf("marks: %q", line)
		}
		counts[i]++
	}
	return counts
}

// TestShortTasksNeverExceedSlots: a stream of short tasks, chained, runs
// each task exactly once and never more at a time than the node's slots.
func TestShortTasksNeverExceedSlots(t *testing.T) {
	env, _ := chainEnv(t)
	cl := env.Client
	const n = 300
	marks := filepath.Join(t.TempDir(), "marks")
	submitMarking(t, cl, "short", n, marks, "")
	j := waitJob(t, cl, "short", "job short done", func(j api.Job) bool { return j.TaskCounts.Completed == n })
	if j.TaskCounts.Succeeded != n {
		t.Fatalf("counts = %+v, want %d succeeded", j.TaskCounts, n)
	}
	counts := markCounts(t, marks)
	for i := 1; i <= n; i++ {
		if counts[i] != 1 {
			t.Errorf("task %d ran %d times", i, counts[i])
		}
	}
	if most := maxOverlap(allTasks(t, cl, "short")); most > 2 {
		t.Errorf("%d tasks ran at once on 2 slots", most)
	}
}

// TestTerminateWithChainedTasks: terminating a job whose tasks are chained
// stops them all and leaves the node's slots free for the next job.
func TestTerminateWithChainedTasks(t *testing.T) {
	env, _ := chainEnv(t)
	cl := env.Client
	ctx := context.Background()
	marks := filepath.Join(t.TempDir(), "marks")
	submitMarking(t, cl, "long", 200, marks, "0.2")
	waitJob(t, cl, "long", "a few tasks done, so short enough to chain", func(j api.Job) bool { return j.TaskCounts.Completed >= 4 })
	if _, err := cl.TerminateJob(ctx, "long"); err != nil {
		t.Fatal(err)
	}
	waitJob(t, cl, "long", "job long completed", func(j api.Job) bool { return j.State == "completed" })
	waitFor(t, "node n1 with no task", func() bool {
		n, err := cl.Node(ctx, "n1")
		if err != nil {
			t.Fatal(err)
		}
		return n.RunningTasks == 0
	})

	next := filepath.Join(t.TempDir(), "next")
	submitMarking(t, cl, "next", 4, next, "")
	j := waitJob(t, cl, "next", "job next done", func(j api.Job) bool { return j.TaskCounts.Completed == 4 })
	if j.TaskCounts.Succeeded != 4 {
		t.Fatalf("counts = %+v, want 4 succeeded", j.TaskCounts)
	}
	if most := maxOverlap(append(allTasks(t, cl, "long"), allTasks(t, cl, "next")...)); most > 2 {
		t.Errorf("%d tasks ran at once on 2 slots", most)
	}
}

// TestSpawnerCrashWithChainedTasks: when the spawner dies mid-stream, the
// agent starts a new one, which reports the tasks it found orphaned lost;
// the chained tasks that never started go back to the agent's queue. Every
// task then runs and succeeds.
func TestSpawnerCrashWithChainedTasks(t *testing.T) {
	env, dir := chainEnv(t)
	cl := env.Client
	const n = 200
	marks := filepath.Join(t.TempDir(), "marks")
	submitMarking(t, cl, "crash", n, marks, "0.01")
	waitJob(t, cl, "crash", "some tasks done", func(j api.Job) bool { return j.TaskCounts.Completed >= 20 })
	b, err := os.ReadFile(filepath.Join(dir, "spawner", "spawner.lock"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("spawner.lock: %q", b)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, cl, "crash", "job crash done", func(j api.Job) bool { return j.TaskCounts.Completed == n })
	if j.TaskCounts.Succeeded != n {
		t.Fatalf("counts = %+v, want %d succeeded", j.TaskCounts, n)
	}
	counts := markCounts(t, marks)
	for i := 1; i <= n; i++ {
		if counts[i] == 0 {
			t.Errorf("task %d never ran", i)
		}
	}
	if j.TaskCounts.Completed != n || len(counts) != n {
		t.Errorf("%d indices ran, want %d", len(counts), n)
	}
}
