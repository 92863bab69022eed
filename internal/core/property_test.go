package core_test

import (
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// sim drives a core with random events and checks its invariants after
// each one and the scheduling pass that follows.
type sim struct {
	*world
	rng       *rand.Rand
	pools     []*core.Pool
	seq       int             // for fresh IDs
	revokes   []coretest.Sent // revokes sent and not yet answered
	completed map[string]bool // "job/task" of completed tasks
	attempt   map[string]int  // "job/task" → last dispatched attempt
	events    []string        // what happened, for failure messages
	restores  int             // how many times the core was rebuilt
	stats     map[string]int  // how often interesting things happened
}

type simEvent struct {
	name   string
	weight int
	do     func(s *sim) string // what it did, "" when it had nothing to act on
}

var simEvents = []simEvent{
	{"add job", 4, (*sim).addJob},
	{"add tasks", 2, (*sim).addTasks},
	{"join node", 3, (*sim).joinNode},
	{"rejoin node", 3, (*sim).rejoinNode},
	{"disconnect node", 2, (*sim).disconnectNode},
	{"heartbeats", 10, (*sim).heartbeats},
	{"drain node", 2, (*sim).drainNode},
	{"start task", 18, (*sim).startTask},
	{"finish task", 25, (*sim).finishTask},
	{"stale report", 5, (*sim).staleReport},
	{"tick", 6, (*sim).tick},
	{"answer revoke", 8, (*sim).answerRevoke},
	{"cancel task", 1, (*sim).cancelTask},
	{"terminate job", 1, (*sim).terminateJob},
	{"retry task", 1, (*sim).retryTask},
	{"change priority", 1, (*sim).changePriority},
	{"delete job", 1, (*sim).deleteJob},
	{"remove node", 1, (*sim).removeNode},
	{"scale down node", 1, (*sim).scaleDown},
	{"preempt node", 1, (*sim).preemptNode},
}

func newSim(t testing.TB, seed int64) *sim {
	s := &sim{
		world:     newWorld(t),
		rng:       rand.New(rand.NewSource(seed)),
		completed: map[string]bool{},
		attempt:   map[string]int{},
		stats:     map[string]int{},
	}
	s.pools = []*core.Pool{
		coretest.Pool(s.c, "spread", 2, coretest.Prefill(1)),
		coretest.Pool(s.c, "pack", 4, coretest.Pack(), coretest.Prefill(-1)),
	}
	return s
}

func taskName(t *core.Task) string { return t.Job.ID + "/" + t.ID }

func pick[T any](s *sim, xs []T) (T, bool) {
	var zero T
	if len(xs) == 0 {
		return zero, false
	}
	return xs[s.rng.Intn(len(xs))], true
}

func (s *sim) chance(p float64) bool { return s.rng.Float64() < p }

func (s *sim) fresh(prefix string) string {
	s.seq++
	return fmt.Sprintf("%s%d", prefix, s.seq)
}

// step runs one random event, a scheduling pass, and every check.
func (s *sim) step() {
	total := 0
	for _, e := range simEvents {
		total += e.weight
	}
	r := s.rng.Intn(total)
	for _, e := range simEvents {
		if r -= e.weight; r < 0 {
			if what := e.do(s); what != "" {
				s.events = append(s.events, what)
			}
			break
		}
	}
	for _, d := range s.schedule() {
		name := taskName(d.Task)
		if last := s.attempt[name]; d.Attempt != last && d.Attempt != last+1 {
			s.failf("dispatched %s after attempt %d", d, last)
		}
		s.attempt[name] = d.Attempt
		s.stats["dispatch"]++
		if d.Task.Node != d.Node || d.Task.Attempt != d.Attempt || !isLive(d.Task.State) {
			s.failf("dispatched %s but the task is %s on %v", d, d.Task.State, d.Task.Node)
		}
	}
	s.revokes = append(s.revokes, s.fx.TakeRevoked()...)
	if bad := invariants(s.c); len(bad) > 0 {
		s.failf("invariants violated:\n  %s", strings.Join(bad, "\n  "))
	}
	for _, j := range s.c.Jobs() {
		for _, t := range j.Tasks {
			done := t.State == core.TaskCompleted
			if s.completed[taskName(t)] && !done {
				s.failf("%s left completed for %s", taskName(t), t.State)
			}
			s.completed[taskName(t)] = done
		}
	}
}

func (s *sim) failf(format string, args ...any) {
	s.t.Helper()
	recent := s.events[max(0, len(s.events)-25):]
	s.t.Fatalf("after %d events (%d restores): %s\nlast events:\n  %s",
		len(s.events), s.restores, fmt.Sprintf(format, args...), strings.Join(recent, "\n  "))
}

func (s *sim) liveTasks() []*core.Task {
	var out []*core.Task
	for _, n := range allNodes(s.c) {
		out = append(out, n.Tasks()...)
	}
	return out
}

func (s *sim) materialized() []*core.Task {
	var out []*core.Task
	for _, j := range s.c.Jobs() {
		out = append(out, sortedTasks(j)...)
	}
	return out
}

func (s *sim) activeJobs() []*core.Job {
	var out []*core.Job
	for _, j := range s.c.Jobs() {
		if j.State == core.JobActive {
			out = append(out, j)
		}
	}
	return out
}

// randomTasks is an array with random size, cap and needs; some tasks need
// more slots than the smallest node has (see TestSlotsNeverExceedNode).
func (s *sim) randomTasks() core.TaskAdd {
	slots := 1 + s.rng.Intn(3)
	opts := []coretest.TaskOpt{coretest.Retries(s.rng.Intn(4) - 1), coretest.NeedSlots(slots)}
	if s.chance(0.3) {
		opts = append(opts, coretest.NeedCores(1+s.rng.Intn(2)))
	}
	if s.chance(0.2) {
		opts = append(opts, coretest.NeedMem(int64(1+s.rng.Intn(3))<<30))
	}
	if s.chance(0.15) {
		opts = append(opts, coretest.NeedLabels("gpu", "yes"))
	}
	if s.chance(0.2) {
		ids := make([]string, 1+s.rng.Intn(5))
		for i := range ids {
			ids[i] = s.fresh("e")
		}
		return coretest.ItemsAdd(ids, opts...)
	}
	spec := fmt.Sprintf("0-%d", s.rng.Intn(40))
	if s.chance(0.3) {
		spec += fmt.Sprintf("%%%d", 1+s.rng.Intn(4))
	}
	return coretest.ArrayAdd(spec, append(opts, coretest.Prefix(s.fresh("g")+"-"))...)
}

func (s *sim) addJob() string {
	if len(s.activeJobs()) >= 12 {
		return ""
	}
	p, _ := pick(s, s.pools)
	prio, _ := pick(s, []int{-5, 0, 0, 5, 10})
	spec := core.JobSpec{ID: s.fresh("j"), PoolID: p.ID, Priority: prio}
	if s.chance(0.3) {
		// It may burst to the other pool once its own is full.
		for _, o := range s.pools {
			if o != p {
				spec.BurstPoolIDs = []string{o.ID}
			}
		}
	}
	j, _, err := s.c.CreateJobWithTasks(spec, s.randomTasks(), s.now)
	if err != nil {
		s.failf("create job: %v", err)
	}
	return fmt.Sprintf("add job %s to %s (burst %v), priority %d, %d tasks", j.ID, p.ID, spec.BurstPoolIDs, prio, j.Counts[core.TaskActive])
}

// scaleDown takes a node out as a pool resize would, with a random
// deallocation option, and sweeps the nodes that may go.
func (s *sim) scaleDown() string {
	n, ok := pick(s, allNodes(s.c))
	if !ok {
		return ""
	}
	mode, _ := pick(s, []core.Deallocation{core.DeallocRequeue, core.DeallocTerminate, core.DeallocTaskCompletion})
	gone := s.c.ScaleDown(n.Pool, []string{n.ID}, mode, s.now)
	_, left := s.c.SweepNodes(s.now)
	return fmt.Sprintf("scale down %s (%s): %d removed now, %d swept", n.ID, mode, len(gone), len(left))
}

func (s *sim) preemptNode() string {
	n, ok := pick(s, allNodes(s.c))
	if !ok || n.Preempted {
		return ""
	}
	if err := s.c.PreemptNode(n, s.now); err != nil {
		s.failf("preempt %s: %v", n.ID, err)
	}
	return "preempt " + n.ID
}

func (s *sim) addTasks() string {
	j, ok := pick(s, s.activeJobs())
	if !ok {
		return ""
	}
	g, err := s.c.AddTasks(j, s.randomTasks(), s.now)
	if err != nil {
		s.failf("add tasks: %v", err)
	}
	return fmt.Sprintf("add %d tasks to %s", g.Count(), j.ID)
}

func (s *sim) joinNode() string {
	if len(allNodes(s.c)) >= 12 {
		return ""
	}
	p, _ := pick(s, s.pools)
	var opts []coretest.NodeOpt
	if s.chance(0.6) {
		opts = append(opts, coretest.Cores(2+s.rng.Intn(7)))
	}
	if s.chance(0.5) {
		opts = append(opts, coretest.Mem(int64(2+s.rng.Intn(15))<<30))
	}
	if s.chance(0.3) {
		opts = append(opts, coretest.Labeled("gpu", "yes"))
	}
	n := coretest.Node(s.c, p, s.fresh("n"), 2+s.rng.Intn(3), append(opts, coretest.JoinedAt(s.now))...)
	return fmt.Sprintf("join %s to %s: %d slots, %d cores, %d memory, labels %v", n.ID, p.ID, n.Slots, n.Cores, n.Memory, n.Labels)
}

// rejoinNode reconnects a node whose agent remembers most of its tasks,
// sometimes one the server never gave it.
func (s *sim) rejoinNode() string {
	n, ok := pick(s, allNodes(s.c))
	if !ok {
		return ""
	}
	var known []core.AgentTask
	held := slices.Clone(n.Tasks())
	for _, t := range held {
		if s.chance(0.15) {
			continue // the agent lost it
		}
		phase := core.PhaseQueued
		// An agent may have started a task while away; the core's promotion
		// of it is not saved yet (see TestNodeJoinReconcile), which the
		// restore check would catch.
		if t.State == core.TaskRunning || s.chance(0.2) {
			phase = core.PhaseRunning
		}
		known = append(known, coretest.Known(t, phase))
	}
	ghost := core.AgentTask{JobID: "ghost", TaskID: s.fresh("t"), Attempt: 1, Phase: core.PhaseRunning}
	if s.chance(0.1) {
		known = append(known, ghost)
	}
	rec := s.rejoin(n, known...)
	for _, t := range rec.Keep {
		if !slices.Contains(held, t) {
			s.failf("rejoin of %s kept %s, which it did not hold", n.ID, taskName(t))
		}
	}
	for _, d := range rec.Drop {
		if d.JobID != "ghost" {
			s.failf("rejoin of %s dropped %v", n.ID, d)
		}
	}
	return fmt.Sprintf("rejoin %s knowing %d of %d tasks", n.ID, len(known), len(held))
}

func (s *sim) disconnectNode() string {
	var connected []*core.Node
	for _, n := range allNodes(s.c) {
		if n.Connected {
			connected = append(connected, n)
		}
	}
	n, ok := pick(s, connected)
	if !ok {
		return ""
	}
	s.c.NodeDisconnected(n, s.now)
	return "disconnect " + n.ID
}

func (s *sim) heartbeats() string {
	var quiet []string
	for _, n := range allNodes(s.c) {
		if n.Connected && s.chance(0.9) {
			s.c.Heartbeat(n, s.now)
		} else {
			quiet = append(quiet, n.ID)
		}
	}
	return fmt.Sprintf("heartbeats, quiet: %v", quiet)
}

func (s *sim) drainNode() string {
	n, ok := pick(s, allNodes(s.c))
	if !ok {
		return ""
	}
	s.c.SetDrained(n, !n.Drained)
	return fmt.Sprintf("drain %s: %v", n.ID, n.Drained)
}

func (s *sim) startTask() string {
	var assigned []*core.Task
	for _, t := range s.liveTasks() {
		if t.State == core.TaskAssigned && t.Node.Connected {
			assigned = append(assigned, t)
		}
	}
	t, ok := pick(s, assigned)
	if !ok {
		return ""
	}
	s.start(t)
	return "start " + taskName(t)
}

func (s *sim) finishTask() string {
	var live []*core.Task
	for _, t := range s.liveTasks() {
		if t.Node.Connected {
			live = append(live, t)
		}
	}
	t, ok := pick(s, live)
	if !ok {
		return ""
	}
	f := coretest.Exit(t, 0)
	switch r := s.rng.Intn(20); {
	case r < 12:
	case r < 15:
		f.ExitCode = 1 + s.rng.Intn(3)
	case r < 16:
		f.TimedOut = true
	case r < 17:
		f.Signal = 9
	case r < 18:
		f.Lost = true
	default:
		f.StartErr = "exec failed"
	}
	s.report(t, f)
	s.stats["finish "+t.State.String()]++
	return fmt.Sprintf("finish %s#%d: exit %d timeout %v signal %d lost %v start error %q -> %s",
		taskName(t), f.Attempt, f.ExitCode, f.TimedOut, f.Signal, f.Lost, f.StartErr, t.State)
}

// staleReport sends a report the core must ignore and checks that it did.
func (s *sim) staleReport() string {
	t, ok := pick(s, s.materialized())
	if !ok {
		return ""
	}
	from, f := t.Node, coretest.Exit(t, 0)
	switch {
	case t.Attempt >= 2 && s.chance(0.5):
		f.Attempt--
		if from == nil {
			from, _ = pick(s, allNodes(s.c))
		}
	case t.Node != nil:
		for _, n := range allNodes(s.c) {
			if n != t.Node {
				from = n
			}
		}
		if from == t.Node {
			return ""
		}
	case t.State == core.TaskCompleted && t.Attempt >= 1:
		from = s.c.Node(t.Cur.NodeID)
	default:
		return ""
	}
	if from == nil {
		return ""
	}
	before, calls := dump(s.c), len(s.fx.Calls)
	s.stats["stale report"]++
	s.c.TaskFinished(from, f, s.now)
	s.c.TaskStarted(from, f.JobID, f.TaskID, f.Attempt, s.now)
	if after := dump(s.c); after != before || len(s.fx.Calls) != calls {
		s.failf("stale report of %s#%d from %s changed the core:\n%s", taskName(t), f.Attempt, from.ID, diffLines(before, after))
	}
	return fmt.Sprintf("stale report %s#%d from %s", taskName(t), f.Attempt, from.ID)
}

func (s *sim) tick() string {
	s.advance(time.Duration(s.rng.Intn(15_000)) * time.Millisecond)
	var before []string
	for _, n := range allNodes(s.c) {
		if n.State() != core.NodeUnreachable {
			before = append(before, n.ID)
		}
	}
	s.c.Tick(s.now)
	var lost []string
	for _, id := range before {
		if s.c.Node(id).State() == core.NodeUnreachable {
			lost = append(lost, id)
			s.stats["node lost"]++
		}
	}
	return fmt.Sprintf("tick at +%v, lost %v", s.now.Sub(coretest.T0), lost)
}

func (s *sim) answerRevoke() string {
	if len(s.revokes) == 0 {
		return ""
	}
	i := s.rng.Intn(len(s.revokes))
	r := s.revokes[i]
	s.revokes = slices.Delete(s.revokes, i, i+1)
	// An agent can only give back a task it has not started.
	yes := r.Task.State == core.TaskAssigned && r.Task.Attempt == r.Attempt && s.chance(0.7)
	s.c.RevokeAnswered(r.Node, r.Task.Job.ID, r.Task.ID, r.Attempt, yes)
	s.stats[fmt.Sprintf("revoke answered %v", yes)]++
	return fmt.Sprintf("answer revoke %s: %v -> %s", r, yes, r.Task.State)
}

func (s *sim) cancelTask() string {
	j, ok := pick(s, s.activeJobs())
	if !ok {
		return ""
	}
	g, _ := pick(s, j.Groups)
	id := g.IDAt(s.rng.Intn(g.Count()))
	if _, err := s.c.CancelTask(j, id, s.now); err != nil {
		return fmt.Sprintf("cancel %s/%s: %v", j.ID, id, err)
	}
	return fmt.Sprintf("cancel %s/%s", j.ID, id)
}

func (s *sim) terminateJob() string {
	j, ok := pick(s, s.activeJobs())
	if !ok || s.chance(0.5) {
		return ""
	}
	s.c.TerminateJob(j, "test", s.now)
	return "terminate " + j.ID
}

func (s *sim) retryTask() string {
	var done []*core.Task
	for _, t := range s.materialized() {
		if t.State == core.TaskCompleted && t.Job.State == core.JobActive {
			done = append(done, t)
		}
	}
	t, ok := pick(s, done)
	if !ok {
		return ""
	}
	if err := s.c.RetryTask(t, s.now); err != nil {
		s.failf("retry %s: %v", taskName(t), err)
	}
	delete(s.completed, taskName(t)) // an explicit retry is the one way back
	return "retry " + taskName(t)
}

func (s *sim) changePriority() string {
	j, ok := pick(s, s.activeJobs())
	if !ok {
		return ""
	}
	prio, _ := pick(s, []int{-5, 0, 5, 10})
	if err := s.c.SetJobPriority(j, prio); err != nil {
		s.failf("priority: %v", err)
	}
	return fmt.Sprintf("priority of %s: %d", j.ID, prio)
}

func (s *sim) deleteJob() string {
	j, ok := pick(s, s.c.Jobs())
	if !ok || s.chance(0.5) {
		return ""
	}
	s.c.DeleteJob(j, s.now)
	if s.c.Job(j.ID) != nil || slices.Contains(s.c.Jobs(), j) {
		s.failf("deleted job %s is still listed", j.ID)
	}
	for _, t := range s.liveTasks() {
		if t.Job == j {
			s.failf("deleted job's task %s is still on %s", taskName(t), t.Node.ID)
		}
	}
	return "delete " + j.ID
}

func (s *sim) removeNode() string {
	var idle []*core.Node
	for _, n := range allNodes(s.c) {
		if len(n.Tasks()) == 0 && (n.Drained || !n.Connected) {
			idle = append(idle, n)
		}
	}
	n, ok := pick(s, idle)
	if !ok {
		return ""
	}
	if err := s.c.RemoveNode(n); err != nil {
		s.failf("remove %s: %v", n.ID, err)
	}
	return "remove " + n.ID
}

// restore rebuilds the core from its committed records, checks it equals
// the running one, reconnects the agents that were connected and carries
// on with the rebuilt core.
func (s *sim) restore() {
	r := restored(s.t, s.world)
	if want, got := dump(s.c), dump(r.c); want != got {
		s.failf("restored core differs:\n%s", diffLines(want, got))
	}
	// The store hands task records over in batches, in no particular
	// order, and reuses a batch's memory once it was taken.
	snap := s.fx.Snapshot()
	rng := rand.New(rand.NewSource(int64(s.restores)))
	rng.Shuffle(len(snap.Tasks), func(i, j int) { snap.Tasks[i], snap.Tasks[j] = snap.Tasks[j], snap.Tasks[i] })
	rs, err := core.NewRestorer(core.Config{}, s.fx, snap, s.now)
	if err != nil {
		s.failf("restore in batches: %v", err)
	}
	batch := make([]core.TaskRecord, 0, 8)
	for rest := snap.Tasks; len(rest) > 0; {
		n := min(1+rng.Intn(cap(batch)), len(rest))
		batch = append(batch[:0], rest[:n]...)
		rest = rest[n:]
		if err := rs.AddTasks(batch); err != nil {
			s.failf("restore in batches: %v", err)
		}
		clear(batch)
	}
	shuffled := rs.Core()
	if want, got := dump(r.c)+orderDump(r.c), dump(shuffled)+orderDump(shuffled); want != got {
		s.failf("restored from shuffled batches of records, the core differs:\n%s", diffLines(want, got))
	}
	for _, n := range allNodes(s.c) {
		if !n.Connected {
			continue
		}
		rn := r.c.Node(n.ID)
		var known []core.AgentTask
		for _, t := range rn.Tasks() {
			phase := core.PhaseQueued
			if t.State == core.TaskRunning {
				phase = core.PhaseRunning
			}
			known = append(known, coretest.Known(t, phase))
		}
		if rec := r.rejoin(rn, known...); len(rec.Keep) != len(known) {
			s.failf("after restore %s kept %d of %d tasks", n.ID, len(rec.Keep), len(known))
		}
	}
	s.world = r
	for i, p := range s.pools {
		s.pools[i] = r.c.Pool(p.ID)
	}
	s.revokes = nil
	s.restores++
	s.events = append(s.events, "restore")
}

func runSim(t testing.TB, seed int64, events, restoreEvery int) *sim {
	s := newSim(t, seed)
	for i := 1; i <= events; i++ {
		s.step()
		if restoreEvery > 0 && i%restoreEvery == 0 {
			s.restore()
		}
	}
	return s
}

func TestPropertyRandomEvents(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			s := runSim(t, seed, 2500, 400)
			// Guard against a generator that stopped exercising the core.
			for _, what := range []string{"dispatch", "finish completed", "finish active", "revoke answered true",
				"revoke answered false", "node lost", "stale report"} {
				if s.stats[what] < 5 {
					t.Errorf("weak run: %q happened %d times", what, s.stats[what])
				}
			}
			if s.restores == 0 {
				t.Error("weak run: never restored")
			}
			t.Logf("%d jobs; %v", len(s.c.Jobs()), s.stats)
		})
	}
}

// TestDeterminism runs the same random events twice: the core must make the
// same calls in the same order (no map-order dependence).
func TestDeterminism(t *testing.T) {
	a, b := runSim(t, 42, 800, 0), runSim(t, 42, 800, 0)
	if len(a.fx.Calls) != len(b.fx.Calls) {
		t.Fatalf("%d effects, then %d", len(a.fx.Calls), len(b.fx.Calls))
	}
	for i := range a.fx.Calls {
		if a.fx.Calls[i] != b.fx.Calls[i] {
			t.Fatalf("effect %d: %q, then %q", i, a.fx.Calls[i], b.fx.Calls[i])
		}
	}
}
