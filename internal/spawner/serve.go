package spawner

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ServeConfig configures a spawner process.
type ServeConfig struct {
	// SocketPath is the unix socket to listen on. A stale socket is replaced;
	// one that a live spawner answers on makes Serve fail with ErrBusy.
	SocketPath string
	// StateDir holds a journal of the tasks, so that a spawner started after
	// a crash of this one can kill and report the tasks it left behind, and a
	// lock that keeps two spawners off the same journal. A tmpfs (/run) suits
	// it best: it need not survive a reboot, and its writes are the cheapest.
	StateDir string
	// Orphaned is how long the spawner waits for a client before it stops
	// all tasks (SIGTERM, then SIGKILL after their grace) and exits, so tasks
	// do not run on unsupervised. 0 means 10 minutes.
	Orphaned time.Duration
	// Linger is how long the spawner stays with no client, no task and no
	// unacknowledged exit before it exits. 0 means 5 s.
	Linger time.Duration
}

const helloTimeout = 10 * time.Second

var errShuttingDown = errors.New("spawner is shutting down")

// Serve runs the spawner until ctx ends or an exit condition of cfg holds,
// then stops any tasks still running and returns nil. Exits that no client
// acknowledged stay in StateDir for the next spawner to deliver.
//
// On start it reads the journal a previous spawner left in StateDir: a task
// whose process (same boot, pid and start time) still runs has its process group
// SIGKILLed, and each such task becomes an Exit with Lost set, delivered to
// the first client, so no attempt ever has two live copies.
//
// Serve reaps every child of the process, so nothing else in the process may
// start child processes while it runs: give it a process of its own.
func Serve(ctx context.Context, cfg ServeConfig) error {
	if cfg.Orphaned <= 0 {
		cfg.Orphaned = 10 * time.Minute
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 5 * time.Second
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	lock, err := lockStateDir(cfg.StateDir)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := claimSocket(cfg.SocketPath); err != nil {
		return err
	}
	devNull, err := syscall.Open(os.DevNull, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", os.DevNull, err)
	}
	defer syscall.Close(devNull)

	s := newServer(cfg, devNull)
	if err := s.recover(); err != nil {
		return err
	}
	defer s.journal.close()
	ln, err := listen(cfg.SocketPath)
	if err != nil {
		return err
	}
	var reaper, acceptor sync.WaitGroup
	reaper.Go(s.reap)
	acceptor.Go(func() { s.accept(ln) })
	s.watch(ctx)
	s.stop(ln, &acceptor)
	close(s.stopReaper)
	reaper.Wait()
	s.finishing.Wait()
	return nil
}

// conn is a connection that has said hello.
type conn struct {
	nc       net.Conn
	out      *outbox
	replaced atomic.Bool // a newer client took over; stop handling frames
	base     *baseEnv    // set by base frames; only the connection's handler uses it
}

type server struct {
	cfg        ServeConfig
	devNull    int
	boot       string // the machine's boot ID
	journal    *journal
	changed    chan struct{} // capacity 1: something the exit conditions depend on changed
	stopReaper chan struct{}
	handlers   sync.WaitGroup

	// recordMu serialises spawns and acks, so that the journal records an
	// ID's ack before its next start, and forks, so that a process reaped
	// before its fork returned can only belong to the one fork in flight.
	recordMu sync.Mutex
	paths    pathCache // guarded by recordMu

	mu        sync.Mutex
	drained   *sync.Cond     // broadcast when tasks becomes empty
	finishing sync.WaitGroup // exits waiting for their output to be copied
	tasks     map[string]*task
	byPID     map[int]*task
	early     map[int]waitResult // reaped before the fork in flight registered its task
	// waiting holds the spawns that start when a running task is reaped,
	// by that task's ID (their After); waitingOn maps their own IDs to it.
	// They belong to the client that sent them, and are dropped with it.
	waiting    map[string]*SpawnRequest
	waitingOn  map[string]string
	unacked    map[string]pendingExit
	seq        uint64
	client     *conn
	conns      map[net.Conn]struct{}
	closing    bool
	detachedAt time.Time // when the last client left, or the spawner started
	quietSince time.Time // last change of tasks or exits while no client was attached
}

func newServer(cfg ServeConfig, devNull int) *server {
	now := time.Now()
	s := &server{
		cfg:        cfg,
		devNull:    devNull,
		boot:       bootID(),
		changed:    make(chan struct{}, 1),
		stopReaper: make(chan struct{}),
		tasks:      make(map[string]*task),
		byPID:      make(map[int]*task),
		early:      make(map[int]waitResult),
		waiting:    make(map[string]*SpawnRequest),
		waitingOn:  make(map[string]string),
		unacked:    make(map[string]pendingExit),
		conns:      make(map[net.Conn]struct{}),
		detachedAt: now,
		quietSince: now,
	}
	s.drained = sync.NewCond(&s.mu)
	return s
}

// lockStateDir takes an exclusive lock on dir for the life of the spawner and
// writes the spawner's pid into the lock file, for operators.
func lockStateDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "spawner.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("locking state dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			err = ErrBusy
		}
		return nil, fmt.Errorf("locking state dir %s: %w", dir, err)
	}
	if f.Truncate(0) == nil { // best effort: the lock works without it
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// claimSocket removes a stale socket at path, and fails if a live spawner
// answers on it. The probe sends no hello, so it does not displace that
// spawner's client.
func claimSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("claiming socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("claiming socket %s: exists and is not a socket", path)
	}
	if nc, err := net.DialTimeout("unix", path, time.Second); err == nil {
		nc.Close()
		return fmt.Errorf("claiming socket %s: %w", path, ErrBusy)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("claiming socket: %w", err)
	}
	return nil
}

// listen creates the socket with mode 0600 from the start, by umask rather
// than a later chmod; nothing else in the process creates files yet.
func listen(path string) (*net.UnixListener, error) {
	old := syscall.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening: %w", err)
	}
	return ln, nil
}

// recover turns the tasks in a previous spawner's journal into exits to
// deliver, killing those that still run, and starts a fresh journal.
func (s *server) recover() error {
	recs, err := readJournal(s.cfg.StateDir)
	if err != nil {
		return err
	}
	var killed []*record
	for _, rec := range recs {
		if rec.Exit == nil {
			rec.Exit = &Exit{ID: rec.ID, PID: rec.PID, ExitCode: -1, Lost: true, StartedAt: rec.StartedAt, EndedAt: time.Now()}
			if rec.PID > 1 && rec.Boot == s.boot && alive(rec.PID, rec.StartedBy) {
				killGroup(rec.PGID, syscall.SIGKILL)
				syscall.Kill(rec.PID, syscall.SIGKILL)
				rec.Exit.Signal = int(syscall.SIGKILL)
				killed = append(killed, rec)
				log.Printf("spawner: killed orphaned task %q (pid %d)", rec.ID, rec.PID)
			}
		}
		s.seq++
		s.unacked[rec.ID] = pendingExit{s.seq, rec.Exit}
	}
	if s.journal, err = createJournal(s.cfg.StateDir, recs); err != nil {
		return err
	}
	// Report them lost only once they are gone. They are no longer our
	// children, so poll.
	deadline := time.Now().Add(5 * time.Second)
	for _, rec := range killed {
		for alive(rec.PID, rec.StartedBy) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// watch returns when ctx ends or an exit condition holds.
func (s *server) watch(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait, why := s.idle(time.Now())
		if why != "" {
			log.Printf("spawner: %s, exiting", why)
			return
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.changed:
		case <-timer.C:
		}
	}
}

// idle says why the spawner should exit now, or else how long to wait
// before asking again.
func (s *server) idle(now time.Time) (time.Duration, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != nil {
		return time.Hour, ""
	}
	next := s.detachedAt.Add(s.cfg.Orphaned)
	if !now.Before(next) {
		return 0, fmt.Sprintf("no client for %v", s.cfg.Orphaned)
	}
	if len(s.tasks) == 0 && len(s.unacked) == 0 {
		at := s.quietSince.Add(s.cfg.Linger)
		if !now.Before(at) {
			return 0, "nothing to do"
		}
		if at.Before(next) {
			next = at
		}
	}
	return next.Sub(now), ""
}

func (s *server) notify() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// stop ends the remaining tasks, then the connections. A client attached
// meanwhile still receives the exits.
func (s *server) stop(ln net.Listener, acceptor *sync.WaitGroup) {
	s.mu.Lock()
	s.closing = true
	s.dropWaiting()
	for _, t := range s.tasks {
		t.lost = true
		s.terminate(t, t.grace)
	}
	s.waitDrained()
	s.mu.Unlock()

	ln.Close()
	acceptor.Wait()
	s.mu.Lock()
	for nc := range s.conns {
		nc.Close()
	}
	s.mu.Unlock()
	s.handlers.Wait()

	// A fork that was in flight registered its task after closing was set,
	// which terminated it. Holding recordMu waits out a fork the reaper may
	// still have had in flight for a task that waited on one just reaped;
	// reaping needs only mu.
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	s.mu.Lock()
	s.waitDrained()
	s.mu.Unlock()
}

// dropWaiting forgets the spawns waiting on running tasks, when their client
// goes or the spawner stops; s.mu must be held. Their predecessors' exits
// tell the client they never started.
func (s *server) dropWaiting() {
	clear(s.waiting)
	clear(s.waitingOn)
}

func (s *server) waitDrained() {
	for len(s.tasks) > 0 {
		s.drained.Wait()
	}
}

func (s *server) accept(ln net.Listener) {
	for {
		nc, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			log.Printf("spawner: accepting: %v", err)
			time.Sleep(100 * time.Millisecond) // e.g. out of descriptors: do not spin
			continue
		}
		s.mu.Lock()
		s.conns[nc] = struct{}{}
		s.mu.Unlock()
		s.handlers.Go(func() { s.serveConn(nc) })
	}
}

// serveConn makes nc the client once it says hello, and handles its frames.
// A connection that closes before hello is a starting spawner's probe.
func (s *server) serveConn(nc net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
		nc.Close()
	}()
	sc := newFrameScanner(nc)
	nc.SetReadDeadline(time.Now().Add(helloTimeout))
	if !sc.Scan() {
		return
	}
	var hello frame
	if err := json.Unmarshal(sc.Bytes(), &hello); err != nil || hello.Hello != protocolVersion {
		log.Printf("spawner: dropping connection without hello %d: %.100q", protocolVersion, sc.Bytes())
		return
	}
	nc.SetReadDeadline(time.Time{})

	c := &conn{nc: nc, out: newOutbox()}
	written := make(chan struct{})
	go func() {
		c.out.run(nc)
		close(written)
	}()
	s.attach(c)
	for sc.Scan() && !c.replaced.Load() {
		var f frame
		if err := decodeFrame(sc.Bytes(), &f); err != nil {
			log.Printf("spawner: ignoring bad frame: %v", err)
			continue
		}
		s.handle(c, &f)
	}
	if err := sc.Err(); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Printf("spawner: reading from client: %v", err)
	}
	s.detach(c)
	c.out.close()
	nc.Close()
	<-written
}

func (s *server) handle(c *conn, f *frame) {
	switch {
	case f.Spawn != nil:
		if f.Spawn.Base {
			f.Spawn.Env, f.Spawn.Base = c.base.with(f.Spawn.Env), false
		}
		s.spawn(f.Spawn)
	case f.Base != nil:
		c.base = newBaseEnv(f.Base)
	case f.Kill != nil:
		s.kill(f.Kill.ID, f.Kill.Grace)
	case f.Ack != nil:
		s.ack(f.Ack)
	case f.List != 0:
		s.list(c, f.List)
	default:
		log.Print("spawner: ignoring empty frame")
	}
}

// attach makes c the client, replacing the previous one, and re-sends it
// every unacknowledged exit.
func (s *server) attach(c *conn) {
	s.mu.Lock()
	old := s.client
	s.client = c
	s.dropWaiting()
	c.out.put(&frame{Hello: protocolVersion, Features: []string{featureAfter, featureBase, featureExited}})
	pending := make([]pendingExit, 0, len(s.unacked))
	for _, p := range s.unacked {
		pending = append(pending, p)
	}
	slices.SortFunc(pending, func(a, b pendingExit) int { return cmp.Compare(a.seq, b.seq) })
	for _, p := range pending {
		c.out.put(&frame{Exit: p.exit})
	}
	s.mu.Unlock()
	if old != nil {
		old.replaced.Store(true)
		old.nc.Close()
	}
}

func (s *server) detach(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client != c {
		return
	}
	s.client = nil
	s.dropWaiting()
	now := time.Now()
	s.detachedAt, s.quietSince = now, now
	s.notify()
}
