package spawner

import (
	"cmp"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A task's life in the spawner, which the journal mirrors:
//
//	spawn ──► start failed ───────────────────────────┐
//	  │                                               ▼
//	  └─────► running ──► reaped (group SIGKILLed) ──► exited ──ack──► forgotten
//	            │ ▲
//	            └─┘ timeout, Kill or shutdown: SIGTERM to the group,
//	                SIGKILL after grace
//
// An exited task's Exit goes to the client, if any, and to every new client
// until acknowledged. Running and exited tasks hold on to their ID: a spawn
// with it is ignored.

// task is a running task process.
type task struct {
	rec   record
	grace time.Duration

	// Output (output.go): streams are the read ends of the output pipes
	// not yet handed to a copier, guarded by outMu; handoff hands them
	// over once the task has run outputWindow. pending counts the copiers
	// still running, plus one until the task is reaped and its streams
	// settled; copied is closed when it reaches zero, and written then
	// holds the bytes each stream (stdout, stderr) got.
	outMu   sync.Mutex
	streams [2]stream
	handoff *time.Timer
	pending atomic.Int32
	copied  chan struct{}
	written [2]int64

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
	_, waits := s.waitingOn[req.ID]
	if running || exited || waits {
		s.mu.Unlock()
		log.Printf("spawner: ignoring spawn of %q: it already runs, waits, or has an unacknowledged exit", req.ID)
		return
	}
	if req.After != "" {
		s.wait(req)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	s.launch(req)
}

// wait keeps req to start when its After is reaped, or drops it when After
// neither runs nor waits: After's exit, already on its way, tells the
// client. s.mu must be held.
func (s *server) wait(req *SpawnRequest) {
	_, running := s.tasks[req.After]
	_, waits := s.waitingOn[req.After]
	if !running && !waits || s.closing {
		return
	}
	if other, taken := s.waiting[req.After]; taken {
		log.Printf("spawner: dropping spawn of %q: %q already waits on %q", req.ID, other.ID, req.After)
		return
	}
	s.waiting[req.After] = req
	s.waitingOn[req.ID] = req.After
}

// launch starts req, or records why it could not, and reports whether a
// process started. s.recordMu must be held.
func (s *server) launch(req *SpawnRequest) bool {
	s.mu.Lock()
	closing := s.closing
	s.mu.Unlock()
	t := &task{rec: record{ID: req.ID}, grace: cmp.Or(req.Grace, defaultGrace)}
	err := errShuttingDown
	if !closing {
		err = s.start(t, req)
	}
	if err != nil {
		now := time.Now()
		t.rec.StartedAt = now
		s.finish(&t.rec, &Exit{ID: req.ID, ExitCode: -1, StartErr: err.Error(), StartedAt: now, EndedAt: now})
		return false
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
		s.complete(t, w, "")
	}
	return true
}

// start forks and execs the task and writes its first record.
func (s *server) start(t *task, req *SpawnRequest) (err error) {
	if len(req.Argv) == 0 {
		return errors.New("empty argv")
	}
	path, cached, err := s.paths.look(req.Argv[0], req.Env, req.Dir, time.Now())
	if err != nil {
		return err
	}
	t.copied = make(chan struct{})
	t.pending.Store(1)
	t.streams = [2]stream{{fd: -1}, {fd: -1}}
	defer func() {
		if err != nil { // no process: nothing will settle the streams
			t.closeStreams()
		}
	}()
	stdout, err := s.output(t, 0, req.Stdout, req.Credential)
	if err != nil {
		return err
	}
	defer s.closeOutput(stdout)
	stderr, err := s.output(t, 1, req.Stderr, req.Credential)
	if err != nil {
		return err
	}
	defer s.closeOutput(stderr)

	t.rec.StartedAt = time.Now()
	attr := &syscall.ProcAttr{
		Dir:   req.Dir,
		Env:   req.Env,
		Files: []uintptr{uintptr(s.devNull), uintptr(stdout), uintptr(stderr)},
		Sys:   &syscall.SysProcAttr{Setpgid: true, Credential: req.Credential},
	}
	pid, err := syscall.ForkExec(path, req.Argv, attr)
	if cached && errors.Is(err, syscall.ENOENT) {
		// Removed since it was found: look again, as execvp would have.
		s.paths.forget(req.Argv[0], req.Env)
		if path, err = lookPath(req.Argv[0], req.Env, req.Dir); err != nil {
			return err
		}
		pid, err = syscall.ForkExec(path, req.Argv, attr)
	}
	if err != nil {
		return fmt.Errorf("starting %s: %w", path, err)
	}
	t.copyLater()
	t.rec.PID, t.rec.PGID, t.rec.Boot, t.rec.StartedBy = pid, pid, s.boot, bootTicks()
	if err := s.journal.put(&t.rec); err != nil {
		log.Printf("spawner: task %q runs unrecorded: %v", t.rec.ID, err)
	}
	return nil
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
	if t := s.tasks[id]; t != nil {
		t.killed = true
		s.terminate(t, grace)
	}
	after, waits := s.waitingOn[id]
	if waits {
		s.unwait(after)
	}
	s.mu.Unlock()
	if waits {
		s.finish(&record{ID: id}, &Exit{ID: id, ExitCode: -1, Killed: true, EndedAt: time.Now()})
	}
}

// terminate sends SIGTERM to a running task's process group and SIGKILL
// after grace, or at once if grace is not positive. s.mu must be held; the
// task's pid cannot be reused before it is reaped and marked exited.
func (s *server) terminate(t *task, grace time.Duration) {
	pgid := t.rec.PGID
	if grace <= 0 {
		killGroup(pgid, syscall.SIGKILL)
		return
	}
	killGroup(pgid, syscall.SIGTERM)
	if t.hard == nil {
		t.hard = time.AfterFunc(grace, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if !t.exited {
				killGroup(pgid, syscall.SIGKILL)
			}
		})
	}
}

// reap reaps every child of the process as it exits, until stopReaper is
// closed. One goroutine woken by SIGCHLD serves all tasks, rather than a
// thread blocked in wait4 per task.
func (s *server) reap() {
	sigchld := make(chan os.Signal, 1)
	signal.Notify(sigchld, syscall.SIGCHLD)
	defer signal.Stop(sigchld)
	for {
		s.reapExited()
		select {
		case <-sigchld:
		case <-s.stopReaper:
			return
		}
	}
}

// reapExited reaps the children that have exited, without blocking. Signals
// coalesce, so it reaps until none is left.
func (s *server) reapExited() {
	for {
		var w waitResult
		pid, err := syscall.Wait4(-1, &w.status, syscall.WNOHANG, &w.usage)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		w.at = time.Now()
		s.reaped(pid, w)
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
	next := s.unwait(t.rec.ID)
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
	var started string
	if next != nil && s.startNext(next) {
		started = next.ID
	}
	s.complete(t, w, started)
}

// startNext starts the spawn that waited on a task just reaped: the slot is
// filled here, before the client has even heard of the exit.
func (s *server) startNext(req *SpawnRequest) bool {
	s.recordMu.Lock()
	defer s.recordMu.Unlock()
	return s.launch(req)
}

// complete reports a reaped task, and next, the spawn started in its place.
// Whatever the task left behind in its process group is killed first: no
// background child outlives its task.
func (s *server) complete(t *task, w waitResult, next string) {
	killGroup(t.rec.PGID, syscall.SIGKILL)
	e := &Exit{
		ID:        t.rec.ID,
		PID:       t.rec.PID,
		TimedOut:  t.timedOut,
		Killed:    t.killed,
		Lost:      t.lost,
		StartedAt: t.rec.StartedAt,
		EndedAt:   w.at,
		Next:      next,
	}
	exitStatus(e, w.status, &w.usage)
	// The exit is reported once the output is in its files (the agent reads
	// them then), or after outputGrace if a descendant that escaped the
	// process group still holds a pipe open. Usually the pipes closed with
	// the process, and the exit is reported at once.
	t.settleOutput()
	select {
	case <-t.copied:
		e.Written = &[2]int64{t.written[0], t.written[1]}
		s.finish(&t.rec, e)
		return
	default:
	}
	s.finishing.Add(1)
	go func() {
		defer s.finishing.Done()
		timer := time.NewTimer(outputGrace)
		defer timer.Stop()
		select {
		case <-t.copied:
			e.Written = &[2]int64{t.written[0], t.written[1]}
		case <-timer.C:
			log.Printf("spawner: output of %q still open %v after it exited; reporting the exit", t.rec.ID, outputGrace)
		}
		s.finish(&t.rec, e)
	}()
}

// outputGrace bounds how long an exit waits for its output pipes to close.
const outputGrace = 5 * time.Second

// finish records e, then hands it to the client, if any, and keeps it until
// acknowledged.
func (s *server) finish(rec *record, e *Exit) {
	rec.Exit = e
	if err := s.journal.put(rec); err != nil {
		log.Printf("spawner: exit of %q is unrecorded: %v", e.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropChain(e.ID) // what waited on it and did not start in its place
	s.seq++
	s.unacked[e.ID] = pendingExit{s.seq, e}
	if s.client != nil {
		s.client.out.put(&frame{Exit: e}) // on failure, re-sent to the next client
		return
	}
	s.quietSince = time.Now()
	s.notify()
}

// dropChain drops the spawn waiting on id, the one waiting on that, and so
// on; s.mu must be held.
func (s *server) dropChain(id string) {
	for w := s.unwait(id); w != nil; w = s.unwait(w.ID) {
	}
}

// unwait removes and returns the spawn waiting on after, if any; s.mu must
// be held.
func (s *server) unwait(after string) *SpawnRequest {
	req := s.waiting[after]
	if req != nil {
		delete(s.waiting, after)
		delete(s.waitingOn, req.ID)
	}
	return req
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
	exited := make([]string, 0, len(s.unacked))
	for id := range s.unacked {
		exited = append(exited, id)
	}
	s.mu.Unlock()
	slices.SortFunc(tasks, func(a, b Running) int { return strings.Compare(a.ID, b.ID) })
	slices.Sort(exited)
	c.out.put(&frame{Running: &runningReply{Seq: seq, Tasks: tasks, Exited: exited}})
}
