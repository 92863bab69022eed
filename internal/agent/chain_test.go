package agent

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/proto"
	"github.com/lotehq/lote/internal/spawner"
)

// chainOf makes an agent holding running task p (one slot) with f chained
// on it and g on f.
func chainOf() (a *Agent, p, f, g *task) {
	tpl := &proto.Template{}
	p = &task{id: "j/p/1", tpl: tpl, slots: 1, held: 1, running: true}
	f = &task{id: "j/f/1", tpl: tpl, slots: 1, running: true, after: p.id, depth: 1}
	g = &task{id: "j/g/1", tpl: tpl, slots: 1, running: true, after: f.id, depth: 2}
	p.follower, f.follower = f, g
	a = &Agent{tasks: map[string]*task{p.id: p, f.id: f, g.id: g}, used: 1}
	return a, p, f, g
}

// TestChainInOrder: the predecessor's exit names its follower, which takes
// its slot and moves up the chain.
func TestChainInOrder(t *testing.T) {
	a, p, f, g := chainOf()
	a.chainEndedLocked(p, spawner.Exit{ID: p.id, PID: 10, Next: f.id})
	a.releaseLocked(p)
	if f.held != 1 || f.after != "" || f.depth != 0 || g.depth != 1 || a.used != 1 {
		t.Errorf("after p's exit: f held %d after %q depth %d, g depth %d, used %d; want f holding the slot at depth 0", f.held, f.after, f.depth, g.depth, a.used)
	}
	if len(a.started) != 1 || a.started[0].Ref != f.ref {
		t.Errorf("started = %v, want f's start", a.started)
	}
}

// TestChainExitOvertakes: a follower that ran can report its end before
// its predecessor's exit arrives. It then holds the slot itself, and the
// predecessor's late exit frees nothing twice.
func TestChainExitOvertakes(t *testing.T) {
	a, p, f, g := chainOf()
	a.chainEndedLocked(f, spawner.Exit{ID: f.id, PID: 11, Next: g.id})
	if p.held != 0 || !p.ended || f.held != 0 || g.held != 1 || g.after != "" {
		t.Fatalf("after f's early exit: p held %d ended %v, f held %d, g held %d after %q; want the slot passed from p through f to g",
			p.held, p.ended, f.held, g.held, g.after)
	}
	a.releaseLocked(f)
	a.chainEndedLocked(p, spawner.Exit{ID: p.id, PID: 10, Next: f.id})
	a.releaseLocked(p)
	if a.used != 1 {
		t.Errorf("used = %d, want 1 (g)", a.used)
	}
	a.offerLocked(p)
	for _, b := range a.bare {
		if b == p {
			t.Error("a task that has ended was offered for chaining")
		}
	}
}

// TestChainDropped: an exit without Next sends the whole chain behind it
// back to the queue, in order.
func TestChainDropped(t *testing.T) {
	a, p, f, g := chainOf()
	a.chainEndedLocked(p, spawner.Exit{ID: p.id, PID: 10})
	a.releaseLocked(p)
	if len(a.queue) != 2 || a.queue[0] != f || a.queue[1] != g || f.running || g.running || a.used != 0 {
		t.Errorf("queue = %v (f running %v, g running %v), used %d; want f then g queued and nothing held", a.queue, f.running, g.running, a.used)
	}
}

// TestChainNeverStarted: a chained task killed while waiting held no
// slots, and its predecessor may take another follower.
func TestChainNeverStarted(t *testing.T) {
	a, p, f, g := chainOf()
	a.chainEndedLocked(f, spawner.Exit{ID: f.id, Killed: true, ExitCode: -1})
	if p.held != 1 || f.held != 0 || p.follower != nil || p.ended {
		t.Errorf("p held %d follower %v ended %v, f held %d; want p unchanged and free to chain on", p.held, p.follower, p.ended, f.held)
	}
	if len(a.queue) != 1 || a.queue[0] != g {
		t.Errorf("queue = %v, want g back (the spawner dropped it with f)", a.queue)
	}
	if len(a.bare) != 1 || a.bare[0] != p {
		t.Errorf("bare = %v, want p offered again", a.bare)
	}
}

// TestAdoptReportsUnrecordedSpawn: a task the agent started but the
// (restarted) spawner neither runs nor holds an exit of was lost between
// the fork and the journal; adopt reports it lost and gives back its slot,
// instead of waiting forever for its exit.
func TestAdoptReportsUnrecordedSpawn(t *testing.T) {
	dir := t.TempDir()
	ctx, sp := serveSpawner(t, dir)
	a, p, f, g := chainOf()
	a.cfg.Dir, a.cfg.Slots, a.log = dir, 1, slog.New(slog.NewTextHandler(io.Discard, nil))
	a.jobDirs = map[string]bool{}
	for i, tk := range []*task{p, f, g} {
		tk.ref = proto.Ref{Job: "j", Task: strconv.Itoa(i), Attempt: 1}
		tk.tpl = &proto.Template{Command: []string{"true"}}
	}
	if err := a.adopt(ctx, sp); err != nil {
		t.Fatal(err)
	}
	if len(a.unsent) != 1 || a.unsent[0].id != p.id || !a.unsent[0].fin.Lost {
		t.Fatalf("reports = %+v, want p's, lost", a.unsent)
	}
	// Its slot went to the first of its chain, queued again and started.
	if a.tasks[p.id] != nil || a.used != 1 || !f.running || f.held != 1 || len(a.queue) != 1 || a.queue[0] != g {
		t.Errorf("p known %v, used %d, f running %v holding %d, queue %v; want p gone, f started in its slot, g queued",
			a.tasks[p.id] != nil, a.used, f.running, f.held, a.queue)
	}
}

// TestChainDepthFollowsRunTime: tasks of a few milliseconds are chained
// four deep per slot, longer ones two deep.
func TestChainDepthFollowsRunTime(t *testing.T) {
	tpl := &proto.Template{}
	for _, tc := range []struct {
		run  time.Duration
		want int // the deepest task that may take a follower, plus one
	}{
		{time.Millisecond, chainDepthShort},
		{50 * time.Millisecond, chainDepth},
	} {
		a := &Agent{runAvg: tc.run}
		for depth := range chainDepthShort + 1 {
			a.offerLocked(&task{tpl: tpl, depth: depth})
		}
		if len(a.bare) != tc.want {
			t.Errorf("tasks of %v: %d of depths 0-%d offered, want %d", tc.run, len(a.bare), chainDepthShort, tc.want)
		}
	}
}

// serveSpawner runs a spawner with its socket and state in dir, and
// connects to it; both end with the test.
func serveSpawner(t *testing.T, dir string) (context.Context, *spawner.Client) {
	t.Helper()
	sock := filepath.Join(dir, "s.sock")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- spawner.Serve(ctx, spawner.ServeConfig{SocketPath: sock, StateDir: filepath.Join(dir, "state")})
	}()
	t.Cleanup(func() { cancel(); <-done })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		sp, err := spawner.Dial(ctx, sock)
		if err == nil {
			t.Cleanup(func() { sp.Close() })
			return ctx, sp
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
}

// TestAdoptEndsUnrecordedNodeTask: a start task's attempt sent to a
// spawner that died before recording it ends lost when the new spawner is
// adopted, so that its waiter retries it instead of waiting forever; one
// the spawner runs is left to run.
func TestAdoptEndsUnrecordedNodeTask(t *testing.T) {
	dir := t.TempDir()
	ctx, sp := serveSpawner(t, dir)
	a := &Agent{tasks: map[string]*task{}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := sp.Spawn(spawner.SpawnRequest{ID: "startup-2-2", Argv: []string{"sleep", "60"}, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	lost, runs := make(chan spawner.Exit, 1), make(chan spawner.Exit, 1)
	a.start.wait = map[string]chan spawner.Exit{"startup-1-1": lost, "startup-2-2": runs}
	if err := a.adopt(ctx, sp); err != nil {
		t.Fatal(err)
	}
	select {
	case ex := <-lost:
		if !ex.Lost || ex.ID != "startup-1-1" || succeeded(ex) {
			t.Errorf("exit %+v, want startup-1-1 lost", ex)
		}
	default:
		t.Fatal("the unrecorded attempt still waits for an exit")
	}
	if len(runs) != 0 || a.start.wait["startup-2-2"] == nil || len(a.start.wait) != 1 {
		t.Errorf("the running attempt: %d exits, waits %v; want it still waiting alone", len(runs), a.start.wait)
	}
	if err := sp.Kill("startup-2-2", 0); err != nil {
		t.Fatal(err)
	}
}
