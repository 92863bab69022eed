// Package testenv runs Lote in-process for tests: a real server on a loopback
// port with its SQLite store in a temporary directory, an admin client, and,
// where tasks must run, in-process agents whose spawners are a lote binary
// built once per test process. Everything a test starts is stopped in its
// cleanup.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/agent"
	"github.com/lotehq/lote/internal/server"
)

// Env is a running in-process server and a client holding its admin token.
type Env struct {
	t      testing.TB
	Dir    string
	Server *server.Server
	Client *api.Client
}

// Start starts a server in a fresh temporary directory, listening on
// 127.0.0.1:0. It is closed in t's cleanup.
func Start(t testing.TB) *Env {
	t.Helper()
	return StartWith(t, server.Config{})
}

// StartWith is Start with cfg's settings; its directory, address, logger
// and (when zero) heartbeat timeout are the test's.
func StartWith(t testing.TB, cfg server.Config) *Env {
	t.Helper()
	dir := t.TempDir()
	cfg.Dir, cfg.Listen, cfg.Logger = dir, "127.0.0.1:0", quietLogger(t)
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = 5 * time.Second
	}
	srv, err := server.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting server: %v", err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("closing server: %v", err)
		}
	})
	cl, err := api.NewClient(srv.URL(), srv.AdminToken(), srv.CAFile())
	if err != nil {
		t.Fatal(err)
	}
	return &Env{t: t, Dir: dir, Server: srv, Client: cl}
}

// quietLogger logs to the test's log only when the test fails.
func quietLogger(t testing.TB) *slog.Logger {
	var mu sync.Mutex
	var buf bytes.Buffer
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if t.Failed() && buf.Len() > 0 {
			t.Logf("log:\n%s", tail(buf.String(), 8000))
		}
	})
	return slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// AgentConfig adjusts an in-process agent.
type AgentConfig struct {
	Name   string // node ID to ask for; default the pool ID + "-agent"
	Slots  int    // default 2
	Labels map[string]string
	Dir    string // the node directory; default a new temporary one
}

// Agent runs an in-process agent that joins pool (which must exist) with
// its join token, and waits until the node is connected. It stops, with
// its spawner and tasks, in t's cleanup.
func (e *Env) Agent(pool string, cfg AgentConfig) string {
	t := e.t
	t.Helper()
	ctx := context.Background()
	p, err := e.Client.Pool(ctx, pool, true)
	if err != nil {
		t.Fatalf("agent: pool %s: %v", pool, err)
	}
	if cfg.Name == "" {
		cfg.Name = pool + "-agent"
	}
	if cfg.Slots == 0 {
		cfg.Slots = 2
	}
	dir := cfg.Dir
	if dir == "" {
		dir = filepath.Join(t.TempDir(), cfg.Name)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(runCtx, agent.Config{
			Server: e.Server.URL(), CAFile: e.Server.CAFile(), Pool: pool, JoinToken: p.JoinToken, Dir: dir,
			Name: cfg.Name, Slots: cfg.Slots, Labels: cfg.Labels, Exe: Binary(t),
			OrphanTimeout: time.Minute, AdoptTimeout: 2 * time.Second, Logger: quietLogger(t),
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Logf("agent %s: %v", cfg.Name, err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("agent %s did not stop", cfg.Name)
		}
		killMentioning(dir)
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := e.Client.Node(ctx, cfg.Name)
		if err == nil && n.Connected {
			return n.ID
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s did not connect: node %+v, %v", cfg.Name, n, err)
		}
		select {
		case err := <-done:
			t.Fatalf("agent %s stopped: %v", cfg.Name, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

var bin struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// Binary returns a lote binary built once per test process (agents need it
// to start their spawner). Main removes it when the tests end.
func Binary(t testing.TB) string {
	t.Helper()
	bin.once.Do(func() {
		bin.dir, bin.err = os.MkdirTemp("", "lote-testenv-")
		if bin.err != nil {
			return
		}
		bin.path = filepath.Join(bin.dir, "lote")
		out, err := exec.Command("go", "build", "-o", bin.path, "github.com/lotehq/lote/cmd/lote").CombinedOutput()
		if err != nil {
			bin.err = fmt.Errorf("building lote: %v\n%s", err, out)
		}
	})
	if bin.err != nil {
		t.Fatal(bin.err)
	}
	return bin.path
}

// Main runs a package's tests and removes what they left behind (the built
// binary). Call it from TestMain: os.Exit(testenv.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if bin.dir != "" {
		os.RemoveAll(bin.dir)
	}
	return code
}

// killMentioning SIGKILLs every process whose command line names dir (an
// agent's spawner and, through its process group, its tasks).
func killMentioning(dir string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(cmdline), dir+"/") {
			continue
		}
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
