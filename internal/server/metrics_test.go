package server_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/testenv"
)

// scrape reads /metrics with token and parses it with Prometheus's text
// parser.
func scrape(t *testing.T, env *testenv.Env, token string) (map[string]*dto.MetricFamily, int) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, env.Server.URL()+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	return fams, resp.StatusCode
}

// value finds the sample of a family with exactly the given labels: a
// gauge's or counter's value, a histogram's count. ok is false if absent.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		if len(m.Label) != len(labels) {
			continue
		}
		for _, l := range m.Label {
			if labels[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		case m.Untyped != nil:
			return m.Untyped.GetValue(), true
		}
	}
	return 0, false
}

// TestMetricsFollowAJob runs a job on one two-slot node and checks that
// the task and node gauges move with it, that the histograms computed from
// committed task records count each attempt once, and that /metrics needs
// an admin token.
func TestMetricsFollowAJob(t *testing.T) {
	env := testenv.Start(t)
	cl := env.Client
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tok := env.Server.AdminToken()
	if _, err := cl.CreatePool(ctx, api.PoolCreate{ID: "m", SlotsPerNode: 2, AllowRoot: true}); err != nil {
		t.Fatal(err)
	}
	env.Agent("m", testenv.AgentConfig{Name: "m1", Slots: 2})

	gauge := func(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
		t.Helper()
		v, ok := value(fams, name, labels)
		if !ok {
			t.Fatalf("/metrics has no %s%v", name, labels)
		}
		return v
	}
	task := func(state string) map[string]string { return map[string]string{"pool": "m", "state": state} }

	fams, _ := scrape(t, env, tok)
	if n := gauge(fams, "lote_nodes", task("idle")); n != 1 {
		t.Errorf("lote_nodes{idle} = %v before the job, want 1", n)
	}
	if n := gauge(fams, "lote_tasks", task("running")); n != 0 {
		t.Errorf("lote_tasks{running} = %v before the job, want 0", n)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "process_resident_memory_bytes",
		"lote_agent_streams", "lote_scheduler_pass_seconds", "lote_store_commit_seconds", "lote_store_commit_tasks"} {
		if fams[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if n := gauge(fams, "lote_agent_streams", nil); n != 1 {
		t.Errorf("lote_agent_streams = %v, want 1", n)
	}

	// Six tasks: index 3 fails; two run at a time.
	_, err := cl.Submit(ctx, api.Submit{Job: api.JobCreate{ID: "mj", PoolID: "m"}, Tasks: api.TaskAdd{Array: "1-6",
		Template: &api.TaskSpec{Command: []string{"sh", "-c", "sleep 0.4; test {index} -ne 3"}}}})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		fams, _ = scrape(t, env, tok)
		if gauge(fams, "lote_tasks", task("running")) == 2 && gauge(fams, "lote_nodes", task("running")) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never saw 2 running tasks on a running node: tasks running %v, nodes running %v",
				gauge(fams, "lote_tasks", task("running")), gauge(fams, "lote_nodes", task("running")))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := gauge(fams, "lote_tasks", task("active")) + gauge(fams, "lote_tasks", task("assigned")); n != 4 {
		t.Errorf("waiting and assigned tasks = %v while two run, want 4", n)
	}

	if _, err := cl.WaitJob(ctx, "mj", 1, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Wait answers from the core; the histograms follow the commit of the
	// last batch a moment later.
	res := func(r string) map[string]string { return map[string]string{"pool": "m", "result": r} }
	deadline = time.Now().Add(10 * time.Second)
	for {
		fams, _ = scrape(t, env, tok)
		if n, _ := value(fams, "lote_task_queue_wait_seconds", map[string]string{"pool": "m"}); n == 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for state, want := range map[string]float64{"active": 0, "assigned": 0, "running": 0, "completed": 6} {
		if n := gauge(fams, "lote_tasks", task(state)); n != want {
			t.Errorf("lote_tasks{%s} = %v after the job, want %v", state, n, want)
		}
	}
	if n := gauge(fams, "lote_tasks_completed", res("failure")); n != 1 {
		t.Errorf("lote_tasks_completed{failure} = %v, want 1", n)
	}
	if n := gauge(fams, "lote_nodes", task("idle")); n != 1 {
		t.Errorf("lote_nodes{idle} = %v after the job, want 1", n)
	}
	if n := gauge(fams, "lote_task_run_seconds", res("success")); n != 5 {
		t.Errorf("lote_task_run_seconds{success} count = %v, want 5", n)
	}
	if n := gauge(fams, "lote_task_run_seconds", res("failure")); n != 1 {
		t.Errorf("lote_task_run_seconds{failure} count = %v, want 1", n)
	}
	if n := gauge(fams, "lote_task_queue_wait_seconds", map[string]string{"pool": "m"}); n != 6 {
		t.Errorf("lote_task_queue_wait_seconds count = %v, want 6", n)
	}
	if n := gauge(fams, "lote_tasks_completed_total", res("success")); n != 5 {
		t.Errorf("lote_tasks_completed_total{success} = %v, want 5", n)
	}
	if n := gauge(fams, "lote_task_attempts_ended_total", map[string]string{"pool": "m", "result": "failure", "category": "user"}); n != 1 {
		t.Errorf("lote_task_attempts_ended_total{failure,user} = %v, want 1", n)
	}
	// Run time is at least the sleep: the histogram's sum says so.
	for _, m := range fams["lote_task_run_seconds"].Metric {
		if h := m.Histogram; h.GetSampleCount() > 0 && h.GetSampleSum()/float64(h.GetSampleCount()) < 0.35 {
			t.Errorf("mean run time %v s, want at least the 0.4 s sleep", h.GetSampleSum()/float64(h.GetSampleCount()))
		}
	}

	// Labels stay low-cardinality: no job or task IDs anywhere.
	for name, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "job" || l.GetName() == "task" || l.GetValue() == "mj" {
					t.Errorf("%s has label %s=%q", name, l.GetName(), l.GetValue())
				}
			}
		}
	}

	// Auth: no token 401, a user token 403.
	if _, code := scrape(t, env, ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d, want 401", code)
	}
	user, err := cl.CreateToken(ctx, api.TokenCreate{Name: "metrics-user", Role: "user"})
	if err != nil {
		t.Fatal(err)
	}
	if _, code := scrape(t, env, user.Token); code != http.StatusForbidden {
		t.Errorf("/metrics with a user token: %d, want 403", code)
	}
}
