package provider

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LocalConfig configures a Local provider.
type LocalConfig struct {
	Exe          string        // the lote binary agents run
	DataDir      string        // the server's data directory: client.json and nodes/<id>
	Slots        int           // slots per node when the request names none; 0: the agent's default
	AdoptTimeout time.Duration // the agents' --adopt-timeout when positive
	StopTimeout  time.Duration // how long Delete waits after SIGTERM before SIGKILL; 0 means 20 s
	Logger       *slog.Logger
}

// Local is the provider whose nodes are `lote agent` processes on the
// server's machine, one per node directory <DataDir>/nodes/<id>, as `lote up`
// runs them. Agents run in their own process groups and find the server
// through <DataDir>/client.json, so they outlive a server crash and follow
// it to a new address. A node directory belongs to the pool named in its
// file "pool"; its agent is running while it holds the directory's
// agent.lock, which holds its pid.
type Local struct {
	cfg LocalConfig
	log *slog.Logger
}

const (
	poolFile      = "pool"                 // in a node directory: the pool it belongs to
	agentLock     = "agent.lock"           // flocked by the agent, holds its pid
	spawnerLock   = "spawner/spawner.lock" // flocked by the agent's spawner, holds its pid
	startTimeout  = 10 * time.Second       // for a started agent to take its lock
	defaultStop   = 20 * time.Second       // see LocalConfig.StopTimeout
	killedTimeout = 5 * time.Second        // for a lock to go after SIGKILL
	pollEvery     = 20 * time.Millisecond  // lock polling
	nodeIDPattern = `^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`
)

var validNodeID = regexp.MustCompile(nodeIDPattern)

// NewLocal checks cfg and returns its provider.
func NewLocal(cfg LocalConfig) (*Local, error) {
	if cfg.Exe == "" || cfg.DataDir == "" {
		return nil, errors.New("provider local: Exe and DataDir are required")
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = defaultStop
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Local{cfg: cfg, log: log}, nil
}

func (l *Local) nodeDir(id string) string { return filepath.Join(l.cfg.DataDir, "nodes", id) }

// Create starts an agent per requested node, unless one already holds the
// node's directory, and waits (bounded) until each has taken its lock. A node
// whose agent exits at once, or whose directory belongs to another pool,
// comes back failed.
func (l *Local) Create(ctx context.Context, req CreateRequest) ([]Machine, error) {
	ms := make([]Machine, len(req.Nodes))
	exited := make([]<-chan struct{}, len(req.Nodes)) // of agents started now
	for i, n := range req.Nodes {
		ms[i] = Machine{ID: n.ID, State: StateRunning}
		ch, err := l.ensure(req, n.ID)
		if err != nil {
			ms[i].State, ms[i].Error = StateFailed, err.Error()
			continue
		}
		exited[i] = ch
	}
	// Agents take their lock within milliseconds; until then Status would
	// call them failed.
	deadline := time.Now().Add(startTimeout)
	for i, ch := range exited {
		if ch == nil {
			continue
		}
		dir := l.nodeDir(ms[i].ID)
		for !agentUp(dir) {
			select {
			case <-ch:
				ms[i].State = StateFailed
				ms[i].Error = "agent exited: " + lastLine(filepath.Join(dir, "agent.log"))
			case <-ctx.Done():
				ms[i].State = StateCreating
			case <-time.After(pollEvery):
				if time.Now().Before(deadline) {
					continue
				}
				ms[i].State = StateCreating
			}
			break
		}
	}
	return ms, nil
}

// ensure starts the agent of node id unless one runs; the channel it
// returns, nil for a running agent, closes when the started one exits.
func (l *Local) ensure(req CreateRequest, id string) (<-chan struct{}, error) {
	if !validNodeID.MatchString(id) {
		return nil, fmt.Errorf("invalid node ID %q (want %s)", id, nodeIDPattern)
	}
	dir := l.nodeDir(id)
	owner, err := readPool(dir)
	if err != nil {
		return nil, err
	}
	if owner != "" && owner != req.Pool {
		return nil, fmt.Errorf("node directory %s belongs to pool %s", dir, owner)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, poolFile), []byte(req.Pool+"\n"), 0o644); err != nil {
		return nil, err
	}
	if lockHeld(filepath.Join(dir, agentLock)) {
		l.log.Info("local agent already running", "pool", req.Pool, "node", id)
		return nil, nil
	}
	logf, err := os.OpenFile(filepath.Join(dir, "agent.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{"agent", "--server-file", filepath.Join(l.cfg.DataDir, "client.json"),
		"--pool", req.Pool, "--dir", dir, "--name", id}
	slots := req.Slots
	if slots <= 0 {
		slots = l.cfg.Slots
	}
	if slots > 0 {
		args = append(args, "--slots", strconv.Itoa(slots))
	}
	if l.cfg.AdoptTimeout > 0 {
		args = append(args, "--adopt-timeout", l.cfg.AdoptTimeout.String())
	}
	cmd := exec.Command(l.cfg.Exe, args...)
	cmd.Env = append(os.Environ(), "LOTE_JOIN_TOKEN="+req.JoinToken)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Own process group: a signal to the server's group (Ctrl-C) does not
	// reach the agents, and they outlive a server crash.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting agent: %w", err)
	}
	l.log.Info("started local agent", "pool", req.Pool, "node", id, "pid", cmd.Process.Pid)
	exited := make(chan struct{})
	go func() {
		cmd.Wait() // reaps it; its exit is in agent.log
		close(exited)
	}()
	return exited, nil
}

// Status reports every node directory of pool: running while its agent
// holds the lock, failed otherwise.
func (l *Local) Status(_ context.Context, pool string) ([]Machine, error) {
	ents, err := os.ReadDir(filepath.Join(l.cfg.DataDir, "nodes"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, opError(KindLocal, "status", pool, err)
	}
	var ms []Machine
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		dir := l.nodeDir(e.Name())
		if owner, err := readPool(dir); err != nil || owner != pool {
			continue
		}
		m := Machine{ID: e.Name(), State: StateRunning}
		if !lockHeld(filepath.Join(dir, agentLock)) {
			m.State, m.Error = StateFailed, "agent is not running"
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// Delete stops each node's agent (SIGTERM: it stops its tasks; SIGKILL after
// StopTimeout) and its spawner, then removes the node directory. Nodes are
// deleted in parallel; unknown IDs are ignored.
func (l *Local) Delete(ctx context.Context, pool string, ids []string) error {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			if err := l.delete(ctx, pool, id); err != nil {
				errs[i] = fmt.Errorf("node %s: %w", id, err)
			}
		})
	}
	wg.Wait()
	if err := joinErrors(errs); err != nil {
		return opError(KindLocal, "delete", pool, err)
	}
	return nil
}

func (l *Local) delete(ctx context.Context, pool, id string) error {
	if !validNodeID.MatchString(id) {
		return fmt.Errorf("invalid node ID %q", id)
	}
	dir := l.nodeDir(id)
	owner, err := readPool(dir)
	if err != nil {
		return err
	}
	if owner != "" && owner != pool {
		return fmt.Errorf("node directory %s belongs to pool %s", dir, owner)
	}
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for _, lock := range []string{agentLock, spawnerLock} {
		if err := l.stop(ctx, filepath.Join(dir, lock)); err != nil {
			return err
		}
	}
	l.log.Info("deleted local node", "pool", pool, "node", id)
	return os.RemoveAll(dir)
}

// stop ends the process holding lock: SIGTERM, then after StopTimeout
// SIGKILL to it and, if it leads one, its process group.
func (l *Local) stop(ctx context.Context, lock string) error {
	if !lockHeld(lock) {
		return nil
	}
	pid, err := readPID(lock)
	for deadline := time.Now().Add(time.Second); err != nil && time.Now().Before(deadline); {
		// It has just taken the lock and not written its pid yet.
		time.Sleep(pollEvery)
		pid, err = readPID(lock)
	}
	if err != nil {
		return err
	}
	syscall.Kill(pid, syscall.SIGTERM)
	if waitReleased(ctx, lock, l.cfg.StopTimeout) {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	l.log.Warn("local agent did not stop in time; killing it", "lock", lock, "pid", pid)
	if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	if waitReleased(ctx, lock, killedTimeout) {
		return nil
	}
	return fmt.Errorf("pid %d still holds %s after SIGKILL", pid, lock)
}

// waitReleased polls until nobody holds lock, for at most d.
func waitReleased(ctx context.Context, lock string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for lockHeld(lock) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(pollEvery)
	}
	return true
}

// agentUp reports whether an agent holds dir's lock and wrote its pid there
// (it takes the lock first).
func agentUp(dir string) bool {
	lock := filepath.Join(dir, agentLock)
	if !lockHeld(lock) {
		return false
	}
	_, err := readPID(lock)
	return err == nil
}

// lockHeld reports whether a live process holds a flock on path.
func lockHeld(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func readPID(lock string) (int, error) {
	b, err := os.ReadFile(lock)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("%s holds no pid: %q", lock, b)
	}
	return pid, nil
}

// readPool reads the pool a node directory belongs to; "" when it has no
// marker (or does not exist).
func readPool(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, poolFile))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	return strings.TrimSpace(string(b)), err
}

// lastLine is the last non-empty line of a file, for error messages.
func lastLine(path string) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
