package server_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/testenv"
)

// TestRevokedTaskLeavesNoDirectories: the agent makes the directories of
// queued tasks ahead of their start; a prefilled task the server takes back
// for a higher-priority job has them removed again, so a node's workitems
// hold only attempts that ran.
func TestRevokedTaskLeavesNoDirectories(t *testing.T) {
	ctx := context.Background()
	env := testenv.Start(t)
	cl := env.Client
	prefill := 2
	if _, err := cl.CreatePool(ctx, api.PoolCreate{ID: "p", SlotsPerNode: 1, Prefill: &prefill, AllowRoot: true}); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "node")
	env.Agent("p", testenv.AgentConfig{Name: "n1", Slots: 1, Dir: dir})
	sleep := &api.TaskSpec{Command: []string{"sleep", "30"}}
	if _, err := cl.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "low", PoolID: "p"}, Tasks: api.TaskAdd{Array: "1-3", Template: sleep}}); err != nil {
		t.Fatal(err)
	}
	workitems := filepath.Join(dir, "workitems", "low")
	exists := func(task string) bool {
		_, err := os.Stat(filepath.Join(workitems, task))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	waitFor(t, "task 1 running and the queued tasks' directories made", func() bool {
		j, err := cl.Job(ctx, "low")
		if err != nil {
			t.Fatal(err)
		}
		return j.TaskCounts.Running == 1 && j.TaskCounts.Assigned == 2 && exists("2") && exists("3")
	})
	if _, err := cl.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "high", PoolID: "p", Priority: 10}, Tasks: api.TaskAdd{Array: "1-2", Template: sleep}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the queued tasks of job low revoked and their directories removed", func() bool {
		j, err := cl.Job(ctx, "low")
		if err != nil {
			t.Fatal(err)
		}
		return j.TaskCounts.Assigned == 0 && j.TaskCounts.Active == 2 && !exists("2") && !exists("3")
	})
	if !exists("1") {
		t.Error("the running task's directory went too")
	}
}

// waitFor polls cond until it holds, failing the test after 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
