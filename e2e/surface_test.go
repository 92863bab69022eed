package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/lotehq/lote/api"
)

// The CLI surface of issue 3, through the real binary against `lote up`:
// each command's happy path and its main error paths.

// runOpts are what runCLI adds to a CLI call: a working directory, standard
// input and environment variables.
type runOpts struct {
	dir   string
	stdin string
	env   []string
}

// runCLI is cli with a working directory, stdin and extra environment.
func runCLI(t *testing.T, home string, o runOpts, args ...string) result {
	t.Helper()
	return runProgram(t, home, o, lote, args...)
}

// runProgram runs a program (lote, or a script that calls it) with
// LOTE_HOME=home and captures its output.
func runProgram(t *testing.T, home string, o runOpts, program string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.Env = childEnv(home, o.env...)
	cmd.Dir = o.dir
	cmd.Stdin = strings.NewReader(o.stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running lote %s: %v\n%s", strings.Join(args, " "), err, r)
	}
	return r
}

// wantCode fails the test unless r exited with code.
func wantCode(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Errorf("want exit %d:\n%s", code, r)
	}
}

func lines(s string) []string { return strings.Fields(s) }

func TestSurfacePoolsAndNodes(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")

	var p api.Pool
	c.json(&p, "pool", "create", "P", "--slots", "1", "--label", "kind=cpu", "--fill", "pack", "--allow-root")
	if p.ID != "P" || p.SlotsPerNode != 1 || p.FillPolicy != "pack" || p.Labels["kind"] != "cpu" || !strings.HasPrefix(p.JoinToken, "join_") {
		t.Errorf("pool create = %+v", p)
	}
	if r := c.must("pool", "create", "Q", "-q"); r.stdout != "Q\n" {
		t.Errorf("pool create Q -q: stdout %q", r.stdout)
	}
	if r := c.must("pool", "create", "R"); !strings.Contains(r.stdout, "join token: join_") {
		t.Errorf("pool create prints the join token:\n%s", r)
	}
	wantCode(t, c.cli("pool", "create", "p"), 2)      // taken, whatever the case
	wantCode(t, c.cli("pool", "create", "bad id"), 2) // invalid ID
	wantCode(t, c.cli("pool", "create", "X", "--fill", "random"), 2)
	if ids := lines(c.must("pool", "list", "-q").stdout); !slices.Equal(ids, []string{"local", "P", "Q", "R"}) {
		t.Errorf("pool list -q = %v", ids)
	}
	var shown api.Pool
	c.json(&shown, "pool", "show", "P")
	if shown.JoinToken != "" {
		t.Errorf("pool show without --reveal-token shows the token")
	}
	c.json(&shown, "pool", "show", "P", "--reveal-token")
	if shown.JoinToken != p.JoinToken {
		t.Errorf("pool show --reveal-token = %q, want %q", shown.JoinToken, p.JoinToken)
	}
	c.json(&shown, "pool", "show", "P", "--rotate-token")
	if shown.JoinToken == "" || shown.JoinToken == p.JoinToken {
		t.Errorf("pool show --rotate-token = %q (was %q)", shown.JoinToken, p.JoinToken)
	}
	token := shown.JoinToken
	wantCode(t, c.cli("pool", "show", "nope"), 1)

	var resized api.Pool
	c.json(&resized, "pool", "resize", "P", "--nodes", "2", "--deallocation", "task_completion")
	if resized.TargetNodes != 2 {
		t.Errorf("pool resize --nodes 2: target %d", resized.TargetNodes)
	}
	wantCode(t, c.cli("pool", "resize", "P", "--nodes", "2", "--deallocation", "bogus"), 2)
	wantCode(t, c.cli("pool", "resize", "P", "--nodes", "-1"), 2)
	wantCode(t, c.cli("pool", "resize", "P"), 2)
	wantCode(t, c.cli("pool", "resize", "nope", "--nodes", "1"), 1)

	// A static node: an agent started by hand with the rotated token.
	startProc(t, home, filepath.Join(home, "agent-n1.log"), "agent", "--server", c.url, "--pool", "P",
		"--join-token", token, "--dir", filepath.Join(home, "n1"), "--name", "n1", "--slots", "1")
	c.awaitNodes("P", 1)
	if ids := lines(c.must("pool", "nodes", "P", "-q").stdout); !slices.Equal(ids, []string{"n1"}) {
		t.Errorf("pool nodes P -q = %v", ids)
	}
	var n api.Node
	c.json(&n, "node", "show", "n1")
	if n.PoolID != "P" || n.Slots != 1 || !n.Connected {
		t.Errorf("node show n1 = %+v", n)
	}
	c.json(&n, "node", "drain", "n1")
	if !n.Drained {
		t.Errorf("node drain: %+v", n)
	}
	c.json(&n, "node", "undrain", "n1")
	if n.Drained {
		t.Errorf("node undrain: %+v", n)
	}
	wantCode(t, c.cli("node", "show", "nope"), 1)
	wantCode(t, c.cli("node", "drain", "nope"), 1)

	c.must("submit", "--pool", "P", "--job", "PJ", "--wait", "--", "true")
	if tk := c.task("PJ", "task-1"); len(tk.Attempts) != 1 || tk.Attempts[0].NodeID != "n1" {
		t.Errorf("task on pool P ran on %+v, want n1", tk.Attempts)
	}
	wantCode(t, c.cli("pool", "delete", "P"), 2) // it still has a job
	c.must("job", "delete", "PJ")
	if r := c.must("node", "delete", "n1", "-q"); r.stdout != "n1\n" {
		t.Errorf("node delete -q: stdout %q", r.stdout)
	}
	wantCode(t, c.cli("node", "show", "n1"), 1)
	var del struct {
		Deleted []string `json:"deleted"`
	}
	c.json(&del, "pool", "delete", "P", "Q")
	if !slices.Equal(del.Deleted, []string{"P", "Q"}) {
		t.Errorf("pool delete P Q: deleted %v", del.Deleted)
	}
	wantCode(t, c.cli("pool", "delete", "nope"), 1)
	if ids := lines(c.must("pool", "list", "-q").stdout); !slices.Equal(ids, []string{"local", "R"}) {
		t.Errorf("pool list -q after deletes = %v", ids)
	}
}

func TestSurfaceJobsAndTasks(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1", "--slots", "2")

	var j api.Job
	c.json(&j, "job", "create", "J", "--priority", "5", "--max-retries", "1", "--max-wall-clock", "1m",
		"--on-all-tasks-complete", "no_action", "--tag", "run=x", "--job-env", "A=1")
	if j.ID != "J" || j.Priority != 5 || j.MaxRetries != 1 || time.Duration(j.MaxWallClock) != time.Minute ||
		j.Tags["run"] != "x" || j.Env["A"] != "1" || j.State != "active" {
		t.Errorf("job create = %+v", j)
	}
	wantCode(t, c.cli("job", "create", "j"), 2)
	wantCode(t, c.cli("job", "create", "K", "--priority", "5000"), 2)
	wantCode(t, c.cli("job", "create", "K", "--on-all-tasks-complete", "explode"), 2)
	wantCode(t, c.cli("job", "create", "K", "--pool", "nope"), 2)
	wantCode(t, c.cli("job", "create", "K", "--tag", "novalue"), 2)

	c.json(&j, "job", "set-priority", "J", "7")
	if j.Priority != 7 {
		t.Errorf("set-priority 7: %d", j.Priority)
	}
	c.json(&j, "job", "set-priority", "J", "--", "-3")
	if j.Priority != -3 {
		t.Errorf("set-priority -- -3: %d", j.Priority)
	}
	wantCode(t, c.cli("job", "set-priority", "J", "high"), 2)
	wantCode(t, c.cli("job", "set-priority", "J", "1001"), 2)
	wantCode(t, c.cli("job", "set-priority", "nope", "1"), 1)

	// task add: one task, a JSON array file, JSON lines on stdin.
	if r := c.must("task", "add", "J", "--id", "a", "--env", "B=2", "-q", "--", "sh", "-c", "echo $A $B"); r.stdout != "a\n" {
		t.Errorf("task add --id a -q: stdout %q", r.stdout)
	}
	specs := filepath.Join(home, "specs.json")
	os.WriteFile(specs, []byte(`[{"id":"b","command":["echo","b"]},{"command":["sh","-c","echo $C"]}]`), 0o644)
	var added api.TaskAddResult
	c.json(&added, "task", "add", "J", "--json", specs, "--env", "C=from-flag")
	if added.Added != 2 || added.FirstID != "b" || added.LastID != "task-3" {
		t.Errorf("task add --json FILE = %+v", added)
	}
	r := runCLI(t, home, runOpts{stdin: `{"id":"d","command":["echo","d"]}` + "\n" + `{"id":"e","command":["echo","{task}"]}` + "\n"},
		"task", "add", "J", "--json", "-")
	if r.code != 0 || !strings.Contains(r.stdout, "2 task(s) added") {
		t.Errorf("task add --json - (JSON lines):\n%s", r)
	}
	wantCode(t, c.cli("task", "add", "J"), 2)                                 // no command
	wantCode(t, c.cli("task", "add", "J", "--json", specs, "--", "true"), 2)  // both
	wantCode(t, c.cli("task", "add", "J", "--id", "a", "--", "true"), 2)      // taken
	wantCode(t, c.cli("task", "add", "J", "--", "echo", "{nope}"), 2)         // bad placeholder
	wantCode(t, c.cli("task", "add", "J", "--shell", "--", "echo", "two"), 2) // shell takes one
	wantCode(t, c.cli("task", "add", "nope", "--", "true"), 1)                // no such job
	bad := filepath.Join(home, "bad.json")
	os.WriteFile(bad, []byte(`[{"command":["true"],"colour":"red"}]`), 0o644)
	wantCode(t, c.cli("task", "add", "J", "--json", bad), 2)

	c.must("job", "wait", "J")
	if ids := lines(c.must("task", "list", "J", "-q").stdout); !slices.Equal(ids, []string{"a", "b", "task-3", "d", "e"}) {
		t.Errorf("task list -q = %v", ids)
	}
	for id, want := range map[string]string{"a": "1 2\n", "b": "b\n", "task-3": "from-flag\n", "e": "e\n"} {
		if r := c.must("task", "logs", "J", id); r.stdout != want {
			t.Errorf("task logs J %s = %q, want %q", id, r.stdout, want)
		}
	}
	var logs struct {
		Data    string `json:"data"`
		Attempt int    `json:"attempt"`
	}
	c.json(&logs, "task", "logs", "J", "a")
	if logs.Data != "1 2\n" || logs.Attempt != 1 {
		t.Errorf("task logs -o json = %+v", logs)
	}
	wantCode(t, c.cli("task", "show", "J", "nope"), 1)
	wantCode(t, c.cli("task", "logs", "J", "nope"), 1)
	wantCode(t, c.cli("task", "list", "J", "--state", "bogus"), 2)

	// Cancel and retry.
	c.must("task", "add", "J", "--id", "long", "--", "sleep", "60")
	var cancelled api.TaskList
	c.json(&cancelled, "task", "cancel", "J", "long")
	if len(cancelled.Tasks) != 1 || cancelled.Tasks[0].State != "completed" || cancelled.Tasks[0].FailureCategory != "cancelled" {
		t.Errorf("task cancel = %+v", cancelled.Tasks)
	}
	wantCode(t, c.cli("task", "cancel", "J", "long"), 2) // already completed
	c.must("task", "retry", "J", "a")
	if r := c.cli("job", "wait", "J"); r.code != 1 { // "long" failed (cancelled)
		t.Errorf("job wait with a cancelled task: want exit 1\n%s", r)
	}
	if tk := c.task("J", "a"); len(tk.Attempts) != 2 || tk.Result != "success" {
		t.Errorf("task a after retry: %d attempts, result %q", len(tk.Attempts), tk.Result)
	}
	wantCode(t, c.cli("task", "retry", "J", "nope"), 1)

	// Waiting tasks say why.
	c.must("pool", "create", "empty")
	c.must("submit", "--pool", "empty", "--job", "W", "--", "true")
	var waiting api.TaskList
	c.json(&waiting, "task", "list", "W", "--state", "active")
	if len(waiting.Tasks) != 1 || waiting.Tasks[0].PendingReason == "" {
		t.Errorf("task list W --state active: %+v, want one task saying why it waits", waiting.Tasks)
	}
	if r := c.must("task", "list", "W"); !strings.Contains(r.stdout, waiting.Tasks[0].PendingReason) {
		t.Errorf("task list table does not say why the task waits:\n%s", r)
	}

	// List, terminate, delete.
	if ids := lines(c.must("job", "list", "--state", "active", "-q").stdout); !slices.Equal(ids, []string{"J", "W"}) {
		t.Errorf("job list --state active -q = %v", ids)
	}
	wantCode(t, c.cli("job", "list", "--state", "bogus"), 2)
	wantCode(t, c.cli("job", "terminate"), 2)
	wantCode(t, c.cli("job", "terminate", "J", "--tag", "run=x"), 2)
	wantCode(t, c.cli("job", "retry", "J"), 2) // --failed is required
	var ended api.JobList
	c.json(&ended, "job", "terminate", "W")
	if len(ended.Jobs) != 1 || ended.Jobs[0].State != "completed" || ended.Jobs[0].TaskCounts.Failed != 1 {
		t.Errorf("job terminate W = %+v", ended.Jobs)
	}
	wantCode(t, c.cli("job", "retry", "W", "--failed"), 2) // a completed job takes no retries
	c.must("job", "delete", "J", "W")
	wantCode(t, c.cli("job", "show", "J"), 1)
	wantCode(t, c.cli("job", "delete", "J"), 1)
	if r := c.must("job", "list"); strings.Contains(r.stdout, "W ") {
		t.Errorf("deleted job still listed:\n%s", r)
	}
}

// TestSurfaceIdempotency: a create retried with its idempotency key
// creates once, and answers the first result.
func TestSurfaceIdempotency(t *testing.T) {
	t.Parallel()
	c := startUp(t, testRoot(t), "--nodes", "1")

	var first, second api.TaskAddResult
	c.json(&first, "submit", "--idempotency-key", "k1", "--array", "1-3", "--", "true")
	c.json(&second, "submit", "--idempotency-key", "k1", "--array", "1-3", "--", "true")
	if first.JobID == "" || second != first {
		t.Errorf("the same submit twice with one key: %+v then %+v, want the same job", first, second)
	}
	if ids := lines(c.must("job", "list", "-q").stdout); len(ids) != 1 {
		t.Errorf("jobs after a repeated submit: %v, want one", ids)
	}
	// The same key for a different submit is refused.
	wantCode(t, c.cli("submit", "--idempotency-key", "k1", "--array", "1-5", "--", "true"), 2)

	// Into a named job that exists: the tasks are added once.
	c.must("job", "create", "N")
	for range 2 {
		c.must("submit", "--job", "N", "--idempotency-key", "k2", "--id-prefix", "x", "--array", "1-4", "--", "true")
	}
	// Into a named job that does not exist yet: created once.
	for range 2 {
		c.must("submit", "--job", "M", "--idempotency-key", "k3", "--", "true")
	}
	for range 2 {
		c.must("job", "create", "O", "--idempotency-key", "k4")
		c.must("task", "add", "O", "--idempotency-key", "k5", "--", "true")
	}
	for job, want := range map[string]int{"N": 4, "M": 1, "O": 1} {
		if tc := c.job(job).TaskCounts.Total(); tc != want {
			t.Errorf("job %s has %d tasks after repeated keyed calls, want %d", job, tc, want)
		}
	}
}

// TestSurfaceTags: status and terminate of a whole run by tag, one call
// each.
func TestSurfaceTags(t *testing.T) {
	t.Parallel()
	c := startUp(t, testRoot(t), "--nodes", "1")
	for _, id := range []string{"t1", "t2", "t3"} {
		c.must("submit", "--job", id, "--tag", "run=abc", "--tag", "user=me", "--", "sleep", "60")
	}
	c.must("submit", "--job", "other", "--tag", "run=xyz", "--", "sleep", "60")

	var list api.JobList
	c.json(&list, "job", "list", "--tag", "run=abc")
	states := map[string]string{}
	for _, j := range list.Jobs {
		states[j.ID] = j.State
	}
	if len(states) != 3 || states["t1"] != "active" || states["t2"] != "active" || states["t3"] != "active" {
		t.Errorf("job list --tag run=abc: %v, want t1 t2 t3 active", states)
	}
	c.json(&list, "job", "list", "--tag", "run=abc", "--tag", "user=someone")
	if len(list.Jobs) != 0 {
		t.Errorf("job list with two tags matched %d jobs, want 0", len(list.Jobs))
	}

	c.json(&list, "job", "terminate", "--tag", "run=abc")
	if len(list.Jobs) != 3 {
		t.Errorf("job terminate --tag run=abc ended %d jobs, want 3", len(list.Jobs))
	}
	c.json(&list, "job", "list", "--tag", "run=abc")
	for _, j := range list.Jobs {
		if j.State != "completed" || j.TaskCounts.Failed != 1 {
			t.Errorf("job %s after terminate --tag: state %s, counts %+v", j.ID, j.State, j.TaskCounts)
		}
	}
	if j := c.job("other"); j.State != "active" {
		t.Errorf("job other (tag run=xyz) was terminated too: %s", j.State)
	}
	wantCode(t, c.cli("job", "terminate", "--tag", "run"), 2)
	c.must("job", "terminate", "other")
}

// TestSurfaceRetryFailed: `job retry --failed` runs again exactly the
// tasks that failed.
func TestSurfaceRetryFailed(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")
	fixed := filepath.Join(home, "fixed")
	// Every third task fails until the file "fixed" exists.
	r := c.cli("submit", "--job", "R", "--array", "1-9", "--wait", "--", "sh", "-c",
		`test $((LOTE_TASK_INDEX % 3)) -ne 0 || test -e "$0"`, fixed)
	wantCode(t, r, 1)
	if j := c.job("R"); j.TaskCounts.Failed != 3 || j.TaskCounts.Succeeded != 6 {
		t.Fatalf("before retry: %+v, want 3 failed and 6 succeeded", j.TaskCounts)
	}
	os.WriteFile(fixed, nil, 0o644)
	var res api.RetryResult
	c.json(&res, "job", "retry", "R", "--failed")
	if res.Retried != 3 {
		t.Errorf("job retry --failed retried %d, want 3", res.Retried)
	}
	c.must("job", "wait", "R")
	for _, tk := range c.tasks("R", "") {
		want := 1
		if tk.ID == "3" || tk.ID == "6" || tk.ID == "9" {
			want = 2
		}
		if len(c.task("R", tk.ID).Attempts) != want || tk.Result != "success" {
			t.Errorf("task %s: %d attempts, result %s; want %d attempts and success", tk.ID, len(c.task("R", tk.ID).Attempts), tk.Result, want)
		}
	}
	if res := c.must("job", "retry", "R", "--failed", "-o", "json"); !strings.Contains(res.stdout, `"retried": 0`) {
		t.Errorf("a second retry --failed with nothing failed:\n%s", res)
	}
}

// TestSurfaceEnvAndCwd: --env-from-caller copies the caller's environment
// minus the deny-list, and `--cwd .` runs where the caller is; without
// --cwd each attempt gets a fresh task directory.
func TestSurfaceEnvAndCwd(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")
	// $VAR, not ${VAR}: braces are placeholders ({{ and }} when meant).
	script := `echo "$FOO|$BAR|$LOTE_SECRET|$LOTE_TASK_ID"`
	env := []string{"FOO=from-caller", "BAR=caller", "LOTE_SECRET=leak"}
	r := runCLI(t, home, runOpts{env: env}, "submit", "--job", "E", "--env-from-caller", "--env", "BAR=explicit", "--wait", "--shell", "--", script)
	wantCode(t, r, 0)
	if got := c.must("task", "logs", "E", "task-1").stdout; got != "from-caller|explicit||task-1\n" {
		t.Errorf("with --env-from-caller: %q", got)
	}
	r = runCLI(t, home, runOpts{env: env}, "submit", "--job", "E", "--wait", "--shell", "--", script)
	wantCode(t, r, 0)
	if got := c.must("task", "logs", "E", "task-2").stdout; got != "|||task-2\n" {
		t.Errorf("without --env-from-caller: %q", got)
	}

	work := filepath.Join(home, "work dir")
	os.Mkdir(work, 0o755)
	r = runCLI(t, home, runOpts{dir: work}, "submit", "--job", "C", "--cwd", ".", "--wait", "--", "sh", "-c", "pwd > here.txt")
	wantCode(t, r, 0)
	if b, err := os.ReadFile(filepath.Join(work, "here.txt")); err != nil || string(b) != work+"\n" {
		t.Errorf("--cwd . ran in %q (%v), want %q", b, err, work)
	}
	c.must("submit", "--job", "C", "--wait", "--", "pwd")
	if got := c.must("task", "logs", "C", "task-2").stdout; !strings.HasSuffix(got, "/workitems/C/task-2/1/wd\n") {
		t.Errorf("default working directory %q, want a fresh .../workitems/C/task-2/1/wd", got)
	}
}

// TestSurfaceOutput: tables fit the terminal width by cutting the last
// column; piped output keeps it whole.
func TestSurfaceOutput(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")
	long := strings.Repeat("x", 300)
	c.must("submit", "--job", "L", "--wait", "--", "echo", long)
	if r := runCLI(t, home, runOpts{env: []string{"COLUMNS="}}, "task", "list", "L"); r.code != 0 || !strings.Contains(r.stdout, long) {
		t.Errorf("piped task list cut the command:\n%s", r)
	}
	r := runCLI(t, home, runOpts{env: []string{"COLUMNS=100"}}, "task", "list", "L")
	wantCode(t, r, 0)
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if n := utf8.RuneCountInString(l); n > 100 {
			t.Errorf("COLUMNS=100: a line of %d characters: %q", n, l)
		}
	}
	if !strings.Contains(r.stdout, "echo xxx") || !strings.Contains(r.stdout, "…") {
		t.Errorf("COLUMNS=100: want the command cut with …:\n%s", r.stdout)
	}
}

// TestSurfaceWatch: `--watch` on a pipe prints the list again when it
// changes, and stops cleanly on Ctrl-C.
func TestSurfaceWatch(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")
	out := filepath.Join(home, "watch.out")
	p := startProc(t, home, out, "job", "list", "--watch")
	waitFor(t, 10*time.Second, "the first listing", func() error {
		if !strings.Contains(p.logText(), "JOB") {
			return errors.New("no table yet")
		}
		return nil
	})
	c.must("submit", "--job", "WJ", "--wait", "--", "true")
	waitFor(t, 10*time.Second, "a listing with the new job, completed", func() error {
		if !strings.Contains(p.logText(), "WJ") || strings.Count(p.logText(), "JOB ") < 2 {
			return fmt.Errorf("watch output so far:\n%s", p.logText())
		}
		return nil
	})
	time.Sleep(2 * watchIntervalForTest)
	before := strings.Count(p.logText(), "JOB ")
	time.Sleep(2 * watchIntervalForTest)
	if after := strings.Count(p.logText(), "JOB "); after != before {
		t.Errorf("watch on a pipe printed %d more listings with nothing changed", after-before)
	}
	p.signal(syscall.SIGINT)
	if code, ok := p.wait(10 * time.Second); !ok || code != 0 {
		t.Errorf("watch after Ctrl-C: exit %d (exited: %v), want 0", code, ok)
	}
}

const watchIntervalForTest = time.Second
