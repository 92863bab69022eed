package server_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/server"
	"github.com/lotehq/lote/internal/testenv"
)

// TestQuotas: a submission past --max-queued-tasks-per-user answers 429
// naming the quota and creates nothing; past --max-running-tasks-per-user a
// user's tasks wait with pending reason quota while another user's run.
func TestQuotas(t *testing.T) {
	ctx := context.Background()
	env := testenv.StartWith(t, server.Config{MaxQueuedTasksPerUser: 6, MaxRunningTasksPerUser: 1})
	admin := env.Client
	if _, err := admin.CreatePool(ctx, api.PoolCreate{ID: "p", SlotsPerNode: 4, AllowRoot: true}); err != nil {
		t.Fatal(err)
	}
	alice := userClient(t, env.Server, admin, "alice")
	bob := userClient(t, env.Server, admin, "bob")
	sleep := &api.TaskSpec{Command: []string{"sleep", "30"}}
	if _, err := alice.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "A1", PoolID: "p"}, Tasks: api.TaskAdd{Array: "1-4", Template: sleep}}); err != nil {
		t.Fatal(err)
	}
	_, err := alice.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "A2", PoolID: "p"}, Tasks: api.TaskAdd{Array: "1-3", Template: sleep}})
	var se *api.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests || se.Body.Code != api.CodeQuota ||
		!strings.Contains(se.Body.Message, "max-queued-tasks-per-user is 6") {
		t.Fatalf("submit past the queued quota: %v, want 429 naming max-queued-tasks-per-user", err)
	}
	if _, err := admin.Job(ctx, "A2"); !api.IsStatus(err, http.StatusNotFound) {
		t.Fatalf("refused job A2 exists: %v", err)
	}
	if _, err := bob.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "B", PoolID: "p"}, Tasks: api.TaskAdd{Array: "1-2", Template: sleep}}); err != nil {
		t.Fatalf("bob's submission refused by alice's quota: %v", err)
	}

	env.Agent("p", testenv.AgentConfig{Name: "n1", Slots: 4})
	deadline := time.Now().Add(20 * time.Second)
	for {
		a, errA := admin.Job(ctx, "A1")
		b, errB := admin.Job(ctx, "B")
		if errA != nil || errB != nil {
			t.Fatal(errors.Join(errA, errB))
		}
		live := func(j api.Job) int { return j.TaskCounts.Assigned + j.TaskCounts.Preparing + j.TaskCounts.Running }
		if a.TaskCounts.Running == 1 && b.TaskCounts.Running == 1 {
			if live(a) != 1 || a.PendingReason != "quota" {
				t.Fatalf("job A1: counts %+v, pending reason %q; want one live task and reason quota", a.TaskCounts, a.PendingReason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks did not start: A1 %+v (%q), B %+v", a.TaskCounts, a.PendingReason, b.TaskCounts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
