package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/server"
)

// TestDataOwnership: a data container belongs to the user whose write first
// named it — a put, or a submission's output — durably across restarts;
// others get 404 for it on every data call and as a task's input or output,
// with the field named and nothing created; listing the root shows users
// their own containers and admins all; the system container lets users
// share content-addressed uploads and application packages only; containers
// found without an owner at start belong to admin.
func TestDataOwnership(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	start := func() (*server.Server, *api.Client) {
		t.Helper()
		s, err := server.Start(ctx, server.Config{Dir: dir, Listen: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		cl, err := api.NewClient(s.URL(), s.AdminToken(), "")
		if err != nil {
			t.Fatal(err)
		}
		return s, cl
	}
	s, admin := start()
	if _, err := admin.CreatePool(ctx, api.PoolCreate{ID: "p"}); err != nil {
		t.Fatal(err)
	}
	aliceTok, err := admin.CreateToken(ctx, api.TokenCreate{Name: "alice", Role: server.RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	bobTok, err := admin.CreateToken(ctx, api.TokenCreate{Name: "bob", Role: server.RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	clients := func(s *server.Server) (alice, bob *api.Client) {
		alice, _ = api.NewClient(s.URL(), aliceTok.Token, "")
		bob, _ = api.NewClient(s.URL(), bobTok.Token, "")
		return alice, bob
	}
	alice, bob := clients(s)
	put := func(cl *api.Client, container, path, body, sum string) error {
		_, err := cl.PutData(ctx, container, path, strings.NewReader(body), int64(len(body)), sum)
		return err
	}
	containers := func(cl *api.Client) []string {
		t.Helper()
		l, err := cl.DataContainers(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range l.Objects {
			out = append(out, o.Container)
		}
		return out
	}
	wantErr := func(what string, err error, status int, field string) {
		t.Helper()
		var se *api.StatusError
		if !errors.As(err, &se) || se.Status != status || se.Body.Field != field {
			t.Errorf("%s: %v, want %d naming %q", what, err, status, field)
		}
	}

	if err := put(alice, "shared", "a.txt", "a", ""); err != nil {
		t.Fatal(err)
	}
	if err := put(bob, "bobs", "b.txt", "b", ""); err != nil {
		t.Fatal(err)
	}
	wantErr("bob's put into alice's container", put(bob, "shared", "b.txt", "b", ""), http.StatusNotFound, "")
	if err := put(admin, "shared", "admin.txt", "x", ""); err != nil {
		t.Errorf("admin's put into alice's container: %v", err)
	}

	// Submissions: an output claims an unowned container with the job;
	// another's container is refused naming the field, creating nothing.
	spec := func(in []api.InputFile, out []api.OutputFile) *api.TaskSpec {
		return &api.TaskSpec{Command: []string{"true"}, Inputs: in, Outputs: out}
	}
	if _, err := alice.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "A", PoolID: "p"}, Tasks: api.TaskAdd{Array: "1-2",
		Template: spec([]api.InputFile{{Source: "data://shared/a.txt", Path: "a.txt"}}, []api.OutputFile{{Pattern: "out", Destination: "data://results/{index}"}})}}); err != nil {
		t.Fatalf("alice's submission with her input and a new output container: %v", err)
	}
	refused := map[string]struct {
		sub   api.Submit
		field string
	}{
		"input from another's container": {api.Submit{Job: api.JobCreate{ID: "B", PoolID: "p"}, Tasks: api.TaskAdd{Array: "1",
			Template: spec([]api.InputFile{{Source: "data://shared/", Path: "."}}, nil)}}, "tasks.template.inputs[0].source"},
		"output into a container claimed by a submission": {api.Submit{Job: api.JobCreate{ID: "B", PoolID: "p"}, Tasks: api.TaskAdd{
			Tasks: []api.TaskSpec{*spec(nil, nil), *spec(nil, []api.OutputFile{{Pattern: "o", Destination: "data://results/o"}})}}},
			"tasks.tasks[1].outputs[0].destination"},
		"input from system logs": {api.Submit{Job: api.JobCreate{ID: "B", PoolID: "p"}, Tasks: api.TaskAdd{Array: "1",
			Template: spec([]api.InputFile{{Source: "data://_lote/{line}", Path: "x"}}, nil)}}, "tasks.template.inputs[0].source"},
		"output into the system container": {api.Submit{Job: api.JobCreate{ID: "B", PoolID: "p"}, Tasks: api.TaskAdd{Array: "1",
			Template: spec(nil, []api.OutputFile{{Pattern: "o", Destination: "data://_lote/apps/x/1/package"}})}}, "tasks.template.outputs[0].destination"},
		"add to own job with another's input": {api.Submit{Job: api.JobCreate{ID: "A"}, Existing: true, Tasks: api.TaskAdd{Array: "1",
			Template: spec([]api.InputFile{{Source: "data://bobs/b.txt", Path: "b"}}, nil)}}, "tasks.template.inputs[0].source"},
	}
	for name, c := range refused {
		who := bob
		if c.sub.Existing {
			who = alice
		}
		_, err := who.Submit(ctx, c.sub)
		wantErr(name, err, http.StatusNotFound, c.field)
	}
	_, err = bob.CreateJob(ctx, api.JobCreate{ID: "B", PoolID: "p", PrepTask: &api.StartTask{Command: []string{"true"},
		Inputs: []api.InputFile{{Source: "data://shared/a.txt", Path: "a"}}}})
	wantErr("a preparation task's input from another's container", err, http.StatusNotFound, "prep_task.inputs[0].source")
	if jobs, _ := bob.Jobs(ctx, "", nil); len(jobs) != 0 {
		t.Errorf("refused submissions created %d jobs", len(jobs))
	}
	if j, _ := alice.Job(ctx, "A"); j.TaskCounts.Total() != 2 {
		t.Errorf("alice's job has %d tasks after a refused add; want 2", j.TaskCounts.Total())
	}

	// Listing the root: own containers for users (results holds nothing
	// yet but is alice's), all for admins.
	if got := containers(alice); !slices.Equal(got, []string{"shared"}) {
		t.Errorf("alice lists %v; want [shared] (empty containers are not listed)", got)
	}
	if got := containers(bob); !slices.Equal(got, []string{"bobs"}) {
		t.Errorf("bob lists %v; want [bobs]", got)
	}
	if got := containers(admin); !slices.Equal(got, []string{"bobs", "shared"}) {
		t.Errorf("admin lists %v; want [bobs shared]", got)
	}
	if err := put(alice, "results", "r.txt", "r", ""); err != nil {
		t.Errorf("alice's put into the container her submission claimed: %v", err)
	}
	wantErr("bob's put into the container alice's submission claimed", put(bob, "results", "r.txt", "r", ""), http.StatusNotFound, "")

	// The system container.
	body := "local input"
	raw := sha256.Sum256([]byte(body))
	sum := hex.EncodeToString(raw[:])
	if err := put(alice, "_lote", "uploads/"+sum+"/in.txt", body, sum); err != nil {
		t.Errorf("alice's upload of a local input: %v", err)
	}
	if _, err := bob.GetData(ctx, "_lote", "uploads/"+sum+"/in.txt", true); err != nil {
		t.Errorf("reading an upload by its SHA-256: %v", err)
	}
	other := strings.Repeat("0", 64)
	wantErr("an upload under another SHA-256", put(bob, "_lote", "uploads/"+other+"/in.txt", body, sum), http.StatusBadRequest, api.HeaderSHA256)
	wantErr("listing uploads", func() error { _, err := bob.ListData(ctx, "_lote", "uploads/", false, ""); return err }(), http.StatusNotFound, "")
	wantErr("deleting an upload", bob.DeleteData(ctx, "_lote", "uploads/"+sum+"/in.txt"), http.StatusNotFound, "")
	wantErr("a user's app upload", put(alice, "_lote", "apps/tool/1/package", "x", ""), http.StatusNotFound, "")
	if err := put(admin, "_lote", "apps/tool/1/package", "x", ""); err != nil {
		t.Fatal(err)
	}
	if l, err := bob.ListData(ctx, "_lote", "apps/", false, ""); err != nil || len(l.Objects) != 1 {
		t.Errorf("a user lists application packages: %+v, %v", l.Objects, err)
	}
	if _, err := bob.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "B", PoolID: "p"}, Tasks: api.TaskAdd{Array: "1",
		Template: spec([]api.InputFile{{Source: "data://_lote/uploads/" + sum + "/in.txt", Path: "in.txt"}, {Source: "data://_lote/apps/tool/1/package", Path: "t"}}, nil)}}); err != nil {
		t.Errorf("inputs from an upload and a package: %v", err)
	}

	// Owners are durable; a container found without one belongs to admin.
	s.Close()
	legacy := filepath.Join(dir, "blob", "legacy")
	if err := os.MkdirAll(legacy, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(legacy, "old.txt"), []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, admin = start()
	defer s.Close()
	alice, bob = clients(s)
	wantErr("bob's read of alice's container after a restart", func() error { _, err := bob.GetData(ctx, "shared", "a.txt", true); return err }(), http.StatusNotFound, "")
	if _, err := alice.GetData(ctx, "shared", "a.txt", true); err != nil {
		t.Errorf("alice's read of her container after a restart: %v", err)
	}
	wantErr("a user's put into a container found without an owner", put(alice, "legacy", "x", "x", ""), http.StatusNotFound, "")
	if _, err := admin.GetData(ctx, "legacy", "old.txt", true); err != nil {
		t.Errorf("admin's read of a container found without an owner: %v", err)
	}
}
