package core_test

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// world drives one core synchronously, as the server's engine does: each
// step runs a handler, then a scheduling pass, then commits the batch.
type world struct {
	t   testing.TB
	c   *core.Core
	fx  *coretest.Effects
	now time.Time
}

func newWorld(t testing.TB) *world {
	c, fx := coretest.NewCore(core.Config{})
	return &world{t: t, c: c, fx: fx, now: coretest.T0}
}

// schedule runs a pass, commits the batch and returns the dispatches made
// since the last call.
func (w *world) schedule() []coretest.Sent {
	w.c.Schedule(w.now)
	w.fx.Commit()
	return w.fx.TakeDispatched()
}

func (w *world) advance(d time.Duration) { w.now = w.now.Add(d) }

// start reports the current attempt of each task as started.
func (w *world) start(ts ...*core.Task) {
	w.t.Helper()
	for _, t := range ts {
		if t.Node == nil {
			w.t.Fatalf("start %s/%s: task is %s, on no node", t.Job.ID, t.ID, t.State)
		}
		w.c.TaskStarted(t.Node, t.Job.ID, t.ID, t.Attempt, w.now)
	}
}

// finish reports that t's current attempt exited with code.
func (w *world) finish(t *core.Task, code int) {
	w.t.Helper()
	w.report(t, coretest.Exit(t, code))
}

// report sends f from the node t is on.
func (w *world) report(t *core.Task, f core.Finish) {
	w.t.Helper()
	if t.Node == nil {
		w.t.Fatalf("report on %s/%s: task is %s, on no node", t.Job.ID, t.ID, t.State)
	}
	w.c.TaskFinished(t.Node, f, w.now)
}

// task finds a materialized task.
func (w *world) task(j *core.Job, id string) *core.Task {
	w.t.Helper()
	t, _, _, ok := w.c.FindTask(j, id)
	if !ok || t == nil {
		w.t.Fatalf("task %s/%s was never dispatched", j.ID, id)
	}
	return t
}

// runAll dispatches, starts and finishes tasks until nothing is live or
// waiting, finishing each attempt with exit(task, attempt).
func (w *world) runAll(exit func(*core.Task) int) {
	w.t.Helper()
	for range 100_000 {
		w.schedule()
		var live []*core.Task
		for _, n := range allNodes(w.c) {
			live = append(live, n.Tasks()...)
		}
		if len(live) == 0 {
			return
		}
		slices.SortFunc(live, byTaskID)
		w.start(live...)
		for _, t := range live {
			w.finish(t, exit(t))
		}
	}
	w.t.Fatal("runAll: tasks still live after 100000 rounds")
}

func byTaskID(a, b *core.Task) int {
	return cmp.Or(cmp.Compare(a.Job.ID, b.Job.ID), cmp.Compare(a.ID, b.ID))
}

// allNodes lists every node of every pool, by pool then ID.
func allNodes(c *core.Core) []*core.Node {
	var out []*core.Node
	for _, p := range c.Pools() {
		out = append(out, p.SortedNodes()...)
	}
	return out
}

// sortedTasks lists a job's materialized tasks by ID.
func sortedTasks(j *core.Job) []*core.Task {
	out := make([]*core.Task, 0, len(j.Tasks))
	for _, t := range j.Tasks {
		out = append(out, t)
	}
	slices.SortFunc(out, byTaskID)
	return out
}

// sentIDs names dispatches as "node<-job/task#attempt".
func sentIDs(s []coretest.Sent) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.String()
	}
	return out
}

// jobsOf names the job of each dispatch.
func jobsOf(s []coretest.Sent) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.Task.Job.ID
	}
	return out
}

func isLive(s core.TaskState) bool {
	return s == core.TaskAssigned || s == core.TaskPreparing || s == core.TaskRunning
}

// dump describes a core's durable and derived state line by line, in a
// stable order, leaving out what is not restored (connectivity, pending
// reasons, revokes in flight, the order of ready lists).
func dump(c *core.Core) string {
	var b strings.Builder
	for _, p := range c.Pools() {
		fmt.Fprintf(&b, "pool %s slots=%d fill=%s prefill=%d\n", p.ID, p.SlotsPerNode, p.Fill, p.Prefill)
		for _, n := range p.SortedNodes() {
			slots, cores, mem := core.NodeLoad(n)
			var ids []string
			for _, t := range n.Tasks() {
				ids = append(ids, t.Job.ID+"/"+t.ID)
			}
			slices.Sort(ids)
			fmt.Fprintf(&b, "  node %s drained=%v load=%d/%d/%d running=%d tasks=%v\n",
				n.ID, n.Drained, slots, cores, mem, n.Running(), ids)
		}
	}
	for _, j := range c.Jobs() {
		fmt.Fprintf(&b, "job %s pool=%s prio=%d state=%s counts=%v ok=%d failed=%d ready=%d\n",
			j.ID, j.Pool.ID, j.Priority, j.State, j.Counts, j.Succeeded, j.Failed, len(core.JobReady(j)))
		for _, g := range j.Groups {
			fmt.Fprintf(&b, "  group %d count=%d cursor=%d live=%d done=%d\n",
				g.Seq, g.Count(), g.Cursor(), core.GroupLive(g), g.Done())
		}
		for _, t := range sortedTasks(j) {
			node := ""
			if t.Node != nil {
				node = t.Node.ID
			}
			fmt.Fprintf(&b, "  task %s num=%d %s attempt=%d retries=%d requeues=%d node=%s cur=%+v history=%d\n",
				t.ID, t.Num, t.State, t.Attempt, t.Retries, t.Requeues, node, t.Cur, len(t.History))
		}
	}
	return b.String()
}

// orderDump lists what dump leaves unordered: each job's ready list and each
// node's tasks, in the core's order.
func orderDump(c *core.Core) string {
	var b strings.Builder
	for _, j := range c.Jobs() {
		fmt.Fprintf(&b, "job %s ready", j.ID)
		for _, t := range core.JobReady(j) {
			fmt.Fprintf(&b, " %s", t.ID)
		}
		b.WriteByte('\n')
	}
	for _, n := range allNodes(c) {
		fmt.Fprintf(&b, "node %s tasks", n.ID)
		for _, t := range n.Tasks() {
			fmt.Fprintf(&b, " %s/%s", t.Job.ID, t.ID)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// diffLines reports the first lines where two dumps differ.
func diffLines(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(wl), len(gl)) && shown < 8; i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, w, g)
			shown++
		}
	}
	return b.String()
}

// invariants lists every way the core's state contradicts itself: a task in
// two places, capacity over-committed, counts that do not add up, a cap
// exceeded.
func invariants(c *core.Core) []string {
	var bad []string
	fail := func(format string, args ...any) { bad = append(bad, fmt.Sprintf(format, args...)) }

	onNode := map[*core.Task]int{}
	for _, n := range allNodes(c) {
		var slots, cores, running int
		var mem int64
		for _, t := range n.Tasks() {
			onNode[t]++
			if t.Node != n {
				fail("node %s lists %s/%s, which names node %v", n.ID, t.Job.ID, t.ID, t.Node)
			}
			if !isLive(t.State) {
				fail("node %s lists %s/%s in state %s", n.ID, t.Job.ID, t.ID, t.State)
			}
			req := t.Template().Req
			slots += max(req.Slots, 1)
			cores += req.Cores
			mem += req.Memory
			if t.State == core.TaskRunning {
				running++
			}
			if max(req.Slots, 1) > n.Slots {
				fail("node %s (%d slots) holds %s/%s needing %d slots", n.ID, n.Slots, t.Job.ID, t.ID, req.Slots)
			}
			for k, v := range req.Labels {
				if n.Labels[k] != v {
					fail("node %s lacks label %s=%s of %s/%s", n.ID, k, v, t.Job.ID, t.ID)
				}
			}
		}
		ls, lc, lm := core.NodeLoad(n)
		if ls != slots || lc != cores || lm != mem {
			fail("node %s load %d/%d/%d, its tasks need %d/%d/%d", n.ID, ls, lc, lm, slots, cores, mem)
		}
		if slots > core.NodeMaxCapacity(n) {
			fail("node %s holds %d slots of tasks, capacity at most %d", n.ID, slots, core.NodeMaxCapacity(n))
		}
		if cores > n.Cores && cores > 0 {
			fail("node %s: tasks need %d cores of %d", n.ID, cores, n.Cores)
		}
		if mem > n.Memory && mem > 0 {
			fail("node %s: tasks need %d bytes of %d", n.ID, mem, n.Memory)
		}
		if running != n.Running() {
			fail("node %s counts %d running, has %d", n.ID, n.Running(), running)
		}
	}

	nums := map[int64]string{}
	for _, j := range c.Jobs() {
		inReady := map[*core.Task]int{}
		for _, t := range core.JobReady(j) {
			inReady[t]++
		}
		var byState [5]int
		for _, t := range j.Tasks {
			byState[t.State]++
			name := j.ID + "/" + t.ID
			if other, dup := nums[t.Num]; dup || t.Num <= 0 {
				fail("%s has task number %d, as has %q", name, t.Num, other)
			}
			nums[t.Num] = name
			live := isLive(t.State)
			switch {
			case live && onNode[t] != 1:
				fail("%s is %s but on %d node lists", name, t.State, onNode[t])
			case !live && onNode[t] != 0:
				fail("%s is %s but on a node list", name, t.State)
			case live && t.Node == nil:
				fail("%s is %s on no node", name, t.State)
			case !live && t.Node != nil:
				fail("%s is %s but names node %s", name, t.State, t.Node.ID)
			}
			if want := b2i(t.State == core.TaskActive); inReady[t] != want {
				fail("%s is %s and %d times in the ready list", name, t.State, inReady[t])
			}
			if live && (t.Attempt < 1 || t.Cur.Number != t.Attempt || t.Cur.NodeID != t.Node.ID) {
				fail("%s: attempt %d, current record %d on %q", name, t.Attempt, t.Cur.Number, t.Cur.NodeID)
			}
			if t.State == core.TaskCompleted && t.Cur.Result == core.ResultNone {
				fail("%s completed without a result", name)
			}
		}
		if len(inReady) != len(core.JobReady(j)) {
			fail("job %s: a task is twice in the ready list", j.ID)
		}
		total, unmaterialized, closed := 0, 0, 0
		for _, g := range j.Groups {
			total += g.Count()
			live, done, below, ahead := 0, 0, 0, 0
			for _, t := range j.Tasks {
				if t.Group != g {
					continue
				}
				live += b2i(isLive(t.State))
				done += b2i(t.State == core.TaskCompleted)
				below += b2i(t.Pos < g.Cursor())
				ahead += b2i(t.Pos >= g.Cursor())
			}
			if below != g.Cursor() {
				fail("job %s group %d: cursor %d but %d tasks materialized below it", j.ID, g.Seq, g.Cursor(), below)
			}
			if g.Closed() {
				closed += g.Count() - g.Cursor() - ahead
				done += g.Count() - g.Cursor() - ahead
			} else {
				unmaterialized += g.Count() - g.Cursor() - ahead
			}
			if core.GroupLive(g) != live || g.Done() != done {
				fail("job %s group %d: live %d done %d, counted %d and %d", j.ID, g.Seq, core.GroupLive(g), g.Done(), live, done)
			}
			if g.Limit() > 0 && live > g.Limit() {
				fail("job %s group %d: %d live tasks over cap %d", j.ID, g.Seq, live, g.Limit())
			}
		}
		sum := 0
		for _, v := range j.Counts {
			sum += v
		}
		if sum != total {
			fail("job %s: counts %v sum to %d, groups hold %d tasks", j.ID, j.Counts, sum, total)
		}
		byState[core.TaskActive] += unmaterialized
		byState[core.TaskCompleted] += closed
		if byState != j.Counts {
			fail("job %s: counts %v, tasks are %v", j.ID, j.Counts, byState)
		}
		if j.Succeeded+j.Failed != j.Counts[core.TaskCompleted] {
			fail("job %s: %d succeeded + %d failed != %d completed", j.ID, j.Succeeded, j.Failed, j.Counts[core.TaskCompleted])
		}
	}
	return bad
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// checkInvariants fails the test with every violated invariant.
func checkInvariants(t testing.TB, c *core.Core) {
	t.Helper()
	if bad := invariants(c); len(bad) > 0 {
		t.Fatalf("invariants violated:\n  %s", strings.Join(bad, "\n  "))
	}
}
