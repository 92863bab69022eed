package spawner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitTimeout bounds every wait in these tests; it is generous for -race.
const waitTimeout = 30 * time.Second

// TestMain lets the test binary stand in for the lote binary: as
// `_spawner --socket S --state D` it runs Serve, as `_usage` it is a task
// with known resource usage.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "_spawner":
			os.Exit(serveMain(os.Args[2:]))
		case "_usage":
			useResources()
			os.Exit(0)
		}
	}
	os.Exit(m.Run())
}

func serveMain(args []string) int {
	fs := flag.NewFlagSet("_spawner", flag.ContinueOnError)
	var cfg ServeConfig
	fs.StringVar(&cfg.SocketPath, "socket", "", "")
	fs.StringVar(&cfg.StateDir, "state", "", "")
	fs.DurationVar(&cfg.Linger, "linger", 0, "")
	if fs.Parse(args) != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := Serve(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// useResources touches 64 MiB and burns at least 100 ms of user CPU.
func useResources() {
	mem := make([]byte, 64<<20)
	for i := range mem {
		mem[i] = byte(i)
	}
	for {
		var ru syscall.Rusage
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		if time.Duration(ru.Utime.Nano()) >= 100*time.Millisecond {
			return
		}
		for i := 0; i < 1<<20; i += 4096 {
			mem[i]++
		}
	}
}

// fixture is a spawner's socket and state dir under a short temporary dir:
// unix socket paths are limited to 108 bytes.
type fixture struct {
	dir, sock, state string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir, err := os.MkdirTemp("", "spawner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return &fixture{dir: dir, sock: filepath.Join(dir, "s.sock"), state: filepath.Join(dir, "state")}
}

// serving is a Serve running in the test process.
type serving struct {
	done chan struct{}
	err  error
}

// serve runs Serve on the fixture's socket and state dir until the test ends.
func (f *fixture) serve(t testing.TB, cfg ServeConfig) *serving {
	t.Helper()
	cfg.SocketPath, cfg.StateDir = f.sock, f.state
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{done: make(chan struct{})}
	go func() {
		s.err = Serve(ctx, cfg)
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		s.wait(t)
	})
	return s
}

func (s *serving) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-s.done:
		return s.err
	case <-time.After(waitTimeout):
		t.Fatal("Serve did not return")
		return nil
	}
}

// dial connects to the fixture's spawner, waiting for it to listen.
func (f *fixture) dial(t testing.TB) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for {
		c, err := Dial(ctx, f.sock)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		if ctx.Err() != nil {
			t.Fatalf("dialing: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sh is a task running script with /bin/sh in dir.
func sh(id, dir, script string) SpawnRequest {
	return SpawnRequest{ID: id, Argv: []string{"/bin/sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: dir}
}

// waitExit returns the next exit of id, skipping others, or the next exit
// if id is empty.
func waitExit(t *testing.T, c *Client, id string) Exit {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case e, ok := <-c.Exits():
			if !ok {
				t.Fatalf("exits closed while waiting for %q", id)
			}
			if id == "" || e.ID == id {
				return e
			}
		case <-timeout:
			t.Fatalf("no exit of %q", id)
		}
	}
}

func mustSpawn(t *testing.T, c *Client, req SpawnRequest) {
	t.Helper()
	if err := c.Spawn(req); err != nil {
		t.Fatal(err)
	}
}

func mustList(t *testing.T, c *Client) map[string]Running {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	tasks, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[string]Running, len(tasks))
	for _, r := range tasks {
		m[r.ID] = r
	}
	return m
}

// waitGone waits until pid is no longer a live process.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		state, _, err := procStat(pid)
		if err != nil || state == 'Z' || state == 'X' {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d still alive", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitFile returns the contents of path once it has a complete line.
func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		b, _ := os.ReadFile(path)
		if bytes.HasSuffix(b, []byte("\n")) {
			return strings.TrimSpace(string(b))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not written", path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestExitStatus(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	tests := []struct {
		name     string
		req      SpawnRequest
		code     int
		signal   int
		startErr string
	}{
		{name: "exit code", req: sh("code", f.dir, "exit 3"), code: 3},
		{name: "success via PATH", req: SpawnRequest{ID: "true", Argv: []string{"true"}, Env: []string{"PATH=/usr/bin:/bin"}}},
		{name: "killed by signal", req: sh("signal", f.dir, "kill -KILL $$"), code: -1, signal: 9},
		{name: "missing executable", req: SpawnRequest{ID: "missing", Argv: []string{"/nonexistent/prog"}}, code: -1, startErr: "no such file"},
		{name: "not in PATH", req: SpawnRequest{ID: "nopath", Argv: []string{"no-such-lote-program"}}, code: -1, startErr: "not found"},
		{name: "missing dir", req: SpawnRequest{ID: "nodir", Argv: []string{"/bin/true"}, Dir: "/nonexistent"}, code: -1, startErr: "no such file"},
		{name: "empty argv", req: SpawnRequest{ID: "noargv"}, code: -1, startErr: "empty argv"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustSpawn(t, c, tt.req)
			e := waitExit(t, c, tt.req.ID)
			if e.ExitCode != tt.code || e.Signal != tt.signal || !strings.Contains(e.StartErr, tt.startErr) || (tt.startErr == "") != (e.StartErr == "") {
				t.Errorf("exit = code %d, signal %d, start error %q; want %d, %d, %q", e.ExitCode, e.Signal, e.StartErr, tt.code, tt.signal, tt.startErr)
			}
			if (e.PID == 0) != (tt.startErr != "") {
				t.Errorf("pid = %d", e.PID)
			}
			if e.TimedOut || e.Killed || e.Lost {
				t.Errorf("exit = %+v, want no timeout, kill or loss", e)
			}
			if e.EndedAt.Before(e.StartedAt) {
				t.Errorf("ended %v before it started %v", e.EndedAt, e.StartedAt)
			}
		})
	}
}

func TestOutputEnvAndDir(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	dir := t.TempDir()
	stdout, stderr := filepath.Join(dir, "out"), filepath.Join(dir, "err")
	if err := os.WriteFile(stdout, []byte("stale output that must be truncated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	req := sh("io", dir, `echo "$GREETING"; pwd; echo oops >&2`)
	req.Env = append(req.Env, "GREETING=hello")
	req.Stdout, req.Stderr = stdout, stderr
	mustSpawn(t, c, req)
	e := waitExit(t, c, "io")
	if e.ExitCode != 0 {
		t.Fatalf("exit = %+v", e)
	}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{stdout: "hello\n" + realDir + "\n", stderr: "oops\n"} {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("%s = %q, want %q", filepath.Base(path), got, want)
		}
	}
	if want := [2]int64{int64(len("hello\n" + realDir + "\n")), 5}; e.Written == nil || *e.Written != want {
		t.Errorf("exit says %v bytes written, want %v", e.Written, want)
	}

	// Nothing written: no files, and the exit says so.
	quiet := sh("quiet", dir, "true")
	quiet.Stdout, quiet.Stderr = filepath.Join(dir, "out2"), filepath.Join(dir, "err2")
	mustSpawn(t, c, quiet)
	if e := waitExit(t, c, "quiet"); e.Written == nil || *e.Written != [2]int64{} {
		t.Errorf("a quiet task's exit says %v bytes written, want 0 and 0", e.Written)
	}
	for _, p := range []string{quiet.Stdout, quiet.Stderr} {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s of a quiet task: %v, want no file", filepath.Base(p), err)
		}
	}
}

func TestResourceUsage(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	mustSpawn(t, c, SpawnRequest{ID: "usage", Argv: []string{exe, "_usage"}})
	e := waitExit(t, c, "usage")
	if e.ExitCode != 0 {
		t.Fatalf("exit = %+v", e)
	}
	if e.MaxRSS < 40<<20 {
		t.Errorf("MaxRSS = %d, want over 40 MiB", e.MaxRSS)
	}
	if e.UserCPU < 100*time.Millisecond || e.UserCPU+e.SysCPU > e.EndedAt.Sub(e.StartedAt)*4 {
		t.Errorf("user CPU %v, system CPU %v over %v", e.UserCPU, e.SysCPU, e.EndedAt.Sub(e.StartedAt))
	}
}

func TestWallClock(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	tests := []struct {
		name   string
		script string
		grace  time.Duration
		code   int
		signal int
	}{
		// The shell and its background child both get SIGTERM.
		{name: "kills the process group", script: "sleep 300 & echo $! > bg; sleep 300", grace: time.Minute, code: -1, signal: 15},
		{name: "clean exit within grace", script: "trap 'exit 7' TERM; echo $$ > bg; sleep 300 & wait", grace: time.Minute, code: 7},
		{name: "SIGKILL after grace", script: "trap '' TERM; echo $$ > bg; exec sleep 300", grace: 100 * time.Millisecond, code: -1, signal: 9},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			id := fmt.Sprint("wall", i)
			req := sh(id, dir, tt.script)
			req.MaxWallClock, req.Grace = time.Second, tt.grace
			mustSpawn(t, c, req)
			e := waitExit(t, c, id)
			if !e.TimedOut || e.Killed || e.ExitCode != tt.code || e.Signal != tt.signal {
				t.Errorf("exit = %+v, want timed out with code %d, signal %d", e, tt.code, tt.signal)
			}
			if took := e.EndedAt.Sub(e.StartedAt); took > 30*time.Second {
				t.Errorf("took %v", took)
			}
			waitGone(t, e.PID)
			waitGone(t, atoi(t, waitFile(t, filepath.Join(dir, "bg"))))
		})
	}
}

func TestKill(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	mustSpawn(t, c, SpawnRequest{ID: "polite", Argv: []string{"/bin/sleep", "300"}})
	mustSpawn(t, c, sh("stubborn", f.dir, "trap '' TERM; exec sleep 300"))
	if err := c.Kill("unknown", 0); err != nil {
		t.Fatal(err)
	}
	if running := mustList(t, c); len(running) != 2 || running["polite"].PID == 0 || running["stubborn"].PID == 0 {
		t.Fatalf("running = %v, want polite and stubborn", running)
	}

	if err := c.Kill("polite", time.Minute); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, c, "polite"); !e.Killed || e.Signal != 15 || e.TimedOut {
		t.Errorf("exit = %+v, want killed by SIGTERM", e)
	}
	if err := c.Kill("stubborn", 0); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, c, "stubborn"); !e.Killed || e.Signal != 9 {
		t.Errorf("exit = %+v, want killed by SIGKILL", e)
	}
	if running := mustList(t, c); len(running) != 0 {
		t.Errorf("running = %v, want none", running)
	}
}

// TestReconnect checks that an exit that happens with no client is delivered
// to every new client until one acknowledges it.
func TestReconnect(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	fifo := filepath.Join(f.dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}

	c1 := f.dial(t)
	mustSpawn(t, c1, sh("waiter", f.dir, "read line < "+fifo))
	mustSpawn(t, c1, SpawnRequest{ID: "sleeper", Argv: []string{"/bin/sleep", "300"}})
	running := mustList(t, c1)
	if _, ok := running["waiter"]; !ok {
		t.Fatalf("running = %v, want waiter", running)
	}
	c1.Close()
	// Opening blocks until the task reads, so it finishes with nobody connected.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("go\n")
	w.Close()

	c2 := f.dial(t)
	if e := waitExit(t, c2, "waiter"); e.ExitCode != 0 {
		t.Fatalf("exit = %+v", e)
	}
	if adopted := mustList(t, c2); len(adopted) != 1 || adopted["sleeper"] != running["sleeper"] {
		t.Errorf("running = %v, want sleeper as before: %v", adopted, running["sleeper"])
	}
	c3 := f.dial(t)
	for range c2.Exits() { // the spawner dropped c2 for c3
	}
	waitExit(t, c3, "waiter")
	if err := c3.Ack("waiter"); err != nil {
		t.Fatal(err)
	}
	mustList(t, c3) // the ack has been handled

	c4 := f.dial(t)
	mustSpawn(t, c4, sh("marker", f.dir, "exit 0"))
	if e := <-c4.Exits(); e.ID != "marker" {
		t.Errorf("first exit after ack = %q, want marker", e.ID)
	}
	c4.Kill("sleeper", 0)
	waitExit(t, c4, "sleeper")
}

func TestCredential(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change user")
	}
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	out := filepath.Join(f.dir, "out")
	mustSpawn(t, c, SpawnRequest{
		ID: "nobody", Argv: []string{"/bin/sh", "-c", "id -u; id -g"}, Env: []string{"PATH=/usr/bin:/bin"}, Dir: "/",
		Stdout: out, Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
	})
	if e := waitExit(t, c, "nobody"); e.ExitCode != 0 {
		t.Fatalf("exit = %+v", e)
	}
	if got, _ := os.ReadFile(out); string(got) != "65534\n65534\n" {
		t.Errorf("ids = %q, want 65534 twice", got)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(out, &st); err != nil || st.Uid != 65534 {
		t.Errorf("stdout owner = %d (%v), want 65534", st.Uid, err)
	}
}

// TestDuplicateSpawn checks that a spawn of a running ID is ignored: the
// running task's exit answers it.
func TestDuplicateSpawn(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	mustSpawn(t, c, SpawnRequest{ID: "dup", Argv: []string{"/bin/sleep", "300"}})
	first := mustList(t, c)["dup"]
	mustSpawn(t, c, sh("dup", f.dir, "exit 0"))
	if again := mustList(t, c); len(again) != 1 || again["dup"] != first {
		t.Fatalf("running = %v, want only %v", again, first)
	}
	c.Kill("dup", 0)
	if e := waitExit(t, c, "dup"); e.PID != first.PID || e.Signal != 9 {
		t.Errorf("exit = %+v, want the first task's", e)
	}
	mustSpawn(t, c, sh("marker", f.dir, "exit 0"))
	if e := waitExit(t, c, "marker"); e.ExitCode != 0 {
		t.Errorf("exit = %+v", e)
	}
}

// TestCrashRecovery kills a spawner process and checks that its successor
// kills the orphaned task's process group and reports it lost.
func TestCrashRecovery(t *testing.T) {
	f := newFixture(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ensure := func() *Client {
		t.Helper()
		c, err := Ensure(context.Background(), f.sock, exe, "_spawner", "--socket", f.sock, "--state", f.state)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	spawnerPID := func() int {
		t.Helper()
		return atoi(t, waitFile(t, filepath.Join(f.state, "spawner.lock")))
	}
	t.Cleanup(func() {
		if t.Failed() {
			log, _ := os.ReadFile(f.sock + ".log")
			t.Logf("spawner log:\n%s", log)
		}
	})

	c := ensure()
	crashed := spawnerPID()
	mustSpawn(t, c, sh("orphan", f.dir, "sleep 300 & echo $! > bg; exec sleep 301"))
	task := mustList(t, c)["orphan"]
	bg := atoi(t, waitFile(t, filepath.Join(f.dir, "bg")))
	if err := syscall.Kill(crashed, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for range c.Exits() {
	}
	waitGone(t, crashed)

	c = ensure()
	successor := spawnerPID()
	t.Cleanup(func() {
		syscall.Kill(successor, syscall.SIGTERM)
		waitGone(t, successor)
	})
	if successor == crashed {
		t.Fatalf("no new spawner")
	}
	e := waitExit(t, c, "orphan")
	if !e.Lost || e.PID != task.PID || e.ExitCode != -1 || e.Signal != 9 {
		t.Errorf("exit = %+v, want lost to SIGKILL", e)
	}
	waitGone(t, task.PID)
	waitGone(t, bg)
	if err := c.Ack("orphan"); err != nil {
		t.Fatal(err)
	}
	if running := mustList(t, c); len(running) != 0 {
		t.Errorf("running = %v, want none", running)
	}
}

// TestRecover checks how a spawner treats the journal of a previous one,
// without a crash: the "orphans" are sleeps this test starts.
func TestRecover(t *testing.T) {
	f := newFixture(t)
	orphan := func() int {
		pid, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "300"}, &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Setpgid: true}})
		if err != nil {
			t.Fatal(err)
		}
		// The spawner reaps it, as it reaps any child of its process.
		t.Cleanup(func() { syscall.Kill(-pid, syscall.SIGKILL) })
		return pid
	}
	pids := []int{orphan(), orphan(), orphan(), orphan()}
	boot, now := bootID(), bootTicks()
	tests := []struct {
		rec    record
		lost   bool
		signal int
		killed bool
	}{
		{rec: record{ID: "running", Boot: boot, StartedBy: now}, lost: true, signal: 9, killed: true},
		{rec: record{ID: "pid reused", Boot: boot, StartedBy: 1}, lost: true},
		{rec: record{ID: "earlier boot", Boot: "earlier", StartedBy: now}, lost: true},
		{rec: record{ID: "exited", Boot: boot, StartedBy: now, Exit: &Exit{ID: "exited", ExitCode: 4}}},
	}
	recs := make([]*record, len(tests))
	for i := range tests {
		rec := &tests[i].rec
		rec.PID, rec.PGID = pids[i], pids[i]
		recs[i] = rec
	}
	if err := os.Mkdir(f.state, 0o700); err != nil {
		t.Fatal(err)
	}
	j, err := createJournal(f.state, recs)
	if err != nil {
		t.Fatal(err)
	}
	j.close()

	f.serve(t, ServeConfig{})
	c := f.dial(t)
	exits := make(map[string]Exit)
	for len(exits) < len(tests) {
		e := waitExit(t, c, "")
		exits[e.ID] = e
	}
	for _, tt := range tests {
		e := exits[tt.rec.ID]
		if e.Lost != tt.lost || e.Signal != tt.signal {
			t.Errorf("%s: exit = %+v, want lost %v, signal %d", tt.rec.ID, e, tt.lost, tt.signal)
		}
		if tt.killed {
			waitGone(t, tt.rec.PID)
		} else if !alive(tt.rec.PID, now) {
			t.Errorf("%s: process %d was killed", tt.rec.ID, tt.rec.PID)
		}
	}
}

func TestLinger(t *testing.T) {
	f := newFixture(t)
	s := f.serve(t, ServeConfig{Linger: time.Second}) // long enough to connect first
	c := f.dial(t)
	mustSpawn(t, c, sh("quick", f.dir, "exit 0"))
	waitExit(t, c, "quick")
	c.Ack("quick")
	mustList(t, c)
	c.Close()
	if err := s.wait(t); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.sock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket left behind: %v", err)
	}
	if recs, err := readJournal(f.state); err != nil || len(recs) != 0 {
		t.Errorf("journal holds %v, %v; want nothing", recs, err)
	}
}

// TestOrphaned checks that with no client the spawner stops its tasks and
// exits, and that the next spawner delivers their exits.
func TestOrphaned(t *testing.T) {
	f := newFixture(t)
	s := f.serve(t, ServeConfig{Orphaned: time.Second, Linger: time.Hour}) // long enough to connect first
	c := f.dial(t)
	req := SpawnRequest{ID: "abandoned", Argv: []string{"/bin/sleep", "300"}, Grace: time.Minute}
	mustSpawn(t, c, req)
	task := mustList(t, c)["abandoned"]
	c.Close()
	if err := s.wait(t); err != nil {
		t.Fatal(err)
	}
	waitGone(t, task.PID)

	f.serve(t, ServeConfig{})
	c = f.dial(t)
	if e := waitExit(t, c, "abandoned"); !e.Lost || e.Signal != 15 || e.PID != task.PID {
		t.Errorf("exit = %+v, want lost to SIGTERM", e)
	}
}

func TestIdle(t *testing.T) {
	cfg := ServeConfig{Orphaned: time.Minute, Linger: time.Second}
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name    string
		client  bool
		task    bool
		unacked bool
		after   time.Duration
		wait    time.Duration
		exit    bool
	}{
		{name: "client attached", client: true, after: time.Hour, wait: time.Hour},
		{name: "lingering", after: 300 * time.Millisecond, wait: 700 * time.Millisecond},
		{name: "lingered", after: time.Second, exit: true},
		{name: "task running", task: true, after: time.Second, wait: 59 * time.Second},
		{name: "exit unacknowledged", unacked: true, after: time.Second, wait: 59 * time.Second},
		{name: "orphaned", task: true, after: time.Minute, exit: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(cfg, -1)
			s.detachedAt, s.quietSince = t0, t0
			if tt.client {
				s.client = &conn{}
			}
			if tt.task {
				s.tasks["t"] = &task{}
			}
			if tt.unacked {
				s.unacked["t"] = pendingExit{}
			}
			wait, why := s.idle(t0.Add(tt.after))
			if (why != "") != tt.exit || (!tt.exit && wait != tt.wait) {
				t.Errorf("idle = %v, %q; want wait %v, exit %v", wait, why, tt.wait, tt.exit)
			}
		})
	}
}

func TestOneSpawnerPerSocketAndStateDir(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	f.dial(t) // it listens
	fi, err := os.Stat(f.sock)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode = %v, want 0600", perm)
	}
	ctx := context.Background()
	if err := Serve(ctx, ServeConfig{SocketPath: f.sock, StateDir: filepath.Join(f.dir, "other")}); !errors.Is(err, ErrBusy) {
		t.Errorf("second spawner on the socket: %v, want ErrBusy", err)
	}
	if err := Serve(ctx, ServeConfig{SocketPath: filepath.Join(f.dir, "other.sock"), StateDir: f.state}); !errors.Is(err, ErrBusy) {
		t.Errorf("second spawner on the state dir: %v, want ErrBusy", err)
	}
}

// TestBadFrames checks that malformed requests are dropped without harm.
func TestBadFrames(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	f.dial(t).Close() // it listens
	nc, err := net.Dial("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(waitTimeout))
	fmt.Fprint(nc, `{"hello":1}`+"\n", "garbage\n", "{}\n",
		`{"spawn":{"ID":"","Argv":["/bin/true"]}}`+"\n",
		`{"kill":{"ID":"nobody"}}`+"\n",
		`{"spawn":{"ID":"ok","Argv":["/bin/true"]}}`+"\n")
	sc := newFrameScanner(nc)
	var got []string
	for len(got) < 2 && sc.Scan() {
		got = append(got, sc.Text())
	}
	var exit frame
	if len(got) < 2 || got[0] != `{"hello":1,"features":["after","base","exited"]}` || json.Unmarshal([]byte(got[1]), &exit) != nil || exit.Exit == nil || exit.Exit.ID != "ok" {
		t.Errorf("frames = %q (%v), want hello and the exit of ok", got, sc.Err())
	}

	c := f.dial(t)
	if err := c.Spawn(SpawnRequest{Argv: []string{"/bin/true"}}); err == nil {
		t.Error("spawn without an id succeeded")
	}
}

// exitsUntil collects exits until every one of ids has come.
func exitsUntil(t *testing.T, c *Client, ids ...string) map[string]Exit {
	t.Helper()
	got := map[string]Exit{}
	timeout := time.After(waitTimeout)
	for {
		missing := false
		for _, id := range ids {
			if _, ok := got[id]; !ok {
				missing = true
			}
		}
		if !missing {
			return got
		}
		select {
		case e, ok := <-c.Exits():
			if !ok {
				t.Fatalf("exits closed; have %v, want %v", got, ids)
			}
			got[e.ID] = e
		case <-timeout:
			t.Fatalf("exits %v, want %v", got, ids)
		}
	}
}

// TestAfter checks that a spawn waiting on a running task starts when that
// task is reaped and is named in its exit, and that one which cannot wait
// is dropped without an exit.
func TestAfter(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	if !c.Chains() {
		t.Fatal("Chains() = false")
	}
	fifo := filepath.Join(f.dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	mustSpawn(t, c, sh("first", f.dir, "read line < "+fifo))
	next := sh("next", f.dir, "exit 3")
	next.After = "first"
	mustSpawn(t, c, next)
	second := sh("second", f.dir, "exit 0")
	second.After = "first" // first already has a follower
	mustSpawn(t, c, second)
	third := sh("third", f.dir, "exit 4")
	third.After = "next" // a chain
	mustSpawn(t, c, third)
	orphan := sh("orphan", f.dir, "exit 0")
	orphan.After = "unknown"
	mustSpawn(t, c, orphan)
	if running := mustList(t, c); len(running) != 1 || running["first"].PID == 0 {
		t.Fatalf("running = %v, want only first", running)
	}
	mustSpawn(t, c, next) // a duplicate of a waiting spawn is ignored

	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.WriteString("go\n")
	w.Close()
	got := exitsUntil(t, c, "first", "next", "third")
	if e := got["first"]; e.ExitCode != 0 || e.Next != "next" {
		t.Errorf("first's exit = %+v, want exit 0 with Next next", e)
	}
	if e := got["next"]; e.ExitCode != 3 || e.PID == 0 || e.StartedAt.Before(got["first"].EndedAt) || e.Next != "third" {
		t.Errorf("next's exit = %+v, want exit 3, started after first ended (%v), Next third", e, got["first"].EndedAt)
	}
	if e := got["third"]; e.ExitCode != 4 || e.StartedAt.Before(got["next"].EndedAt) {
		t.Errorf("third's exit = %+v, want exit 4, started after next ended (%v)", e, got["next"].EndedAt)
	}

	// Killing a waiting spawn drops it with a killed exit; its predecessor
	// then ends with no Next.
	mustSpawn(t, c, SpawnRequest{ID: "sleeper", Argv: []string{"/bin/sleep", "300"}})
	waiter := sh("waiter", f.dir, "exit 0")
	waiter.After = "sleeper"
	mustSpawn(t, c, waiter)
	behind := sh("behind", f.dir, "exit 0")
	behind.After = "waiter"
	mustSpawn(t, c, behind)
	c.Kill("waiter", time.Minute)
	if e := waitExit(t, c, "waiter"); !e.Killed || e.PID != 0 || !e.StartedAt.IsZero() || e.ExitCode != -1 {
		t.Errorf("waiter's exit = %+v, want killed before it started", e)
	}
	c.Kill("sleeper", 0)
	if e := waitExit(t, c, "sleeper"); e.Next != "" {
		t.Errorf("sleeper's exit = %+v, want no Next", e)
	}

	// A client that goes takes its waiting spawns with it.
	mustSpawn(t, c, SpawnRequest{ID: "held", Argv: []string{"/bin/sleep", "300"}})
	dropped := sh("dropped", f.dir, "exit 0")
	dropped.After = "held"
	mustSpawn(t, c, dropped)
	mustList(t, c) // both handled
	c.Close()
	c2 := f.dial(t)
	c2.Kill("held", 0)
	mustSpawn(t, c2, sh("marker", f.dir, "exit 0"))
	got = exitsUntil(t, c2, "held", "marker")
	if e := got["held"]; e.Next != "" || e.Signal != 9 {
		t.Errorf("held's exit = %+v, want killed with no Next", e)
	}
	for _, id := range []string{"second", "orphan", "dropped", "behind"} {
		if e, ok := got[id]; ok {
			t.Errorf("exit of dropped spawn %q: %+v", id, e)
		}
	}
	if running := mustList(t, c2); len(running) != 0 {
		t.Errorf("running = %v, want none", running)
	}
}

// TestBase checks that a spawn with Base runs with the connection's base
// environment plus its own variables, each name once.
func TestBase(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	if err := c.SetBase([]string{"PATH=/usr/bin:/bin", "SHARED=base", "KEPT=yes"}); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(f.dir, "env")
	mustSpawn(t, c, SpawnRequest{ID: "env", Argv: []string{"env"}, Env: []string{"SHARED=task", "OWN=1"}, Base: true, Dir: f.dir, Stdout: out})
	if e := waitExit(t, c, "env"); e.ExitCode != 0 {
		t.Fatalf("exit = %+v", e)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(b))
	slices.Sort(got)
	if want := []string{"KEPT=yes", "OWN=1", "PATH=/usr/bin:/bin", "SHARED=task"}; !slices.Equal(got, want) {
		t.Errorf("environment = %q, want %q", got, want)
	}
}

// TestOlderSpawner checks what a client does for a spawner whose hello
// names no features (one started by an older agent): it sends the full
// environment in each spawn, and does not chain.
func TestOlderSpawner(t *testing.T) {
	f := newFixture(t)
	ln, err := net.Listen("unix", f.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	frames := make(chan string, 10)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		sc := newFrameScanner(nc)
		if !sc.Scan() {
			return
		}
		fmt.Fprintln(nc, `{"hello":1}`)
		for sc.Scan() {
			frames <- sc.Text()
		}
	}()
	c := f.dial(t)
	if c.Chains() {
		t.Error("Chains() = true for a spawner without the feature")
	}
	if err := c.SetBase([]string{"A=1", "PATH=/bin"}); err != nil {
		t.Fatal(err)
	}
	mustSpawn(t, c, SpawnRequest{ID: "x", Argv: []string{"true"}, Env: []string{"A=2"}, Base: true})
	var fr frame
	select {
	case line := <-frames:
		if err := json.Unmarshal([]byte(line), &fr); err != nil || fr.Spawn == nil {
			t.Fatalf("first frame after hello = %s, want the spawn", line)
		}
	case <-time.After(waitTimeout):
		t.Fatal("no frame")
	}
	if fr.Spawn.Base || !slices.Equal(fr.Spawn.Env, []string{"A=2", "PATH=/bin"}) {
		t.Errorf("spawn = Base %v, Env %q; want the full environment", fr.Spawn.Base, fr.Spawn.Env)
	}
}

// TestState checks that State names the exits awaiting acknowledgement
// beside the running tasks.
func TestState(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	mustSpawn(t, c, sh("done", f.dir, "exit 0"))
	waitExit(t, c, "done")
	mustSpawn(t, c, SpawnRequest{ID: "sleeper", Argv: []string{"/bin/sleep", "300"}})
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	running, exited, err := c.State(ctx)
	if err != nil || len(running) != 1 || running[0].ID != "sleeper" || !slices.Equal(exited, []string{"done"}) {
		t.Fatalf("State = %v, %q, %v; want sleeper running and done's exit held", running, exited, err)
	}
	c.Ack("done")
	c.Kill("sleeper", 0)
	waitExit(t, c, "sleeper")
	c.Ack("sleeper")
	if running, exited, err = c.State(ctx); err != nil || len(running) != 0 || exited == nil || len(exited) != 0 {
		t.Errorf("State after acks = %v, %q, %v; want nothing, and an empty (not nil) list of exits", running, exited, err)
	}
}
