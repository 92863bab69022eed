package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// TestLocalRealAgents runs the real binary: a `lote server`, and two nodes
// the Local provider starts with the pool's join token. Both join; Delete
// stops them (the server sees them go) and removes their directories.
func TestLocalRealAgents(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the lote binary")
	}
	tmp := t.TempDir()
	exe := filepath.Join(tmp, "lote")
	build := exec.Command("go", "build", "-o", exe, "./cmd/lote")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building lote: %v\n%s", err, out)
	}
	data := filepath.Join(tmp, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LOTE_") {
			env = append(env, kv)
		}
	}
	env = append(env, "LOTE_HOME="+data)
	srvLog, err := os.Create(filepath.Join(tmp, "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer srvLog.Close()
	srv := exec.Command(exe, "server", "--dir", data, "--listen", "127.0.0.1:0")
	srv.Env, srv.Stdout, srv.Stderr = env, srvLog, srvLog
	srv.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { srv.Wait(); close(exited) }()
	l, err := NewLocal(LocalConfig{Exe: exe, DataDir: data, Slots: 1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		l.Delete(context.Background(), "P", []string{"p1", "p2"})
		syscall.Kill(-srv.Process.Pid, syscall.SIGKILL)
		<-exited
		if t.Failed() {
			for _, f := range []string{"server.log", "data/nodes/p1/agent.log", "data/nodes/p2/agent.log"} {
				b, _ := os.ReadFile(filepath.Join(tmp, f))
				t.Logf("--- %s ---\n%s", f, b)
			}
		}
	})
	lote := func(v any, args ...string) error {
		cmd := exec.Command(exe, append([]string{"-o", "json"}, args...)...)
		cmd.Env = env
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("lote %s: %w: %s", strings.Join(args, " "), err, out)
		}
		return json.Unmarshal(out, v)
	}
	connected := func(want int) {
		t.Helper()
		var last error
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var out struct{ Nodes []api.Node }
			if last = lote(&out, "pool", "nodes", "P"); last != nil {
				continue
			}
			n := 0
			for _, nd := range out.Nodes {
				if nd.Connected {
					n++
				}
			}
			if n == want {
				return
			}
			last = fmt.Errorf("%d nodes connected: %+v", n, out.Nodes)
		}
		t.Fatalf("waiting for %d connected nodes: %v", want, last)
	}

	var pool api.Pool
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if err = lote(&pool, "pool", "create", "P", "--slots", "1"); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	ms, err := l.Create(context.Background(), CreateRequest{Pool: "P", Nodes: nodes("p1", "p2"), JoinToken: pool.JoinToken})
	if err != nil || len(ms) != 2 || ms[0].State != StateRunning || ms[1].State != StateRunning {
		t.Fatalf("create = %+v, %v", ms, err)
	}
	connected(2)
	pid := l.pid(t, "p1")
	if err := l.Delete(context.Background(), "P", []string{"p1"}); err != nil {
		t.Fatal(err)
	}
	awaitDead(t, pid)
	if _, err := os.Stat(l.nodeDir("p1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("p1's directory: %v", err)
	}
	connected(1)
	ms, err = l.Status(context.Background(), "P")
	if err != nil || len(ms) != 1 || ms[0].ID != "p2" || ms[0].State != StateRunning {
		t.Errorf("status = %+v, %v", ms, err)
	}
}
