package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/proto"
	"github.com/lotehq/lote/internal/store"
)

// engine owns the core and the group commit. Handlers lock mu, call core
// handlers (which record effects into the open batch), unlock and kick the
// committer. The committer runs a scheduling pass, seals the batch, applies it
// in one transaction, and only then releases the batch's effects: replies,
// dispatches, revokes, kills and report acknowledgements. While one batch
// commits the next one fills, so the commit rate adapts to the load.
type engine struct {
	mu   sync.Mutex
	core *core.Core
	open *batch // guarded by mu
	seq  uint64 // sequence of the open batch, guarded by mu

	store store.Store
	log   *slog.Logger
	now   func() time.Time

	kickc     chan struct{} // a change someone waits on: commit after minInterval
	reportc   chan struct{} // agent reports alone: commit after reportInterval
	committed atomic.Uint64
	waitMu    sync.Mutex
	waitc     chan struct{} // closed and replaced at every commit
	// failed holds the last commit error (wrapping errStoreUnavailable)
	// while the store refuses commits; nil once a commit succeeds again.
	failed atomic.Pointer[error]
	// pending is a sealed batch whose commit failed: the committer applies
	// it again, alone and before anything newer, until it succeeds; its
	// effects stay held until then. Only the committer touches it.
	pending *batch
	// spare is the last batch released: the next batch reuses its maps,
	// which would otherwise grow again from nothing at every commit. Only
	// the committer touches it.
	spare *batch

	sessions sync.Map                    // node key → *session
	idem     map[string]store.Idempotent // guarded by mu
	// dataOwners maps a data container to its owner, guarded by mu.
	dataOwners map[string]dataOwner
	stats      commitStats

	events    *hub
	obs       observer
	nodeState map[*core.Node]core.NodeState // last published, guarded by mu

	// minInterval spaces commits: a batch waits at most this long for
	// company, which bounds the fixed cost of transactions and fsyncs under
	// load while adding little latency.
	minInterval time.Duration
	// reportInterval spaces commits that carry only agent reports (tasks
	// started and finished), which no request waits on. Under a stream of
	// short tasks these are nearly every commit, and waiting longer for
	// company halved the store's CPU per task (docs/benchmarks.md).
	reportInterval time.Duration

	// Completed jobs are purged past purgeAge or beyond purgeTasks tasks
	// (0 = no limit): the bound on memory for finished work.
	purgeAge   time.Duration
	purgeTasks int
	lastCommit time.Time
}

type commitStats struct {
	batches atomic.Uint64
	tasks   atomic.Uint64
}

// batch collects one group commit: the objects to save (deduplicated, turned
// into records when sealed) and the effects to release after commit.
type batch struct {
	seq     uint64
	pools   map[*core.Pool]struct{}
	nodes   map[*core.Node]struct{}
	jobs    map[*core.Job]struct{}
	groups  map[*core.Group]struct{}
	cursors map[*core.Group]struct{}
	tasks   map[*core.Task]struct{}
	logs    []core.LogRecord
	meta    map[string]string
	deleted struct {
		jobs         []store.DeletedJob
		pools, nodes []string
	}
	idem   []store.Idempotent
	tokens []store.Token
	owners []store.DataOwner

	out    map[*core.Node]*outFrame
	acks   map[*session]uint64
	events []Event

	sealed store.Batch
}

type outFrame struct {
	assign  []*core.Task
	revoke  []proto.Ref
	kill    []proto.Ref
	release []proto.JobRelease
}

func newBatch(seq uint64) *batch {
	return &batch{
		seq:     seq,
		pools:   map[*core.Pool]struct{}{},
		nodes:   map[*core.Node]struct{}{},
		jobs:    map[*core.Job]struct{}{},
		groups:  map[*core.Group]struct{}{},
		cursors: map[*core.Group]struct{}{},
		tasks:   map[*core.Task]struct{}{},
		out:     map[*core.Node]*outFrame{},
		acks:    map[*session]uint64{},
	}
}

// nextBatch is newBatch with the spare batch's maps, emptied.
func (e *engine) nextBatch(seq uint64) *batch {
	old := e.spare
	if old == nil {
		return newBatch(seq)
	}
	e.spare = nil
	return &batch{
		seq:     seq,
		pools:   recycled(old.pools),
		nodes:   recycled(old.nodes),
		jobs:    recycled(old.jobs),
		groups:  recycled(old.groups),
		cursors: recycled(old.cursors),
		tasks:   recycled(old.tasks),
		out:     recycled(old.out),
		acks:    recycled(old.acks),
	}
}

// recycled empties m for reuse, or returns a new map when m holds more than
// is worth keeping (clearing a map costs its capacity, at every commit).
func recycled[K comparable, V any](m map[K]V) map[K]V {
	if len(m) > 1<<14 {
		return map[K]V{}
	}
	clear(m)
	return m
}

// The engine is the core's Effects: everything lands in the open batch.
func (e *engine) SavePool(p *core.Pool)    { e.open.pools[p] = struct{}{} }
func (e *engine) SaveNode(n *core.Node)    { e.open.nodes[n] = struct{}{} }
func (e *engine) SaveJob(j *core.Job)      { e.open.jobs[j] = struct{}{} }
func (e *engine) SaveGroup(g *core.Group)  { e.open.groups[g] = struct{}{} }
func (e *engine) SaveCursor(g *core.Group) { e.open.cursors[g] = struct{}{} }
func (e *engine) SaveTask(t *core.Task)    { e.open.tasks[t] = struct{}{} }
func (e *engine) SaveLog(l core.LogRecord) { e.open.logs = append(e.open.logs, l) }
func (e *engine) Dispatch(n *core.Node, t *core.Task) {
	f := e.frame(n)
	f.assign = append(f.assign, t)
}
func (e *engine) Revoke(n *core.Node, t *core.Task) {
	f := e.frame(n)
	f.revoke = append(f.revoke, proto.Ref{Job: t.Job.ID, Task: t.ID, Attempt: t.Attempt})
}
func (e *engine) Kill(n *core.Node, job, task string, attempt int) {
	f := e.frame(n)
	f.kill = append(f.kill, proto.Ref{Job: job, Task: task, Attempt: attempt})
}

func (e *engine) ReleaseJob(n *core.Node, j *core.Job) {
	st := j.ReleaseTask
	f := e.frame(n)
	f.release = append(f.release, proto.JobRelease{Job: j.ID, Task: nodeTaskOut(st)})
}

// DeleteJob records the deletion with the range of the job's task numbers,
// where the store finds their rows.
func (e *engine) DeleteJob(j *core.Job) {
	d := store.DeletedJob{ID: j.ID}
	for _, t := range j.Tasks {
		if d.LastTask == 0 || t.Num < d.FirstTask {
			d.FirstTask = t.Num
		}
		d.LastTask = max(d.LastTask, t.Num)
	}
	e.open.deleted.jobs = append(e.open.deleted.jobs, d)
}
func (e *engine) DeletePool(p *core.Pool) {
	delete(e.open.pools, p)
	e.open.deleted.pools = append(e.open.deleted.pools, p.ID)
}
func (e *engine) DeleteNode(n *core.Node) {
	delete(e.nodeState, n)
	delete(e.open.nodes, n)
	// Its pending frames still go out: a node removed by a scale-down must
	// hear the kills of its tasks before its stream is closed.
	e.open.deleted.nodes = append(e.open.deleted.nodes, n.ID)
}

func (e *engine) frame(n *core.Node) *outFrame {
	f := e.open.out[n]
	if f == nil {
		f = &outFrame{}
		e.open.out[n] = f
	}
	return f
}

// do runs fn on the core under the lock and returns the sequence of the batch
// its changes landed in; wait(seq) blocks until that batch is durable.
func (e *engine) do(fn func(c *core.Core, now time.Time)) uint64 {
	e.mu.Lock()
	fn(e.core, e.now())
	seq := e.seq
	e.mu.Unlock()
	e.kick()
	return seq
}

// setMeta records a server setting in the open batch.
func (e *engine) setMeta(k, v string) uint64 {
	e.mu.Lock()
	if e.open.meta == nil {
		e.open.meta = map[string]string{}
	}
	e.open.meta[k] = v
	seq := e.seq
	e.mu.Unlock()
	e.kick()
	return seq
}

func (e *engine) kick() {
	select {
	case e.kickc <- struct{}{}:
	default:
	}
}

// kickReports is kick for changes that only agent reports made.
func (e *engine) kickReports() {
	select {
	case e.reportc <- struct{}{}:
	default:
	}
}

// wait blocks until batch seq is committed, the store failed, or ctx ends.
func (e *engine) wait(ctx context.Context, seq uint64) error {
	for {
		e.waitMu.Lock()
		ch := e.waitc
		e.waitMu.Unlock()
		if e.committed.Load() >= seq {
			return nil
		}
		if errp := e.failed.Load(); errp != nil {
			return *errp
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// errStoreUnavailable marks the answer to changes while the store refuses
// commits (a full disk, for instance): 503, try again later.
var errStoreUnavailable = errors.New("store unavailable")

// Retry delays of a failed commit.
const (
	minCommitRetry = 100 * time.Millisecond
	maxCommitRetry = 5 * time.Second
)

// run is the committer loop. A failed commit does not stop it: the batch is
// applied again after a growing delay until the store takes it (the disk
// was full and has room again), while changes are answered 503. Nothing of
// the batch is released before it commits, and no later batch commits
// before it, so the store only ever moves from one committed state to the
// next.
func (e *engine) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	retry := time.Duration(0)
	for {
		if retry > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(retry):
			}
		} else {
			e.waitForWork(ctx, tick)
			if ctx.Err() != nil {
				return
			}
		}
		// The commit itself is not cancelled: a batch is applied whole.
		if err := e.commitOnce(context.Background()); err != nil {
			if e.failed.Load() == nil {
				e.log.Error("store commit failed; refusing changes and retrying", "err", err)
			}
			err = fmt.Errorf("%w: %w", errStoreUnavailable, err)
			e.failed.Store(&err)
			e.notify()
			retry = min(max(2*retry, minCommitRetry), maxCommitRetry)
			continue
		}
		if retry > 0 {
			e.log.Info("store commits again")
			e.failed.Store(nil)
			retry = 0
		}
	}
}

// waitForWork blocks until the committer is kicked or ticks (running the
// core's timers then), or ctx ends.
func (e *engine) waitForWork(ctx context.Context, tick *time.Ticker) {
	select {
	case <-ctx.Done():
		return
	case <-e.kickc:
		e.space(ctx, e.minInterval)
	case <-e.reportc:
		// Waiting for company is pointless once the batch has plenty.
		e.mu.Lock()
		crowded := len(e.open.tasks) >= crowdedBatch
		e.mu.Unlock()
		if crowded {
			e.space(ctx, e.minInterval)
		} else if wait := e.reportInterval - time.Since(e.lastCommit); wait > 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			select {
			case <-t.C:
			case <-e.kickc:
				e.space(ctx, e.minInterval)
			case <-ctx.Done():
			}
		}
	case <-tick.C:
		e.mu.Lock()
		lost := e.core.Tick(e.now())
		purged := e.core.Purge(e.now(), e.purgeAge, e.purgeTasks)
		e.mu.Unlock()
		if len(purged) > 0 {
			e.log.Info("purged completed jobs", "jobs", len(purged), "first", purged[0])
		}
		for _, n := range lost {
			if sess := e.session(n.ID); sess != nil {
				sess.cancel()
			}
		}
	}
}

// crowdedBatch is the number of changed tasks from which a batch of reports
// commits without waiting reportInterval for more.
const crowdedBatch = 256

// space waits until at least interval has passed since the last commit.
func (e *engine) space(ctx context.Context, interval time.Duration) {
	wait := interval - time.Since(e.lastCommit)
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// commitOnce seals the open batch (or takes the pending one that failed
// before), applies it and releases its effects.
func (e *engine) commitOnce(ctx context.Context) error {
	e.lastCommit = time.Now()
	b := e.pending
	if b == nil {
		e.mu.Lock()
		t0 := time.Now()
		e.core.Schedule(e.now())
		e.obs.scheduled(time.Since(t0))
		b = e.open
		e.seal(b)
		e.seq++
		e.open = e.nextBatch(e.seq)
		e.mu.Unlock()
	}

	if !b.sealed.Empty() {
		t0 := time.Now()
		if err := e.store.Apply(ctx, &b.sealed); err != nil {
			e.pending = b
			return fmt.Errorf("committing batch %d: %w", b.seq, err)
		}
		e.pending = nil
		e.obs.committed(time.Since(t0), &b.sealed)
		e.stats.batches.Add(1)
		e.stats.tasks.Add(uint64(len(b.sealed.Tasks)))
	}
	// Events first: an API call that waited for this commit must find
	// its events in the stream when it returns.
	e.events.publish(b.events)
	e.committed.Store(b.seq)
	e.notify()
	e.release(b)
	e.spare = b
	return nil
}

func (e *engine) notify() {
	e.waitMu.Lock()
	close(e.waitc)
	e.waitc = make(chan struct{})
	e.waitMu.Unlock()
}

// seal turns the batch's objects into records and its dispatches into
// frames, under the core lock, so the commit and release read nothing the
// core may change.
func (e *engine) seal(b *batch) {
	s := &b.sealed
	for p := range b.pools {
		s.Pools = append(s.Pools, p.Record())
	}
	for n := range b.nodes {
		s.Nodes = append(s.Nodes, n.Record())
	}
	// Objects of a job deleted in this batch are not saved: the deletion
	// runs first and would otherwise be undone.
	for j := range b.jobs {
		if !j.Deleted() {
			s.Jobs = append(s.Jobs, j.Record())
		}
	}
	for g := range b.groups {
		if !g.Job.Deleted() {
			s.Groups = append(s.Groups, g.Record())
		}
		delete(b.cursors, g)
	}
	for g := range b.cursors {
		if !g.Job.Deleted() {
			s.Cursors = append(s.Cursors, store.Cursor{JobID: g.Job.ID, Seq: g.Seq, Cursor: g.Cursor()})
		}
	}
	now := e.now()
	s.Tasks = make([]core.TaskRecord, 0, len(b.tasks))
	b.events = slices.Grow(b.events, len(b.tasks)+len(b.jobs))
	for t := range b.tasks {
		if !t.Job.Deleted() {
			s.Tasks = append(s.Tasks, t.Record())
			b.events = append(b.events, taskEvent(t, now))
		}
	}
	for j := range b.jobs {
		b.events = append(b.events, jobEvent(j, now))
	}
	b.events = e.nodeEvents(b.events, now)
	for _, l := range b.logs {
		if j := e.core.Job(l.JobID); j != nil && !j.Deleted() {
			s.Logs = append(s.Logs, l)
		}
	}
	s.Meta = b.meta
	s.DeletedJobs, s.DeletedPools, s.DeletedNodes = b.deleted.jobs, b.deleted.pools, b.deleted.nodes
	s.Idempotency = b.idem
	s.Tokens = b.tokens
	s.DataOwners = b.owners
	for n, f := range b.out {
		sess := e.session(n.ID)
		if sess == nil {
			// Not connected: a reconnect reconciles (resends assigned tasks).
			delete(b.out, n)
			continue
		}
		sess.stage(f)
	}
}

// nodeEvents adds an event for every node whose state changed since the
// last batch (idle and running follow from tasks, so nodes are compared
// rather than tracked at each change).
func (e *engine) nodeEvents(evs []Event, now time.Time) []Event {
	for _, p := range e.core.Pools() {
		for _, n := range p.SortedNodes() {
			st := n.State()
			if old, ok := e.nodeState[n]; !ok || old != st {
				e.nodeState[n] = st
				evs = append(evs, nodeEvent(n, now))
			}
		}
	}
	return evs
}

// release hands the committed batch's frames to the agent sessions.
func (e *engine) release(b *batch) {
	for n := range b.out {
		if sess := e.session(n.ID); sess != nil {
			sess.flushStaged(b.seq)
		}
	}
	for sess, ack := range b.acks {
		sess.ack(ack)
	}
}

// observer watches the engine for metrics; the default does nothing.
type observer interface {
	// scheduled reports how long a scheduling pass took.
	scheduled(d time.Duration)
	// committed reports a batch durably applied and how long it took.
	committed(d time.Duration, b *store.Batch)
}

type noObserver struct{}

func (noObserver) scheduled(time.Duration)               {}
func (noObserver) committed(time.Duration, *store.Batch) {}

func (e *engine) session(nodeID string) *session {
	v, ok := e.sessions.Load(lower(nodeID))
	if !ok {
		return nil
	}
	return v.(*session)
}
