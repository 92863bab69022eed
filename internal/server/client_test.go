package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/testenv"
)

// TestClientRoundTrip drives every method of the Go client against an
// in-process server with one in-process agent, and checks that what comes
// back is what went in. It fails when a client method is added without a
// round trip here.
func TestClientRoundTrip(t *testing.T) {
	env := testenv.Start(t)
	cl := env.Client
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	covered := map[string]bool{}
	use := func(method string) { covered[method] = true }
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	use("Health")
	must(cl.Health(ctx))
	use("OpenAPIDocument")
	doc, err := cl.OpenAPIDocument(ctx)
	must(err)
	if !bytes.Equal(doc, api.OpenAPI) {
		t.Errorf("served OpenAPI document differs from api.OpenAPI")
	}

	// Pools.
	use("CreatePool")
	prefill := 3
	p, err := cl.CreatePool(ctx, api.PoolCreate{ID: "p1", SlotsPerNode: 2, FillPolicy: "pack", Prefill: &prefill,
		Labels: map[string]string{"gpu": "no"}, AllowRoot: true})
	must(err)
	if p.ID != "p1" || p.SlotsPerNode != 2 || p.FillPolicy != "pack" || p.Prefill != 3 || p.Provider != "static" ||
		p.Labels["gpu"] != "no" || p.JoinToken == "" || !p.AllowRoot || p.CreatedAt.IsZero() {
		t.Errorf("CreatePool = %+v", p)
	}
	use("Pool")
	if got, err := cl.Pool(ctx, "P1", false); err != nil || got.ID != "p1" || got.JoinToken != "" {
		t.Errorf("Pool(P1, no token) = %+v, %v", got, err)
	}
	if got, err := cl.Pool(ctx, "p1", true); err != nil || got.JoinToken != p.JoinToken {
		t.Errorf("Pool(p1, reveal) token = %q, %v; want %q", got.JoinToken, err, p.JoinToken)
	}
	use("Pools")
	pools, err := cl.Pools(ctx)
	must(err)
	if len(pools) != 1 || pools[0].ID != "p1" {
		t.Errorf("Pools = %+v", pools)
	}
	use("RotateJoinToken")
	rot, err := cl.RotateJoinToken(ctx, "p1")
	must(err)
	if rot.JoinToken == "" || rot.JoinToken == p.JoinToken {
		t.Errorf("RotateJoinToken: token %q, was %q", rot.JoinToken, p.JoinToken)
	}
	use("ResizePool")
	if got, err := cl.ResizePool(ctx, "p1", api.PoolResize{TargetNodes: 1, Deallocation: "terminate"}); err != nil || got.TargetNodes != 1 {
		t.Errorf("ResizePool = %+v, %v", got, err)
	}

	// Autoscaling: a static pool is not managed, so its formula only sets
	// its target; evaluations use the pool's metrics.
	auto, err := cl.CreatePool(ctx, api.PoolCreate{ID: "auto", Provider: "static", Scaling: api.Scaling{
		Autoscale: &api.Autoscale{Formula: "min(3, pending_tasks)", Interval: api.Duration(time.Second)},
		MaxNodes:  5, Price: 0.5}})
	must(err)
	if a := auto.Autoscale; a == nil || !a.Enabled || a.Formula != "min(3, pending_tasks)" || time.Duration(a.Interval) != time.Second ||
		auto.MaxNodes != 5 || auto.Price != 0.5 || auto.Deallocation != "requeue" {
		t.Errorf("CreatePool(auto) = %+v, autoscale %+v", auto, a)
	}
	_, err = cl.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "JA", PoolID: "auto"},
		Tasks: api.TaskAdd{Array: "1-2", Template: &api.TaskSpec{Command: []string{"true"}}}})
	must(err)
	use("EvalAutoscale")
	run, err := cl.EvalAutoscale(ctx, "auto", api.AutoscaleChange{})
	must(err)
	if run.Error != "" || !run.DryRun || run.TargetNodes != 2 || run.Vars["pending_tasks"] != 2 || run.Vars["active_tasks"] != 2 ||
		run.Vars["current_nodes"] != 0 {
		t.Errorf("EvalAutoscale(auto) = %+v, want target 2 from 2 pending tasks", run)
	}
	if run, err := cl.EvalAutoscale(ctx, "auto", api.AutoscaleChange{Formula: "pending_tasks * 10"}); err != nil || run.TargetNodes != 5 {
		t.Errorf("EvalAutoscale(pending_tasks * 10) = %+v, %v; want 5, max_nodes", run, err)
	}
	// A formula that does not compile is an answer, not a failed call.
	if run, err := cl.EvalAutoscale(ctx, "auto", api.AutoscaleChange{Formula: "pending_tasks +"}); err != nil || run.Error == "" {
		t.Errorf("EvalAutoscale(broken) = %+v, %v; want its error in the run", run, err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got, err := cl.Pool(ctx, "auto", false)
		must(err)
		if got.TargetNodes == 2 && len(got.AutoscaleRuns) > 0 {
			if last := got.AutoscaleRuns[len(got.AutoscaleRuns)-1]; last.DryRun || last.TargetNodes != 2 {
				t.Errorf("pool auto's last run = %+v", last)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pool auto: target %d after 10s (runs %+v), want 2 set by its formula", got.TargetNodes, got.AutoscaleRuns)
		}
	}
	if _, err := cl.ResizePool(ctx, "auto", api.PoolResize{TargetNodes: 1}); !api.IsStatus(err, http.StatusConflict) {
		t.Errorf("ResizePool(auto) while it autoscales: %v, want 409", err)
	}
	use("DisableAutoscale")
	if got, err := cl.DisableAutoscale(ctx, "auto"); err != nil || got.Autoscale == nil || got.Autoscale.Enabled ||
		got.Autoscale.Formula != "min(3, pending_tasks)" {
		t.Errorf("DisableAutoscale = %+v, %v", got.Autoscale, err)
	}
	if got, err := cl.ResizePool(ctx, "auto", api.PoolResize{TargetNodes: 1, TargetSpotNodes: 1}); err != nil ||
		got.TargetNodes != 1 || got.TargetSpotNodes != 1 {
		t.Errorf("ResizePool(auto) with autoscale off = %+v, %v", got, err)
	}
	use("EnableAutoscale")
	if got, err := cl.EnableAutoscale(ctx, "auto", api.AutoscaleChange{Interval: api.Duration(time.Hour)}); err != nil ||
		got.Autoscale == nil || !got.Autoscale.Enabled || got.Autoscale.Formula != "min(3, pending_tasks)" ||
		time.Duration(got.Autoscale.Interval) != time.Hour {
		t.Errorf("EnableAutoscale(interval 1h) = %+v, %v; want the formula kept", got.Autoscale, err)
	}

	// Nodes: an in-process agent joins with the rotated token.
	nodeID := env.Agent("p1", testenv.AgentConfig{Name: "n1", Slots: 2, Labels: map[string]string{"zone": "a"}})
	use("PoolNodes")
	nodes, err := cl.PoolNodes(ctx, "p1")
	must(err)
	if len(nodes) != 1 || nodes[0].ID != nodeID || nodes[0].PoolID != "p1" || nodes[0].Slots != 2 ||
		nodes[0].Labels["zone"] != "a" || !nodes[0].Connected {
		t.Errorf("PoolNodes = %+v", nodes)
	}
	use("Node")
	if n, err := cl.Node(ctx, "N1"); err != nil || n.ID != "n1" {
		t.Errorf("Node(N1) = %+v, %v", n, err)
	}
	use("DrainNode")
	if n, err := cl.DrainNode(ctx, "n1", true); err != nil || !n.Drained {
		t.Errorf("DrainNode(true) = %+v, %v", n, err)
	}
	if n, err := cl.DrainNode(ctx, "n1", false); err != nil || n.Drained {
		t.Errorf("DrainNode(false) = %+v, %v", n, err)
	}

	// Jobs.
	use("CreateJob")
	retries := 0
	jc := api.JobCreate{ID: "J1", PoolID: "p1", Priority: 5, MaxRetries: &retries, MaxWallClock: api.Duration(time.Minute),
		OnAllTasksComplete: "no_action", Tags: map[string]string{"run": "r1"}, Env: map[string]string{"GREETING": "hi"}}
	j, err := cl.CreateJob(ctx, jc, api.IdempotencyKey("create-J1"))
	must(err)
	if j.ID != "J1" || j.PoolID != "p1" || j.Priority != 5 || j.State != "active" || j.Tags["run"] != "r1" ||
		j.Env["GREETING"] != "hi" || time.Duration(j.MaxWallClock) != time.Minute {
		t.Errorf("CreateJob = %+v", j)
	}
	if again, err := cl.CreateJob(ctx, jc, api.IdempotencyKey("create-J1")); err != nil || again.ID != "J1" {
		t.Errorf("CreateJob replayed = %+v, %v", again, err)
	}
	use("UpdateJob")
	prio := -7
	if got, err := cl.UpdateJob(ctx, "j1", api.JobUpdate{Priority: &prio}); err != nil || got.Priority != -7 {
		t.Errorf("UpdateJob = %+v, %v", got, err)
	}
	use("Job")
	if got, err := cl.Job(ctx, "j1"); err != nil || got.ID != "J1" || got.Priority != -7 {
		t.Errorf("Job(j1) = %+v, %v", got, err)
	}
	use("Jobs")
	if got, err := cl.Jobs(ctx, "active", map[string]string{"run": "r1"}); err != nil || len(got) != 1 || got[0].ID != "J1" {
		t.Errorf("Jobs(active, run=r1) = %+v, %v", got, err)
	}
	if got, err := cl.Jobs(ctx, "", map[string]string{"run": "other"}); err != nil || len(got) != 0 {
		t.Errorf("Jobs(run=other) = %+v, %v", got, err)
	}

	// Tasks.
	use("AddTasks")
	res, err := cl.AddTasks(ctx, "J1", api.TaskAdd{Tasks: []api.TaskSpec{
		{ID: "ok", Command: []string{"sh", "-c", `echo "$GREETING {task}"; echo err >&2`}},
		{ID: "bad", Command: []string{"sh", "-c", "exit 3"}, Requirements: api.Requirements{Slots: 1}},
		{Command: []string{"true"}},
	}})
	must(err)
	if res.JobID != "J1" || res.Added != 3 || res.FirstID != "ok" || res.LastID != "task-3" {
		t.Errorf("AddTasks = %+v", res)
	}
	use("WaitJob")
	waitAll := func(id string) api.Job {
		t.Helper()
		for {
			j, err := cl.Job(ctx, id)
			must(err)
			w, err := cl.WaitJob(ctx, id, j.TaskGroups, 5*time.Second)
			must(err)
			if w.Done {
				return w
			}
		}
	}
	j = waitAll("J1")
	if c := j.TaskCounts; c.Completed != 3 || c.Succeeded != 2 || c.Failed != 1 {
		t.Errorf("J1 counts after wait = %+v", c)
	}
	use("Tasks")
	page, err := cl.Tasks(ctx, "J1", "", 2, "")
	must(err)
	if len(page.Tasks) != 2 || page.Next == "" {
		t.Fatalf("Tasks page 1 = %+v", page)
	}
	rest, err := cl.Tasks(ctx, "J1", "completed", 10, page.Next)
	must(err)
	ids := []string{page.Tasks[0].ID, page.Tasks[1].ID}
	for _, tk := range rest.Tasks {
		ids = append(ids, tk.ID)
	}
	if !slices.Equal(ids, []string{"ok", "bad", "task-3"}) || rest.Next != "" {
		t.Errorf("Tasks pages = %v (next %q)", ids, rest.Next)
	}
	use("Task")
	bad, err := cl.Task(ctx, "J1", "BAD")
	must(err)
	if bad.Result != "failure" || bad.FailureCategory != "user" || bad.ExitCode == nil || *bad.ExitCode != 3 ||
		len(bad.Attempts) != 1 || bad.Attempts[0].NodeID != "n1" || bad.Attempts[0].StartedAt == nil {
		t.Errorf("Task(J1, BAD) = %+v", bad)
	}
	use("TaskLog")
	out, err := cl.TaskLog(ctx, "J1", "ok", "stdout", 0, 0)
	must(err)
	if string(out.Data) != "hi ok\n" || out.Attempt != 1 || !out.Final || out.State != "completed" {
		t.Errorf("TaskLog(stdout) = %+v (%q)", out, out.Data)
	}
	if e, err := cl.TaskLog(ctx, "J1", "ok", "stderr", 1, 1); err != nil || string(e.Data) != "rr\n" {
		t.Errorf("TaskLog(stderr, offset 1) = %q, %v", e.Data, err)
	}
	use("RetryFailed")
	rr, err := cl.RetryFailed(ctx, "J1")
	must(err)
	if rr.JobID != "J1" || rr.Retried != 1 {
		t.Errorf("RetryFailed = %+v", rr)
	}
	use("RetryTask")
	if got, err := cl.RetryTask(ctx, "J1", "ok"); err != nil || got.State == "completed" {
		t.Errorf("RetryTask(ok) = %+v, %v", got, err)
	}
	waitAll("J1")
	if got, _ := cl.Task(ctx, "J1", "bad"); len(got.Attempts) != 2 {
		t.Errorf("bad after retry has %d attempts, want 2", len(got.Attempts))
	}

	// Submit, cancel, terminate.
	use("Submit")
	sub, err := cl.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "J2", PoolID: "p1", Tags: map[string]string{"run": "r2"}},
		Tasks: api.TaskAdd{Array: "1-3", Template: &api.TaskSpec{Command: []string{"sleep", "30"}}}}, api.IdempotencyKey("sub-J2"))
	must(err)
	if sub.JobID != "J2" || sub.Added != 3 || sub.FirstID != "1" || sub.LastID != "3" {
		t.Errorf("Submit = %+v", sub)
	}
	use("CancelTask")
	if got, err := cl.CancelTask(ctx, "J2", "3"); err != nil || got.State != "completed" || got.FailureCategory != "cancelled" {
		t.Errorf("CancelTask = %+v, %v", got, err)
	}
	use("TerminateJob")
	if got, err := cl.TerminateJob(ctx, "J2"); err != nil || got.State != "completed" || got.TaskCounts.Failed != 3 {
		t.Errorf("TerminateJob = %+v, %v", got, err)
	}
	_, err = cl.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "J3", PoolID: "p1", Tags: map[string]string{"run": "r2"}},
		Tasks: api.TaskAdd{Tasks: []api.TaskSpec{{Command: []string{"sleep", "30"}}}}})
	must(err)
	use("TerminateJobsByTag")
	ended, err := cl.TerminateJobsByTag(ctx, map[string]string{"run": "r2"})
	must(err)
	var endedIDs []string
	for _, e := range ended {
		if e.State == "completed" {
			endedIDs = append(endedIDs, e.ID)
		}
	}
	sort.Strings(endedIDs)
	if !slices.Equal(endedIDs, []string{"J2", "J3"}) {
		t.Errorf("TerminateJobsByTag(run=r2) ended %v, want J2 J3", endedIDs)
	}

	// Events: J1's history from the start, without following.
	use("Events")
	var events []api.Event
	err = cl.Events(ctx, api.EventFilter{Job: "J1", FromStart: true}, func(ev api.Event, gap error) error {
		if gap == nil {
			events = append(events, ev)
		}
		return nil
	})
	must(err)
	sawTaskEnd := false
	for _, ev := range events {
		if ev.JobID != "J1" {
			t.Errorf("Events(job J1) sent %+v", ev)
		}
		if ev.Kind == "task" && ev.TaskID == "bad" && ev.State == "completed" {
			sawTaskEnd = true
		}
	}
	if !sawTaskEnd {
		t.Errorf("Events(job J1) = %+v, want task bad completing among them", events)
	}

	// Tokens.
	use("CreateToken")
	tok, err := cl.CreateToken(ctx, api.TokenCreate{Name: "alice", Role: "user"})
	must(err)
	if tok.Name != "alice" || tok.Role != "user" || tok.Token == "" || tok.CreatedAt.IsZero() {
		t.Errorf("CreateToken = %+v", tok)
	}
	use("Tokens")
	if list, err := cl.Tokens(ctx); err != nil || len(list) != 1 || list[0].Name != "alice" || list[0].Token != "" {
		t.Errorf("Tokens = %+v, %v; want alice without its token", list, err)
	}
	use("RevokeToken")
	must(cl.RevokeToken(ctx, "alice"))
	if list, _ := cl.Tokens(ctx); len(list) != 1 || list[0].RevokedAt == nil {
		t.Errorf("Tokens after revoke = %+v", list)
	}

	// The data store: streamed, checksummed, confined.
	use("PutData")
	body := "hello data"
	sum := sha256.Sum256([]byte(body))
	hexSum := hex.EncodeToString(sum[:])
	if o, err := cl.PutData(ctx, "inputs", "dir/a.txt", strings.NewReader(body), int64(len(body)), hexSum); err != nil || o.SHA256 != hexSum || o.SizeBytes != int64(len(body)) {
		t.Errorf("PutData = %+v, %v", o, err)
	}
	if _, err := cl.PutData(ctx, "inputs", "dir/b.txt", strings.NewReader("other"), 5, hexSum); !api.IsStatus(err, http.StatusBadRequest) {
		t.Errorf("PutData with a wrong checksum: %v, want 400", err)
	}
	if _, err := cl.PutData(ctx, "inputs", "../escape", strings.NewReader("x"), 1, ""); err == nil {
		t.Errorf("PutData ../escape accepted")
	}
	use("GetData")
	rd, err := cl.GetData(ctx, "inputs", "dir/a.txt", false)
	if err != nil {
		t.Fatalf("GetData: %v", err)
	}
	got, _ := io.ReadAll(rd)
	rd.Close()
	if string(got) != body || rd.SHA256 != hexSum || rd.ContentKey == "" {
		t.Errorf("GetData = %q sha %q key %q", got, rd.SHA256, rd.ContentKey)
	}
	if _, err := cl.GetData(ctx, "inputs", "dir/b.txt", true); !api.IsStatus(err, http.StatusNotFound) {
		t.Errorf("GetData of a refused put: %v, want 404", err)
	}
	use("ListData")
	if l, err := cl.ListData(ctx, "inputs", "dir/", false, ""); err != nil || len(l.Objects) != 1 || l.Objects[0].Path != "dir/a.txt" {
		t.Errorf("ListData = %+v, %v", l, err)
	}
	use("DataContainers")
	if l, err := cl.DataContainers(ctx); err != nil || len(l.Objects) != 1 || l.Objects[0].Container != "inputs" {
		t.Errorf("DataContainers = %+v, %v", l, err)
	}
	use("DeleteData")
	must(cl.DeleteData(ctx, "inputs", "dir/a.txt"))
	if err := cl.DeleteData(ctx, "inputs", "dir/a.txt"); !api.IsStatus(err, http.StatusNotFound) {
		t.Errorf("DeleteData twice: %v, want 404", err)
	}

	// Deletes.
	use("DeleteJob")
	_, err = cl.TerminateJob(ctx, "JA")
	must(err)
	for _, id := range []string{"J1", "J2", "J3", "JA"} {
		must(cl.DeleteJob(ctx, id))
		if _, err := cl.Job(ctx, id); !api.IsStatus(err, http.StatusNotFound) {
			t.Errorf("Job(%s) after delete: %v, want 404", id, err)
		}
	}
	use("PreemptNode")
	if n, err := cl.PreemptNode(ctx, "n1"); err != nil || n.State != "preempted" {
		t.Errorf("PreemptNode(n1) = %+v, %v; want preempted", n, err)
	}
	if got, err := cl.Pool(ctx, "p1", false); err != nil || got.CurrentNodes != 0 || got.NodeCounts["preempted"] != 1 {
		t.Errorf("Pool(p1) after preempt: current %d, counts %v, %v", got.CurrentNodes, got.NodeCounts, err)
	}
	use("DeleteNode")
	waitIdle(t, cl, "n1")
	must(cl.DeleteNode(ctx, "n1"))
	if _, err := cl.Node(ctx, "n1"); !api.IsStatus(err, http.StatusNotFound) {
		t.Errorf("Node(n1) after delete: %v, want 404", err)
	}
	use("DeletePool")
	must(cl.DeletePool(ctx, "p1"))
	must(cl.DeletePool(ctx, "auto"))
	var se *api.StatusError
	if _, err := cl.Pool(ctx, "p1", false); !errors.As(err, &se) || se.Status != 404 || se.Body.Code != api.CodeNotFound {
		t.Errorf("Pool(p1) after delete: %v, want 404 not_found", err)
	}

	ct := reflect.TypeFor[*api.Client]()
	for i := 0; i < ct.NumMethod(); i++ {
		if name := ct.Method(i).Name; !covered[name] {
			t.Errorf("client method %s has no round trip in this test", name)
		}
	}
}

// waitIdle waits until the node holds no task (killed tasks report back).
func waitIdle(t *testing.T, cl *api.Client, node string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := cl.Node(context.Background(), node)
		if err == nil && n.RunningTasks == 0 && n.AssignedTasks == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s still busy: %+v, %v", node, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
