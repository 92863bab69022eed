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
	"strings"
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
// whose process (same pid and start time) still runs has its process group
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
	return nil
}

// task is a running task process.
type task struct {
	rec   record
	grace time.Duration

	// Guarded by server.mu.
	wall     *time.Timer // fires at MaxWallClock
	hard     *time.Timer // SIGKILL once grace has passed after SIGTERM
	exited   bool
	timedOut bool
	killed   bool
	lost     bool
}

// waitResult is what wait4 reported for a process.
type waitResult struct {
	status syscall.WaitStatus
	usage  syscall.Rusage
	at     time.Time
}

type pendingExit struct {
	seq  uint64 // delivery order
	exit *Exit
}

// conn is a connection that has said hello.
type conn struct {
	nc       net.Conn
	out      *outbox
	replaced atomic.Bool // a newer client took over; stop handling frames
}

type server struct {
	cfg        ServeConfig
	devNull    int
	journal    *journal
	forked     chan struct{} // capacity 1: a task was forked; wakes a reaper that found no children
	changed    chan struct{} // capacity 1: something the exit conditions depend on changed
	stopReaper chan struct{}
	handlers   sync.WaitGroup

	// recordMu serialises spawns and acks, so that the journal records an
	// ID's ack before its next start, and forks, so that a process reaped
	// before its fork returned can only belong to the one fork in flight.
	recordMu sync.Mutex

	mu         sync.Mutex
	drained    *sync.Cond // broadcast when tasks becomes empty
	tasks      map[string]*task
	byPID      map[int]*task
	early      map[int]waitResult // reaped before the fork in flight registered its task
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
		forked:     make(chan struct{}, 1),
		changed:    make(chan struct{}, 1),
		stopReaper: make(chan struct{}),
		tasks:      make(map[string]*task),
		byPID:      make(map[int]*task),
		early:      make(map[int]waitResult),
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
			if rec.PID > 0 && alive(rec.PID, rec.StartTime) {
				syscall.Kill(-rec.PGID, syscall.SIGKILL)
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
		for alive(rec.PID, rec.StartTime) && time.Now().Before(deadline) {
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
	// which terminated it.
	s.mu.Lock()
	s.waitDrained()
	s.mu.Unlock()
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
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
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
		s.spawn(f.Spawn)
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
	c.out.put(&frame{Hello: protocolVersion})
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
	now := time.Now()
	s.detachedAt, s.quietSince = now, now
	s.notify()
}

func (s *server) spawn(req *SpawnRequest) {
	if err := checkID(req.ID); err != nil {
		log.Printf("spawner: ignoring spawn: %v", err)
		return
	}
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	s.mu.Lock()
	_, running := s.tasks[req.ID]
	_, exited := s.unacked[req.ID]
	closing := s.closing
	s.mu.Unlock()
	if running || exited {
		log.Printf("spawner: ignoring spawn of %q: it already runs or has an unacknowledged exit", req.ID)
		return
	}

	t := &task{rec: record{ID: req.ID}, grace: cmp.Or(req.Grace, defaultGrace)}
	err := errShuttingDown
	if !closing {
		err = s.start(t, req)
	}
	if err != nil {
		now := time.Now()
		t.rec.StartedAt = now
		s.finish(&t.rec, &Exit{ID: req.ID, ExitCode: -1, StartErr: err.Error(), StartedAt: now, EndedAt: now})
		return
	}

	s.mu.Lock()
	w, reaped := s.early[t.rec.PID]
	clear(s.early) // the rest are children of failed execs, reaped before ForkExec could
	if !reaped {
		s.tasks[t.rec.ID] = t
		s.byPID[t.rec.PID] = t
		if req.MaxWallClock > 0 {
			t.wall = time.AfterFunc(req.MaxWallClock, func() { s.timeout(t) })
		}
		if s.closing {
			t.lost = true
			s.terminate(t, t.grace)
		}
	}
	s.mu.Unlock()
	if reaped {
		s.complete(t, w)
	}
}

// start forks and execs the task and writes its first record.
func (s *server) start(t *task, req *SpawnRequest) error {
	if len(req.Argv) == 0 {
		return errors.New("empty argv")
	}
	path, err := lookPath(req.Argv[0], req.Env, req.Dir)
	if err != nil {
		return err
	}
	stdout, err := openOutput(req.Stdout, s.devNull, req.Credential)
	if err != nil {
		return err
	}
	defer s.closeOutput(stdout)
	stderr, err := openOutput(req.Stderr, s.devNull, req.Credential)
	if err != nil {
		return err
	}
	defer s.closeOutput(stderr)

	t.rec.StartedAt = time.Now()
	pid, err := syscall.ForkExec(path, req.Argv, &syscall.ProcAttr{
		Dir:   req.Dir,
		Env:   req.Env,
		Files: []uintptr{uintptr(s.devNull), uintptr(stdout), uintptr(stderr)},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Credential: req.Credential},
	})
	if err != nil {
		return fmt.Errorf("starting %s: %w", path, err)
	}
	select {
	case s.forked <- struct{}{}:
	default:
	}
	t.rec.PID, t.rec.PGID = pid, pid
	if _, start, err := procStat(pid); err == nil {
		t.rec.StartTime = start
	}
	if err := s.journal.put(&t.rec); err != nil {
		log.Printf("spawner: task %q runs unrecorded: %v", t.rec.ID, err)
	}
	return nil
}

func (s *server) closeOutput(fd int) {
	if fd != s.devNull {
		syscall.Close(fd)
	}
}

// timeout stops a task whose MaxWallClock has passed.
func (s *server) timeout(t *task) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !t.exited {
		t.timedOut = true
		s.terminate(t, t.grace)
	}
}

func (s *server) kill(id string, grace time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if t := s.tasks[id]; t != nil {
		t.killed = true
		s.terminate(t, grace)
	}
}

// terminate sends SIGTERM to a running task's process group and SIGKILL
// after grace, or at once if grace is not positive. s.mu must be held; the
// task's pid cannot be reused before it is reaped and marked exited.
func (s *server) terminate(t *task, grace time.Duration) {
	pgid := t.rec.PGID
	if grace <= 0 {
		syscall.Kill(-pgid, syscall.SIGKILL)
		return
	}
	syscall.Kill(-pgid, syscall.SIGTERM)
	if t.hard == nil {
		t.hard = time.AfterFunc(grace, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !t.exited {
				syscall.Kill(-pgid, syscall.SIGKILL)
			}
		})
	}
}

// reap waits for every child of the spawner until stopReaper is closed.
// One blocking wait4(-1) serves all tasks, rather than a thread per task.
func (s *server) reap() {
	for {
		var w waitResult
		pid, err := syscall.Wait4(-1, &w.status, 0, &w.usage)
		switch {
		case err == nil:
			w.at = time.Now()
			s.reaped(pid, w)
		case errors.Is(err, syscall.EINTR):
		default:
			if !errors.Is(err, syscall.ECHILD) {
				log.Printf("spawner: wait4: %v", err)
			}
			select {
			case <-s.forked:
			case <-s.stopReaper:
				return
			}
		}
	}
}

func (s *server) reaped(pid int, w waitResult) {
	s.mu.Lock()
	t := s.byPID[pid]
	if t == nil {
		s.early[pid] = w
		s.mu.Unlock()
		return
	}
	delete(s.byPID, pid)
	delete(s.tasks, t.rec.ID)
	t.exited = true
	if t.wall != nil {
		t.wall.Stop()
	}
	if t.hard != nil {
		t.hard.Stop()
	}
	if len(s.tasks) == 0 {
		s.drained.Broadcast()
	}
	s.mu.Unlock()
	s.complete(t, w)
}

// complete reports a reaped task. Whatever the task left behind in its
// process group is killed first: no background child outlives its task.
func (s *server) complete(t *task, w waitResult) {
	syscall.Kill(-t.rec.PGID, syscall.SIGKILL)
	e := &Exit{
		ID:        t.rec.ID,
		PID:       t.rec.PID,
		TimedOut:  t.timedOut,
		Killed:    t.killed,
		Lost:      t.lost,
		StartedAt: t.rec.StartedAt,
		EndedAt:   w.at,
	}
	exitStatus(e, w.status, &w.usage)
	s.finish(&t.rec, e)
}

// finish records e, then hands it to the client, if any, and keeps it until
// acknowledged.
func (s *server) finish(rec *record, e *Exit) {
	rec.Exit = e
	if err := s.journal.put(rec); err != nil {
		log.Printf("spawner: exit of %q is unrecorded: %v", e.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.unacked[e.ID] = pendingExit{s.seq, e}
	if s.client != nil {
		s.client.out.put(&frame{Exit: e}) // on failure, re-sent to the next client
		return
	}
	s.quietSince = time.Now()
	s.notify()
}

func (s *server) ack(ids []string) {
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	n := 0
	s.mu.Lock()
	for _, id := range ids {
		if _, ok := s.unacked[id]; ok {
			delete(s.unacked, id)
			ids[n] = id
			n++
		}
	}
	s.mu.Unlock()
	if n == 0 {
		return
	}
	if err := s.journal.forget(ids[:n]); err != nil {
		log.Printf("spawner: %v", err)
	}
}

func (s *server) list(c *conn, seq uint64) {
	s.mu.Lock()
	tasks := make([]Running, 0, len(s.tasks))
	for _, t := range s.tasks {
		tasks = append(tasks, Running{ID: t.rec.ID, PID: t.rec.PID, StartedAt: t.rec.StartedAt})
	}
	s.mu.Unlock()
	slices.SortFunc(tasks, func(a, b Running) int { return strings.Compare(a.ID, b.ID) })
	c.out.put(&frame{Running: &runningReply{Seq: seq, Tasks: tasks}})
}
