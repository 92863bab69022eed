// Package up runs Lote on one machine: the server with its embedded store,
// and a pool "local" whose nodes are `lote agent` processes started here, each
// in its own node directory. Agents run in their own process groups, so a
// kill -9 of `lote up` leaves them (and their tasks) running; the next
// `lote up` on the same directory finds them by their directory locks instead
// of starting duplicates, and they reconnect to it by re-reading client.json.
package up

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lotehq/lote/internal/agent"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/server"
)

// PoolID is the pool `lote up` creates.
const PoolID = "local"

// Config configures lote up: the server it runs, and its local agents.
type Config struct {
	server.Config
	Nodes int
	Slots int
	Exe   string // the lote binary to start agents with
	// Ready, when set, is called once the server listens and the agents were
	// started.
	Ready func(s *server.Server)
}

// Run starts everything and blocks until ctx ends, then stops the agents
// (which stop and report their tasks) and the server, in that order.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	srv, err := server.Start(ctx, cfg.Config)
	if err != nil {
		return err
	}
	defer srv.Close()
	tok, err := srv.EnsurePool(ctx, core.PoolSpec{
		ID: PoolID, Provider: "local", SlotsPerNode: cfg.Slots, Prefill: -1, TargetNodes: cfg.Nodes,
		// The local pool runs the tasks of whoever ran lote up, on their own
		// machine, as themselves: root when lote up runs as root.
		AllowRoot: os.Geteuid() == 0,
	})
	if err != nil {
		return err
	}
	var children []*exec.Cmd
	var adopted []string
	ours := map[string]bool{} // node directories of this pool
	for i := 1; i <= cfg.Nodes; i++ {
		name := PoolID + "-" + strconv.Itoa(i)
		dir := filepath.Join(cfg.Dir, "nodes", name)
		ours[dir] = true
		if agent.Locked(dir) {
			adopted = append(adopted, dir)
			continue
		}
		cmd, err := startAgent(cfg, srv, name, dir, tok)
		if err != nil {
			stopAgents(log, children, adopted)
			return err
		}
		children = append(children, cmd)
	}
	if len(adopted) > 0 {
		log.Info("re-adopted running agents", "count", len(adopted))
	}
	if cfg.Ready != nil {
		cfg.Ready(srv)
	}
	<-ctx.Done()
	log.Info("stopping agents and server")
	stopAgents(log, children, append(adopted, othersRunning(cfg.Dir, ours)...))
	return nil
}

// othersRunning lists the node directories, other than ours, whose agents
// run: those of local pools the server made. A Ctrl-C stops them too; their
// pools replace them on the next lote up.
func othersRunning(dir string, ours map[string]bool) []string {
	ents, _ := os.ReadDir(filepath.Join(dir, "nodes"))
	var out []string
	for _, e := range ents {
		d := filepath.Join(dir, "nodes", e.Name())
		if e.IsDir() && !ours[d] && agent.Locked(d) {
			out = append(out, d)
		}
	}
	return out
}

func startAgent(cfg Config, srv *server.Server, name, dir, tok string) (*exec.Cmd, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{"agent", "--server-file", filepath.Join(cfg.Dir, "client.json"), "--pool", PoolID,
		"--dir", dir, "--name", name}
	if cfg.Slots > 0 {
		args = append(args, "--slots", strconv.Itoa(cfg.Slots))
	}
	if cfg.HeartbeatTimeout > 0 {
		// Half: the server's clock starts at the agent's last frame, up to a
		// heartbeat interval before a crash, and the spawner's at the crash
		// (see agent.Config.AdoptTimeout).
		args = append(args, "--adopt-timeout", (cfg.HeartbeatTimeout / 2).String())
	}
	cmd := exec.Command(cfg.Exe, args...)
	cmd.Env = append(os.Environ(), "LOTE_JOIN_TOKEN="+tok)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: Ctrl-C in the terminal reaches lote up only, which
	// then stops the agents in order; a kill -9 of lote up leaves them be.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting agent %s: %w", name, err)
	}
	return cmd, nil
}

// stopAgents sends SIGTERM to every agent and waits (bounded) for them.
func stopAgents(log *slog.Logger, children []*exec.Cmd, adopted []string) {
	var pids []int
	for _, c := range children {
		pids = append(pids, c.Process.Pid)
	}
	for _, dir := range adopted {
		if b, err := os.ReadFile(filepath.Join(dir, "agent.lock")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	done := make(chan struct{})
	go func() {
		for _, c := range children {
			c.Wait()
		}
		for _, dir := range adopted {
			for agent.Locked(dir) {
				time.Sleep(50 * time.Millisecond)
			}
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		log.Warn("agents did not stop in time; killing them")
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
