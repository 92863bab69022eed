package provider

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeAgent is a stand-in for `lote agent`: it records its arguments and
// join token in its --dir and holds --dir/agent.lock with its pid in it, as
// the agent does. With $FAKE_AGENT_STUBBORN set it ignores SIGTERM; with
// $FAKE_AGENT_FAIL it exits at once.
const fakeAgent = `#!/bin/sh
args="$*"
while [ $# -gt 0 ]; do
	case $1 in --dir) dir=$2; shift ;; esac
	shift
done
if [ -n "$FAKE_AGENT_FAIL" ]; then echo "agent: cannot join" >&2; exit 1; fi
echo "$args" > "$dir/args"
echo "$LOTE_JOIN_TOKEN" > "$dir/token"
exec 9>>"$dir/agent.lock"
flock -n 9 || exit 1
echo $$ > "$dir/agent.lock"
if [ -n "$FAKE_AGENT_STUBBORN" ]; then trap '' TERM; else trap 'exit 0' TERM; fi
while :; do sleep 0.05 9>&-; done
`

func newLocal(t *testing.T, stop time.Duration) *Local {
	t.Helper()
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("the fake agent needs flock(1)")
	}
	dir := t.TempDir()
	exe := filepath.Join(dir, "lote")
	if err := os.WriteFile(exe, []byte(fakeAgent), 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := NewLocal(LocalConfig{Exe: exe, DataDir: filepath.Join(dir, "data"), Slots: 3,
		AdoptTimeout: 7 * time.Second, StopTimeout: stop, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Stop every fake agent left, whatever its pool.
		quick := *l
		quick.cfg.StopTimeout = 100 * time.Millisecond
		ents, _ := os.ReadDir(filepath.Join(quick.cfg.DataDir, "nodes"))
		for _, e := range ents {
			pool, _ := readPool(quick.nodeDir(e.Name()))
			if err := quick.Delete(context.Background(), pool, []string{e.Name()}); err != nil {
				t.Error(err)
			}
		}
	})
	return l
}

func (l *Local) pid(t *testing.T, id string) int {
	t.Helper()
	pid, err := readPID(filepath.Join(l.nodeDir(id), agentLock))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func awaitDead(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLocalLifecycle: Create starts one agent per node with the pool's
// settings, and adopts rather than duplicates a running one; Status reports
// the pool's nodes alone, running or failed; Delete stops the agent and
// removes its directory, and ignores unknown IDs.
func TestLocalLifecycle(t *testing.T) {
	l := newLocal(t, 0)
	ctx := context.Background()
	ms, err := l.Create(ctx, CreateRequest{Pool: "A", Nodes: nodes("a1", "a2"), JoinToken: "secret", Server: "https://ignored"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Machine{{ID: "a1", State: "running"}, {ID: "a2", State: "running"}}
	if !reflect.DeepEqual(ms, want) {
		t.Fatalf("create = %+v, want %+v", ms, want)
	}
	args, _ := os.ReadFile(filepath.Join(l.nodeDir("a1"), "args"))
	wantArgs := "agent --server-file " + filepath.Join(l.cfg.DataDir, "client.json") + " --pool A --dir " +
		l.nodeDir("a1") + " --name a1 --slots 3 --adopt-timeout 7s"
	if got := strings.TrimSpace(string(args)); got != wantArgs {
		t.Errorf("agent args\n %s\nwant\n %s", got, wantArgs)
	}
	if tok, _ := os.ReadFile(filepath.Join(l.nodeDir("a1"), "token")); string(tok) != "secret\n" {
		t.Errorf("agent's LOTE_JOIN_TOKEN = %q", tok)
	}

	pid := l.pid(t, "a1")
	ms, err = l.Create(ctx, CreateRequest{Pool: "A", Nodes: nodes("a1"), Slots: 5})
	if err != nil || len(ms) != 1 || ms[0].State != StateRunning {
		t.Fatalf("create of a running node = %+v, %v", ms, err)
	}
	if l.pid(t, "a1") != pid {
		t.Error("a second agent was started on a1")
	}

	ms, err = l.Create(ctx, CreateRequest{Pool: "B", Nodes: nodes("b1", "a2", "../x")})
	if err != nil {
		t.Fatal(err)
	}
	if ms[0].State != StateRunning || ms[1].State != StateFailed || !strings.Contains(ms[1].Error, "belongs to pool A") ||
		ms[2].State != StateFailed || !strings.Contains(ms[2].Error, "invalid node ID") {
		t.Errorf("create in B = %+v", ms)
	}

	syscall.Kill(l.pid(t, "a2"), syscall.SIGKILL)
	awaitDead(t, l.pid(t, "a2"))
	ms, err = l.Status(ctx, "A")
	want = []Machine{{ID: "a1", State: "running"}, {ID: "a2", State: "failed", Error: "agent is not running"}}
	if err != nil || !reflect.DeepEqual(ms, want) {
		t.Errorf("status A = %+v, %v; want %+v", ms, err, want)
	}

	if err := l.Delete(ctx, "B", []string{"a1"}); err == nil || !strings.Contains(err.Error(), "belongs to pool A") {
		t.Errorf("delete of A's node from pool B: %v", err)
	}
	if err := l.Delete(ctx, "A", []string{"a1", "a2", "never"}); err != nil {
		t.Fatal(err)
	}
	awaitDead(t, pid)
	for _, id := range []string{"a1", "a2"} {
		if _, err := os.Stat(l.nodeDir(id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("node dir %s: %v", id, err)
		}
	}
	if ms, err := l.Status(ctx, "A"); err != nil || len(ms) != 0 {
		t.Errorf("status A after delete = %+v, %v", ms, err)
	}
	if ms, err := l.Status(ctx, "B"); err != nil || len(ms) != 1 || ms[0].ID != "b1" {
		t.Errorf("status B = %+v, %v", ms, err)
	}
}

// TestLocalAgentExits: an agent that exits at once makes a failed machine
// whose error is the last line of its log.
func TestLocalAgentExits(t *testing.T) {
	l := newLocal(t, 0)
	t.Setenv("FAKE_AGENT_FAIL", "1")
	ms, err := l.Create(context.Background(), CreateRequest{Pool: "A", Nodes: nodes("a1")})
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 1 || ms[0].State != StateFailed || ms[0].Error != "agent exited: agent: cannot join" {
		t.Errorf("create = %+v", ms)
	}
}

// TestLocalDeleteKillsStubbornAgent: an agent that ignores SIGTERM is
// SIGKILLed after StopTimeout.
func TestLocalDeleteKillsStubbornAgent(t *testing.T) {
	l := newLocal(t, 300*time.Millisecond)
	t.Setenv("FAKE_AGENT_STUBBORN", "1")
	ctx := context.Background()
	if ms, err := l.Create(ctx, CreateRequest{Pool: "A", Nodes: nodes("a1")}); err != nil || ms[0].State != StateRunning {
		t.Fatalf("create = %+v, %v", ms, err)
	}
	pid := l.pid(t, "a1")
	start := time.Now()
	if err := l.Delete(ctx, "A", []string{"a1"}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("delete took %v: it did not give SIGTERM its time", d)
	}
	awaitDead(t, pid)
}

func TestNew(t *testing.T) {
	for kind, want := range map[string]string{"": "provider.Static", "static": "provider.Static",
		"exec": "*provider.Exec", "local": "*provider.Local"} {
		p, err := New(kind, Config{Exec: ExecConfig{Command: "/bin/true"}, Local: LocalConfig{Exe: "lote", DataDir: "/d"}})
		if err != nil {
			t.Errorf("New(%q): %v", kind, err)
			continue
		}
		if got := reflect.TypeOf(p).String(); got != want {
			t.Errorf("New(%q) is a %s, want %s", kind, got, want)
		}
	}
	if _, err := New("slurm", Config{}); err == nil {
		t.Error("New(slurm): no error")
	}
	if _, err := New("exec", Config{}); err == nil {
		t.Error("New(exec) without a command: no error")
	}
	ctx := context.Background()
	_, err := Static{}.Create(ctx, CreateRequest{Pool: "S", Nodes: nodes("n1")})
	if !errors.Is(err, ErrNotSupported) || !strings.Contains(err.Error(), "pool S") {
		t.Errorf("static create: %v", err)
	}
	if err := (Static{}).Delete(ctx, "S", []string{"n1"}); !errors.Is(err, ErrNotSupported) {
		t.Errorf("static delete: %v", err)
	}
	if ms, err := (Static{}).Status(ctx, "S"); ms != nil || err != nil {
		t.Errorf("static status = %v, %v", ms, err)
	}
}
