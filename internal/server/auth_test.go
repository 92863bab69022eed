package server_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/server"
)

func startWith(t *testing.T, cfg server.Config) (*server.Server, *api.Client) {
	t.Helper()
	cfg.Dir, cfg.Listen = t.TempDir(), "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	cl, err := api.NewClient(s.URL(), s.AdminToken(), "")
	if err != nil {
		t.Fatal(err)
	}
	return s, cl
}

func userClient(t *testing.T, s *server.Server, admin *api.Client, name string) *api.Client {
	t.Helper()
	tok, err := admin.CreateToken(context.Background(), api.TokenCreate{Name: name, Role: server.RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	cl, err := api.NewClient(s.URL(), tok.Token, "")
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

// TestUserIsolation: a user token sees and acts on its own jobs and data
// containers only; other users' jobs and containers answer 404 (not 403) on
// every job, task and data endpoint and as a task's input or output; admin
// calls answer 403; a revoked token answers 401.
func TestUserIsolation(t *testing.T) {
	ctx := context.Background()
	s, admin := startWith(t, server.Config{})
	if _, err := admin.CreatePool(ctx, api.PoolCreate{ID: "p"}); err != nil {
		t.Fatal(err)
	}
	alice, bob := userClient(t, s, admin, "alice"), userClient(t, s, admin, "bob")
	add := api.TaskAdd{Array: "1-3", Template: &api.TaskSpec{Command: []string{"true"}}}
	res, err := alice.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "A", PoolID: "p", Tags: map[string]string{"run": "x"}}, Tasks: add})
	if err != nil {
		t.Fatal(err)
	}
	if j, err := alice.Job(ctx, res.JobID); err != nil || j.Owner != "alice" {
		t.Fatalf("alice's job = %+v, %v; want owner alice", j, err)
	}
	if _, err := alice.PutData(ctx, "alice-in", "a.txt", strings.NewReader("a"), 1, ""); err != nil {
		t.Fatal(err)
	}
	withData := func(in []api.InputFile, out []api.OutputFile) api.Submit {
		return api.Submit{Job: api.JobCreate{ID: "B", PoolID: "p"},
			Tasks: api.TaskAdd{Array: "1", Template: &api.TaskSpec{Command: []string{"true"}, Inputs: in, Outputs: out}}}
	}

	notFound := map[string]func() error{
		"show job":  func() error { _, err := bob.Job(ctx, "A"); return err },
		"wait job":  func() error { _, err := bob.WaitJob(ctx, "A", 1, 0); return err },
		"add tasks": func() error { _, err := bob.AddTasks(ctx, "A", add); return err },
		"submit to": func() error {
			_, err := bob.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "A"}, Existing: true, Tasks: add})
			return err
		},
		"list tasks":  func() error { _, err := bob.Tasks(ctx, "A", "", 10, ""); return err },
		"show task":   func() error { _, err := bob.Task(ctx, "A", "1"); return err },
		"task log":    func() error { _, err := bob.TaskLog(ctx, "A", "1", "stdout", 0, 0); return err },
		"cancel task": func() error { _, err := bob.CancelTask(ctx, "A", "1"); return err },
		"retry task":  func() error { _, err := bob.RetryTask(ctx, "A", "1"); return err },
		"retry job":   func() error { _, err := bob.RetryFailed(ctx, "A"); return err },
		"priority":    func() error { p := 5; _, err := bob.UpdateJob(ctx, "A", api.JobUpdate{Priority: &p}); return err },
		"terminate":   func() error { _, err := bob.TerminateJob(ctx, "A"); return err },
		"delete":      func() error { return bob.DeleteJob(ctx, "A") },
		"data get":    func() error { _, err := bob.GetData(ctx, "alice-in", "a.txt", false); return err },
		"data head":   func() error { _, err := bob.GetData(ctx, "alice-in", "a.txt", true); return err },
		"data ls":     func() error { _, err := bob.ListData(ctx, "alice-in", "", false, ""); return err },
		"data put": func() error {
			_, err := bob.PutData(ctx, "alice-in", "b.txt", strings.NewReader("b"), 1, "")
			return err
		},
		"data rm":   func() error { return bob.DeleteData(ctx, "alice-in", "a.txt") },
		"large log": func() error { _, err := bob.GetData(ctx, "_lote", "logs/A/1/1/stdout.txt", true); return err },
		"input from": func() error {
			_, err := bob.Submit(ctx, withData([]api.InputFile{{Source: "data://alice-in/a.txt", Path: "a.txt"}}, nil))
			return err
		},
		"output to": func() error {
			_, err := bob.Submit(ctx, withData(nil, []api.OutputFile{{Pattern: "x", Destination: "data://alice-in/x"}}))
			return err
		},
	}
	for name, call := range notFound {
		if err := call(); !api.IsStatus(err, http.StatusNotFound) {
			t.Errorf("bob %s of alice's job: %v, want 404", name, err)
		}
	}
	if jobs, err := bob.Jobs(ctx, "", nil); err != nil || len(jobs) != 0 {
		t.Errorf("bob lists %d jobs (%v); want none", len(jobs), err)
	}
	if l, err := bob.DataContainers(ctx); err != nil || len(l.Objects) != 0 {
		t.Errorf("bob lists containers %+v (%v); want none", l.Objects, err)
	}
	if l, err := alice.ListData(ctx, "alice-in", "", false, ""); err != nil || len(l.Objects) != 1 {
		t.Errorf("alice's container after bob's attempts: %+v (%v); want a.txt alone", l.Objects, err)
	}
	if jobs, err := bob.TerminateJobsByTag(ctx, map[string]string{"run": "x"}); err != nil || len(jobs) != 0 {
		t.Errorf("bob's terminate by tag ended %d jobs (%v); want none", len(jobs), err)
	}
	if j, _ := alice.Job(ctx, "A"); j.State != api.JobActive {
		t.Errorf("alice's job is %s after bob's attempts; want active", j.State)
	}
	if jobs, err := admin.Jobs(ctx, "", nil); err != nil || len(jobs) != 1 {
		t.Errorf("admin lists %d jobs (%v); want 1", len(jobs), err)
	}
	// Idempotency keys are per caller: bob's key never replays alice's job.
	keyed := api.Submit{Job: api.JobCreate{PoolID: "p"}, Tasks: add}
	ra, err := alice.Submit(ctx, keyed, api.IdempotencyKey("same"))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := bob.Submit(ctx, keyed, api.IdempotencyKey("same"))
	if err != nil || rb.JobID == ra.JobID {
		t.Errorf("bob's submission with alice's key answered %+v (%v); want a job of his own, not %s", rb, err, ra.JobID)
	}
	if jobs, err := bob.Jobs(ctx, "", nil); err != nil || len(jobs) != 1 {
		t.Errorf("bob lists %d jobs (%v) after his keyed submission; want 1", len(jobs), err)
	}
	for _, id := range []string{ra.JobID, rb.JobID} {
		if err := admin.DeleteJob(ctx, id); err != nil {
			t.Fatal(err)
		}
	}

	forbidden := map[string]func() error{
		"create pool":  func() error { _, err := bob.CreatePool(ctx, api.PoolCreate{ID: "q"}); return err },
		"delete pool":  func() error { return bob.DeletePool(ctx, "p") },
		"list tokens":  func() error { _, err := bob.Tokens(ctx); return err },
		"create token": func() error { _, err := bob.CreateToken(ctx, api.TokenCreate{Name: "eve", Role: "admin"}); return err },
	}
	for name, call := range forbidden {
		if err := call(); !api.IsStatus(err, http.StatusForbidden) {
			t.Errorf("bob %s: %v, want 403", name, err)
		}
	}
	if _, err := bob.Pools(ctx); err != nil {
		t.Errorf("a user cannot list pools: %v", err)
	}

	if err := admin.RevokeToken(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Jobs(ctx, "", nil); !api.IsStatus(err, http.StatusUnauthorized) {
		t.Errorf("revoked token: %v, want 401", err)
	}
}

// TestRateLimit: past its rate a token gets 429 with Retry-After, while
// another token is not affected.
func TestRateLimit(t *testing.T) {
	ctx := context.Background()
	s, admin := startWith(t, server.Config{RateLimit: 5})
	tok, err := admin.CreateToken(ctx, api.TokenCreate{Name: "alice", Role: server.RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	limited := 0
	for i := 0; i < 40; i++ {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+"/v1/pools", nil)
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var body api.Error
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			limited++
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("Retry-After = %q, want a positive number of seconds", resp.Header.Get("Retry-After"))
			}
			if body.Err.Code != api.CodeRateLimited {
				t.Errorf("429 code = %q, want %q", body.Err.Code, api.CodeRateLimited)
			}
		default:
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if limited == 0 {
		t.Fatal("40 requests at once at 5/s: none was limited")
	}
	if _, err := admin.Pools(ctx); err != nil {
		t.Errorf("the admin token was limited by alice's requests: %v", err)
	}
}
