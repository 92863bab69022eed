package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// cliTimeout bounds one CLI call, `--wait` and `job wait` included, so a
// hung server fails the test instead of the whole run.
const cliTimeout = 2 * time.Minute

// testRoot makes a temporary directory for everything one test runs, and
// registers a cleanup that kills every process whose command line or
// environment names it (servers, agents, spawners and tasks alike: tasks
// carry their node directory in LOTE_NODE_ROOT_DIR), then, if the test
// failed, prints the tail of every log file under it.
func testRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	t.Cleanup(func() {
		killAll(t, root)
		if t.Failed() {
			dumpLogs(t, root)
		}
	})
	return root
}

// childEnv is the test process's environment without any LOTE_ setting of
// the person running the tests, plus LOTE_HOME=home.
func childEnv(home string, extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOTE_") {
			env = append(env, kv)
		}
	}
	return append(append(env, "LOTE_HOME="+home), extra...)
}

// proc is a long-running lote process started by a test (lote up, lote
// server, lote agent), in its own process group, with its output in a file.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	code int // exit code once done; -1 when killed by a signal
}

// startProc starts lote with args, LOTE_HOME=home and output appended to
// logPath. It is killed (with its whole process group) in cleanup.
func startProc(t *testing.T, home, logPath string, args ...string) *proc {
	t.Helper()
	return startWrapped(t, home, logPath, nil, args...)
}

// startWrapped is startProc with wrapper prepended to the command line
// (e.g. `ip netns exec NS`).
func startWrapped(t *testing.T, home, logPath string, wrapper []string, args ...string) *proc {
	t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	argv := append(append(append([]string(nil), wrapper...), lote), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = childEnv(home)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %v: %v", argv, err)
	}
	p := &proc{t: t, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		if err != nil && p.code == 0 {
			p.code = -1
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
	return p
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// signal sends sig to the process itself (not its group).
func (p *proc) signal(sig syscall.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("signalling pid %d: %v", p.pid(), err)
	}
}

// wait waits up to timeout for the process to exit and returns its exit
// code; ok is false on timeout.
func (p *proc) wait(timeout time.Duration) (code int, ok bool) {
	select {
	case <-p.done:
		return p.code, true
	case <-time.After(timeout):
		return 0, false
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logText is what the process wrote so far.
func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// result is one finished CLI call.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("lote %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// cli runs one lote command with LOTE_HOME=home and captures its output.
func cli(t *testing.T, home string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, lote, args...)
	cmd.Env = childEnv(home)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("running lote %s: %v\n%s", strings.Join(args, " "), err, r)
	}
	if ctx.Err() != nil {
		t.Fatalf("lote %s did not finish within %v\n%s", strings.Join(args, " "), cliTimeout, r)
	}
	return r
}

// mustCLI is cli that fails the test unless the command exits 0.
func mustCLI(t *testing.T, home string, args ...string) result {
	t.Helper()
	r := cli(t, home, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0:\n%s", r)
	}
	return r
}

// cliJSON runs `lote -o json ARGS`, requires exit 0 and a "version" field,
// and decodes stdout into v.
func cliJSON(t *testing.T, home string, v any, args ...string) {
	t.Helper()
	r := mustCLI(t, home, append([]string{"-o", "json"}, args...)...)
	decodeJSON(t, r, v)
}

func decodeJSON(t *testing.T, r result, v any) {
	t.Helper()
	var probe struct {
		Version *string `json:"version"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &probe); err != nil {
		t.Fatalf("stdout is not one JSON document: %v\n%s", err, r)
	}
	if probe.Version == nil || *probe.Version == "" {
		t.Fatalf("JSON output has no \"version\" field\n%s", r)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("decoding output: %v\n%s", err, r)
	}
}

// waitFor polls cond until it returns nil, failing the test with cond's last
// error once timeout has passed.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	delay := 20 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(delay)
		delay = min(2*delay, 250*time.Millisecond)
	}
}

// cluster is a running `lote up` or `lote server` and the directory its
// client.json is in.
type cluster struct {
	t    *testing.T
	home string
	srv  *proc
	url  string
}

// startUp runs `lote up --listen 127.0.0.1:0 ARGS` with LOTE_HOME=home and
// waits until it says it is up and client.json names its address.
func startUp(t *testing.T, home string, args ...string) *cluster {
	t.Helper()
	log := filepath.Join(home, "up.log")
	from := fileSize(log)
	p := startProc(t, home, log, append([]string{"up", "--listen", "127.0.0.1:0"}, args...)...)
	return awaitServer(t, home, p, from, "lote is up at ")
}

// startServer runs `lote server --dir home --listen ADDR ARGS`.
func startServer(t *testing.T, home, listen string, args ...string) *cluster {
	t.Helper()
	log := filepath.Join(home, "server.log")
	from := fileSize(log)
	p := startProc(t, home, log, append([]string{"server", "--dir", home, "--listen", listen}, args...)...)
	return awaitServer(t, home, p, from, "lote server at ")
}

// awaitServer waits for the line "<banner>URL" in p's log after offset from
// (the log is appended to across restarts) and for client.json to name URL.
func awaitServer(t *testing.T, home string, p *proc, from int64, banner string) *cluster {
	t.Helper()
	c := &cluster{t: t, home: home, srv: p}
	checkInvariantsAtEnd(c)
	waitFor(t, 30*time.Second, "the server to come up", func() error {
		if p.exited() {
			t.Fatalf("server exited with code %d:\n%s", p.code, p.logText())
		}
		url := lastURL(p.logText()[from:], banner)
		if url == "" {
			return errors.New("no banner yet")
		}
		var cfg api.ClientConfig
		b, err := os.ReadFile(filepath.Join(home, "client.json"))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &cfg); err != nil {
			return err
		}
		if cfg.Server != url {
			return fmt.Errorf("client.json names %s, the server says %s", cfg.Server, url)
		}
		c.url = url
		return nil
	})
	return c
}

// lastURL finds the URL after the last occurrence of banner in log.
func lastURL(log, banner string) string {
	i := strings.LastIndex(log, banner)
	if i < 0 {
		return ""
	}
	rest := log[i+len(banner):]
	if j := strings.IndexAny(rest, " \n"); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func (c *cluster) cli(args ...string) result {
	c.t.Helper()
	return cli(c.t, c.home, args...)
}

func (c *cluster) must(args ...string) result {
	c.t.Helper()
	return mustCLI(c.t, c.home, args...)
}

func (c *cluster) json(v any, args ...string) {
	c.t.Helper()
	cliJSON(c.t, c.home, v, args...)
}

func (c *cluster) job(id string) api.Job {
	c.t.Helper()
	var j api.Job
	c.json(&j, "job", "show", id)
	return j
}

func (c *cluster) task(job, id string) api.Task {
	c.t.Helper()
	var tk api.Task
	c.json(&tk, "task", "show", job, id)
	return tk
}

// tasks lists every task of a job, optionally only those in one state.
func (c *cluster) tasks(job, state string) []api.Task {
	c.t.Helper()
	args := []string{"task", "list", job, "--all", "--limit", "1000"}
	if state != "" {
		args = append(args, "--state", state)
	}
	var page api.TaskList
	c.json(&page, args...)
	return page.Tasks
}

func (c *cluster) nodes(pool string) []api.Node {
	c.t.Helper()
	var out struct {
		Nodes []api.Node `json:"nodes"`
	}
	c.json(&out, "pool", "nodes", pool)
	return out.Nodes
}

// awaitJob waits until every task of the job has completed and returns the
// job; on timeout it fails the test listing the tasks.
func (c *cluster) awaitJob(id string, timeout time.Duration) api.Job {
	c.t.Helper()
	var j api.Job
	waitFor(c.t, timeout, "job "+id+" to complete", func() error {
		j = c.job(id)
		if n := j.TaskCounts.Total(); n == 0 || j.TaskCounts.Completed < n {
			var states []string
			for _, tk := range c.tasks(id, "") {
				if tk.State != "completed" {
					states = append(states, tk.ID+":"+tk.State+"@"+tk.NodeID+"#"+strconv.Itoa(tk.Attempt)+" "+tk.PendingReason)
				}
			}
			return fmt.Errorf("%+v; not completed: %s", j.TaskCounts, strings.Join(states, ", "))
		}
		return nil
	})
	return j
}

// awaitNodes waits until the pool has n connected nodes.
func (c *cluster) awaitNodes(pool string, n int) {
	c.t.Helper()
	waitFor(c.t, 30*time.Second, fmt.Sprintf("%d connected nodes in pool %s", n, pool), func() error {
		connected := 0
		nodes := c.nodes(pool)
		for _, nd := range nodes {
			if nd.Connected {
				connected++
			}
		}
		if connected != n {
			return fmt.Errorf("%d of %d nodes connected", connected, len(nodes))
		}
		return nil
	})
}

// agentPID reads the pid an agent wrote into its node directory's lock.
func agentPID(t *testing.T, nodeDir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(nodeDir, "agent.lock"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("agent.lock in %s: %v", nodeDir, err)
	}
	return pid
}

// alive reports whether pid is a live process (a zombie counts as dead).
func alive(pid int) bool {
	state, _, ok := procStat(pid)
	return ok && state != 'Z'
}

// procStat reads a process's state and process group from /proc.
func procStat(pid int) (state byte, pgid int, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 3 {
		return 0, 0, false
	}
	pgid, _ = strconv.Atoi(f[2])
	return f[0][0], pgid, true
}

// procInfo is a live process found under /proc.
type procInfo struct {
	pid, pgid int
	cmdline   string
}

// procsMentioning lists the live processes (not zombies) whose command line
// or environment names dir or a path under it.
func procsMentioning(dir string) []procInfo {
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		state, pgid, ok := procStat(pid)
		if !ok || state == 'Z' {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		environ, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		if mentions(cmdline, dir) || mentions(environ, dir) {
			out = append(out, procInfo{pid: pid, pgid: pgid, cmdline: strings.ReplaceAll(string(cmdline), "\x00", " ")})
		}
	}
	return out
}

// mentions reports whether a NUL-separated list (a command line or an
// environment) names dir or a path under it.
func mentions(list []byte, dir string) bool {
	if bytes.Contains(list, []byte(dir+"/")) {
		return true
	}
	for _, s := range bytes.Split(list, []byte{0}) {
		if string(s) == dir || bytes.HasSuffix(s, []byte("="+dir)) {
			return true
		}
	}
	return false
}

// killAll SIGKILLs every process (and its process group) that names dir, and
// waits until none is left.
func killAll(t *testing.T, dir string) {
	self := syscall.Getpgrp()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ps := procsMentioning(dir)
		if len(ps) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of %s survive SIGKILL: %v", dir, ps)
			return
		}
		for _, p := range ps {
			if p.pgid > 1 && p.pgid != self {
				syscall.Kill(-p.pgid, syscall.SIGKILL)
			}
			syscall.Kill(p.pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dumpLogs prints the tail of every *.log and *.txt file under root.
func dumpLogs(t *testing.T, root string) {
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(path, ".log")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil || len(b) == 0 {
			return nil
		}
		const max = 4000
		if len(b) > max {
			b = append([]byte("…"), b[len(b)-max:]...)
		}
		t.Logf("--- %s ---\n%s", path, b)
		return nil
	})
}

// requireCI fails the test when CI=true, and skips it otherwise: CI must not
// leave a test silently unrun for want of root or a tool.
func requireCI(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: this test must run)", msg)
	}
	t.Skip(msg)
}
