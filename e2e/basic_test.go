package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// TestQuickstart is the README's must-show: a thousand-task array on a
// two-node `lote up`, its output, and its counts.
func TestQuickstart(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "2")
	c.must("job", "create", "J", "--pool", "local")
	c.must("submit", "--job", "J", "--array", "1-1000", "--wait", "--", "sh", "-c", "echo $((LOTE_TASK_INDEX*2))")
	if r := c.must("task", "logs", "J", "7"); r.stdout != "14\n" {
		t.Errorf("task logs J 7: want \"14\\n\"\n%s", r)
	}
	var j api.Job
	decodeJSON(t, c.must("job", "show", "J", "-o", "json"), &j)
	if j.TaskCounts.Succeeded != 1000 || j.TaskCounts.Failed != 0 || j.TaskCounts.Completed != 1000 {
		t.Errorf("job J task_counts = %+v, want 1000 succeeded", j.TaskCounts)
	}
}

// TestRetries: a non-zero exit uses up the job's retries, and every attempt
// is on record.
func TestRetries(t *testing.T) {
	t.Parallel()
	c := startUp(t, testRoot(t), "--nodes", "1")
	c.must("job", "create", "R", "--max-retries", "2")
	if r := c.cli("submit", "--job", "R", "--wait", "--", "sh", "-c", "exit 3"); r.code != 1 {
		t.Fatalf("submit --wait of a failing task: want exit 1\n%s", r)
	}
	ids := strings.Fields(c.must("task", "list", "R", "-q").stdout)
	if len(ids) != 1 {
		t.Fatalf("task list R -q = %q, want one ID", ids)
	}
	tk := c.task("R", ids[0])
	if tk.Result != "failure" || tk.FailureCategory != "user" || tk.ExitCode == nil || *tk.ExitCode != 3 || tk.Retries != 2 {
		t.Errorf("task = result %q category %q exit %v retries %d; want failure, user, 3, 2",
			tk.Result, tk.FailureCategory, deref(tk.ExitCode), tk.Retries)
	}
	if len(tk.Attempts) != 3 {
		t.Fatalf("want 3 attempts, got %d: %+v", len(tk.Attempts), tk.Attempts)
	}
	for i, at := range tk.Attempts {
		if at.Number != i+1 || at.Result != "failure" || at.FailureCategory != "user" || deref(at.ExitCode) != 3 {
			t.Errorf("attempt %d = %+v; want number %d, failure (user), exit 3", i, at, i+1)
		}
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// TestWallClockTimeoutKillsProcessTree: a task over its wall clock is
// stopped with its whole process tree, background children included.
func TestWallClockTimeoutKillsProcessTree(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")
	start := time.Now()
	r := c.cli("submit", "--job", "T", "--task-max-wall-clock", "1s", "--wait", "--shell", "--",
		`sleep 300 & echo $! > "$LOTE_TASK_DIR/child.pid"; sleep 300`)
	if r.code != 1 {
		t.Fatalf("submit --wait of a task that times out: want exit 1\n%s", r)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("a 1s wall clock took %v to end the task", d)
	}
	ids := strings.Fields(c.must("task", "list", "T", "-q").stdout)
	if len(ids) != 1 {
		t.Fatalf("task list T -q = %q, want one ID", ids)
	}
	tk := c.task("T", ids[0])
	if tk.State != "completed" || tk.Result != "failure" || tk.FailureCategory != "timeout" {
		t.Errorf("task = %s/%s (%s), want completed/failure (timeout)", tk.State, tk.Result, tk.FailureCategory)
	}
	b, err := os.ReadFile(filepath.Join(home, "nodes", "local-1", "workitems", "T", ids[0], "1", "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if alive(child) {
		// It may still be on its way out; give it a moment, then insist.
		waitFor(t, 3*time.Second, "the timed-out task's background child to die", func() error {
			if alive(child) {
				return errAlive(child)
			}
			return nil
		})
	}
}

type errAlive int

func (e errAlive) Error() string { return "pid " + strconv.Itoa(int(e)) + " is alive" }

// TestAuth: every API call but /healthz needs the bearer token, and
// client.json, which holds it, is private.
func TestAuth(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")
	st, err := os.Stat(filepath.Join(home, "client.json"))
	if err != nil {
		t.Fatal(err)
	}
	if m := st.Mode().Perm(); m != 0o600 {
		t.Errorf("client.json mode = %o, want 600", m)
	}
	var cfg api.ClientConfig
	b, _ := os.ReadFile(filepath.Join(home, "client.json"))
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Token == "" {
		t.Fatalf("client.json: %v, token %q", err, cfg.Token)
	}
	get := func(path, token string) (int, []byte) {
		t.Helper()
		req, err := http.NewRequest("GET", c.url+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, body
	}
	for _, tc := range []struct{ name, token string }{{"no token", ""}, {"wrong token", "lote_wrong"}, {"token with a suffix", cfg.Token + "x"}} {
		code, body := get("/v1/jobs", tc.token)
		if code != http.StatusUnauthorized {
			t.Errorf("GET /v1/jobs with %s: status %d, want 401", tc.name, code)
			continue
		}
		var e api.Error
		if err := json.Unmarshal(body, &e); err != nil || e.Err.Code == "" || e.Err.Message == "" {
			t.Errorf("GET /v1/jobs with %s: body %q is not a JSON error with code and message (%v)", tc.name, body, err)
		}
	}
	if code, body := get("/v1/jobs", cfg.Token); code != http.StatusOK {
		t.Errorf("GET /v1/jobs with the admin token: status %d: %s", code, body)
	}
	if code, body := get("/healthz", ""); code != http.StatusOK {
		t.Errorf("GET /healthz without a token: status %d: %s", code, body)
	}
}

// TestExitCodesAndOutput: DESIGN §4's exit codes, errors on stderr (JSON
// with -o json), and -q.
func TestExitCodesAndOutput(t *testing.T) {
	t.Parallel()
	c := startUp(t, testRoot(t), "--nodes", "1")

	r := c.cli("job", "show", "NOPE")
	if r.code != 1 || r.stdout != "" || !strings.Contains(r.stderr, "NOPE") {
		t.Errorf("job show NOPE: want exit 1, nothing on stdout, an error naming NOPE on stderr\n%s", r)
	}
	r = c.cli("-o", "json", "job", "show", "NOPE")
	var je struct {
		Version string        `json:"version"`
		Error   api.ErrorBody `json:"error"`
	}
	if r.code != 1 || r.stdout != "" {
		t.Errorf("-o json job show NOPE: want exit 1 and nothing on stdout\n%s", r)
	}
	if err := json.Unmarshal([]byte(r.stderr), &je); err != nil || je.Version == "" || je.Error.Code != "not_found" || je.Error.Message == "" {
		t.Errorf("-o json job show NOPE: stderr is not a JSON error with version and code not_found (%v)\n%s", err, r)
	}

	r = c.cli("submit", "--job", "A", "--array", "5-1", "--", "true")
	if r.code != 2 || !strings.Contains(r.stderr, "array") {
		t.Errorf("submit --array 5-1: want exit 2 and an error naming the array field\n%s", r)
	}
	r = c.cli("-o", "json", "submit", "--job", "A", "--array", "5-1", "--", "true")
	if err := json.Unmarshal([]byte(r.stderr), &je); r.code != 2 || err != nil || !strings.Contains(je.Error.Field, "array") {
		t.Errorf("-o json submit --array 5-1: want exit 2 and a JSON error whose field names the array (%v)\n%s", err, r)
	}
	if r := c.cli("job", "show", "A"); r.code != 1 {
		t.Errorf("a rejected submit created its job (nothing may be half-applied)\n%s", r)
	}
	if r := c.cli("job", "show", "--no-such-flag", "X"); r.code != 2 {
		t.Errorf("an unknown flag: want exit 2\n%s", r)
	}
	if r := c.cli("-o", "yaml", "job", "list"); r.code != 2 {
		t.Errorf("-o yaml: want exit 2\n%s", r)
	}

	if r := c.must("job", "create", "Q", "-q"); r.stdout != "Q\n" {
		t.Errorf("job create Q -q: stdout %q, want \"Q\\n\"", r.stdout)
	}
	if r := c.must("submit", "--job", "Q", "--array", "1-3", "--wait", "-q", "--", "true"); r.stdout != "Q\n" {
		t.Errorf("submit --wait -q: stdout %q, want the job ID alone", r.stdout)
	}
	ids := strings.Fields(c.must("task", "list", "Q", "-q").stdout)
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"1", "2", "3"}) {
		t.Errorf("task list Q -q = %q, want 1 2 3", ids)
	}
	if r := c.must("job", "list", "-q"); r.stdout != "Q\n" {
		t.Errorf("job list -q: stdout %q, want \"Q\\n\"", r.stdout)
	}
	if r := c.must("pool", "nodes", "local", "-q"); r.stdout != "local-1\n" {
		t.Errorf("pool nodes local -q: stdout %q, want \"local-1\\n\"", r.stdout)
	}
}
