package core_test

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// managedPool is a pool whose nodes the server makes through a provider.
func managedPool(w *world, id string, slots int, sc core.Scaling) *core.Pool {
	w.t.Helper()
	sc.Managed = true
	p, err := w.c.CreatePool(core.PoolSpec{ID: id, Provider: "local", SlotsPerNode: slots, Scaling: sc}, w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	return p
}

// joinAs makes the agent of a provisioned node connect.
func (w *world) joinAs(p *core.Pool, id string, slots int) *core.Node {
	w.t.Helper()
	n, _, err := w.c.NodeJoin(core.Join{Name: id, Pool: p, Hostname: id, Slots: slots, TokenHash: "h-" + id}, w.now)
	if err != nil {
		w.t.Fatal(err)
	}
	if n.ID != id {
		w.t.Fatalf("joined as %s, want the provisioned %s", n.ID, id)
	}
	return n
}

// TestProvisionedNodeJoins: nodes asked of a provider are durable under
// POOL-N IDs before they exist, count as nodes of the pool but take no
// task, and become ordinary nodes when their agent joins under that ID.
func TestProvisionedNodeJoins(t *testing.T) {
	w := newWorld(t)
	p := managedPool(w, "burst", 1, core.Scaling{})
	nodes := w.c.ProvisionNodes(p, 2, false, w.now)
	if len(nodes) != 2 || nodes[0].ID != "burst-1" || nodes[1].ID != "burst-2" {
		t.Fatalf("provisioned %v, want burst-1, burst-2", nodes)
	}
	if st := nodes[0].State(); st != core.NodeStarting {
		t.Errorf("provisioned node is %s, want starting", st)
	}
	j := coretest.Job(w.c, p, "J")
	coretest.Array(w.c, j, "1-2")
	if d := w.schedule(); len(d) != 0 {
		t.Fatalf("dispatched %v to nodes that have not joined", sentIDs(d))
	}
	if m := w.c.Metrics(p); m.CurrentNodes != 2 || m.IdleNodes != 0 || m.PendingTasks != 2 || m.PendingSlots != 2 {
		t.Errorf("metrics %+v, want 2 current nodes, none idle, 2 pending tasks and slots", m)
	}
	w.joinAs(p, "burst-1", 1)
	if d := sentIDs(w.schedule()); len(d) != 1 || d[0] != "burst-1<-J/1#1" {
		t.Errorf("dispatched %v, want J/1 to burst-1", d)
	}
	// IDs are not reused, even after a restart.
	w = restored(t, w)
	p = w.c.Pool("burst")
	if got := w.c.ProvisionNodes(p, 1, true, w.now); got[0].ID != "burst-3" || !got[0].Spot {
		t.Errorf("after a restart provisioned %s (spot %v), want spot burst-3", got[0].ID, got[0].Spot)
	}
}

// TestJoinTimeout: a provisioned node that does not join in time is
// dropped; one that joined is not.
func TestJoinTimeout(t *testing.T) {
	w := newWorld(t)
	p := managedPool(w, "P", 1, core.Scaling{JoinTimeout: time.Minute})
	w.c.ProvisionNodes(p, 2, false, w.now)
	w.advance(30 * time.Second)
	w.joinAs(p, "P-1", 1)
	if out, left := w.c.SweepNodes(w.now); len(out)+len(left) != 0 {
		t.Fatalf("swept %v %v before the timeout", out, left)
	}
	w.advance(31 * time.Second)
	out, _ := w.c.SweepNodes(w.now)
	if len(out) != 1 || out[0].ID != "P-2" {
		t.Fatalf("timed out %v, want P-2", out)
	}
	if w.c.Node("P-2") != nil || w.c.Node("P-1") == nil {
		t.Error("P-2 should be gone and P-1 kept")
	}
}

// TestScaleDownDeallocation: each deallocation option treats the running
// task of a removed node as Azure Batch does, and a prefilled task goes
// back to the queue unused.
func TestScaleDownDeallocation(t *testing.T) {
	for _, tc := range []struct {
		mode                 core.Deallocation
		goneNow              bool
		wantState            core.TaskState
		wantRetries, wantReq int
	}{
		{core.DeallocRequeue, true, core.TaskActive, 0, 0},
		{core.DeallocTerminate, true, core.TaskCompleted, 0, 0},
		{core.DeallocTaskCompletion, false, core.TaskRunning, 0, 0},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			w := newWorld(t)
			p := managedPool(w, "P", 1, core.Scaling{})
			w.c.ProvisionNodes(p, 1, false, w.now)
			n := w.joinAs(p, "P-1", 1)
			p.Prefill = 1
			j := coretest.Job(w.c, p, "J")
			coretest.Array(w.c, j, "1-2")
			w.schedule()
			run, queued := w.task(j, "1"), w.task(j, "2")
			w.start(run)
			w.fx.Commit()
			gone := w.c.ScaleDown(p, []string{"P-1"}, tc.mode, w.now)
			w.fx.Commit()
			if (len(gone) == 1) != tc.goneNow {
				t.Fatalf("removed now: %v, want %v", gone, tc.goneNow)
			}
			if run.State != tc.wantState || run.Retries != tc.wantRetries || run.Requeues != tc.wantReq {
				t.Errorf("running task: %s retries=%d requeues=%d, want %s %d %d",
					run.State, run.Retries, run.Requeues, tc.wantState, tc.wantRetries, tc.wantReq)
			}
			if tc.mode == core.DeallocTerminate && run.Cur.Result != core.ResultFailure {
				t.Errorf("terminated task result %s, want failure", run.Cur.Result)
			}
			if tc.mode != core.DeallocTaskCompletion {
				if len(w.fx.Killed) != 2 {
					t.Errorf("kills %v, want both tasks killed on the node", w.fx.Killed)
				}
				if queued.State != core.TaskActive || queued.Attempt != 0 {
					t.Errorf("prefilled task %s attempt %d, want active with its attempt unused", queued.State, queued.Attempt)
				}
				return
			}
			// task_completion: nothing killed, the prefilled task revoked,
			// no new task, the node goes when the running one ends.
			if len(w.fx.Killed) != 0 {
				t.Errorf("task_completion killed %v", w.fx.Killed)
			}
			if rv := w.fx.TakeRevoked(); len(rv) != 1 || rv[0].Task != queued {
				t.Errorf("revoked %v, want the prefilled task", rv)
			}
			w.c.RevokeAnswered(n, "J", "2", queued.Attempt, true)
			if n.State() != core.NodeLeaving {
				t.Errorf("node is %s, want leaving", n.State())
			}
			if d := w.schedule(); len(d) != 0 {
				t.Errorf("dispatched %v to a leaving node", sentIDs(d))
			}
			if _, left := w.c.SweepNodes(w.now); len(left) != 0 {
				t.Fatal("swept a leaving node with a running task")
			}
			w.finish(run, 0)
			if _, left := w.c.SweepNodes(w.now); len(left) != 1 || w.c.Node("P-1") != nil {
				t.Errorf("leaving node not removed once its task ended: %v", left)
			}
			if run.Cur.Result != core.ResultSuccess {
				t.Errorf("running task %s, want it to have completed normally", run.Cur.Result)
			}
		})
	}
}

// TestPreemptNode: a preempted node's tasks are killed and requeued once
// their end (after the checkpoint) is reported, with no retry used; a
// prefilled one goes back at once.
func TestPreemptNode(t *testing.T) {
	w := newWorld(t)
	p := coretest.Pool(w.c, "P", 1, coretest.Prefill(1))
	n := coretest.Node(w.c, p, "spot", 1)
	j := coretest.Job(w.c, p, "J")
	coretest.Array(w.c, j, "1-2", coretest.Retries(0))
	w.schedule()
	run, queued := w.task(j, "1"), w.task(j, "2")
	w.start(run)
	if err := w.c.PreemptNode(n, w.now); err != nil {
		t.Fatal(err)
	}
	w.fx.Commit()
	if n.State() != core.NodePreempted {
		t.Errorf("node is %s, want preempted", n.State())
	}
	if len(w.fx.Killed) != 2 {
		t.Errorf("kills %v, want both", w.fx.Killed)
	}
	if queued.State != core.TaskActive || queued.Attempt != 0 {
		t.Errorf("prefilled task %s attempt %d, want active, attempt unused", queued.State, queued.Attempt)
	}
	if run.State != core.TaskRunning {
		t.Fatalf("running task %s, want running until its end is reported", run.State)
	}
	w.report(run, coretest.Exit(run, 143))
	if run.State != core.TaskActive || run.Retries != 0 {
		t.Errorf("preempted task %s retries %d, want active with no retry used (it has none)", run.State, run.Retries)
	}
	if d := w.schedule(); len(d) != 0 {
		t.Errorf("dispatched %v to a preempted node", sentIDs(d))
	}
	coretest.Node(w.c, p, "other", 1)
	if d := sentIDs(w.schedule()); !slices.Contains(d, "other<-J/1#2") || !slices.Contains(d, "other<-J/2#1") {
		t.Errorf("dispatched %v, want J/1 attempt 2 and J/2 attempt 1 on other", d)
	}
}

// TestBurst: a job's tasks go to its burst pool only while its first pool
// has no free slot; the burst pool's pending count is what the first pool
// cannot place.
func TestBurst(t *testing.T) {
	w := newWorld(t)
	onprem := coretest.Pool(w.c, "onprem", 1)
	burst := managedPool(w, "burst", 1, core.Scaling{})
	coretest.Node(w.c, onprem, "op", 1)
	spec := coretest.JobSpec(onprem, "J")
	spec.BurstPoolIDs = []string{"burst"}
	j, err := w.c.CreateJob(spec, w.now)
	if err != nil {
		t.Fatal(err)
	}
	coretest.Array(w.c, j, "1-3")
	w.schedule()
	if m := w.c.Metrics(burst); m.PendingTasks != 2 || m.ActiveTasks != 2 {
		t.Errorf("burst metrics %+v, want the 2 tasks on-prem cannot place", m)
	}
	w.c.ProvisionNodes(burst, 1, false, w.now)
	bn := w.joinAs(burst, "burst-1", 1)
	if d := sentIDs(w.schedule()); len(d) != 1 || d[0] != "burst-1<-J/2#1" {
		t.Fatalf("dispatched %v, want J/2 on burst-1", d)
	}
	// A free on-prem slot takes the next task, not the burst pool.
	w.start(w.task(j, "1"), w.task(j, "2"))
	w.finish(w.task(j, "2"), 0)
	w.finish(w.task(j, "1"), 0)
	d := sentIDs(w.schedule())
	if len(d) != 1 || d[0] != "op<-J/3#1" {
		t.Errorf("dispatched %v, want J/3 on-prem while it has a free slot", d)
	}
	if len(bn.Tasks()) != 0 {
		t.Errorf("burst node holds %d tasks", len(bn.Tasks()))
	}
	if m := w.c.Metrics(burst); m.PendingTasks != 0 {
		t.Errorf("burst pending %d once the backlog cleared, want 0", m.PendingTasks)
	}
}

// TestUsageAndCost: node time is paid from the request to the provider;
// a job is charged its slot time at the per-slot share of the node price.
func TestUsageAndCost(t *testing.T) {
	w := newWorld(t)
	p := managedPool(w, "P", 2, core.Scaling{Price: 3.6, SpotPrice: 0.72})
	w.c.ProvisionNodes(p, 1, false, w.now)
	w.c.ProvisionNodes(p, 1, true, w.now)
	w.advance(10 * time.Second)
	w.joinAs(p, "P-1", 2)
	j := coretest.Job(w.c, p, "J")
	coretest.Array(w.c, j, "1")
	w.schedule()
	tk := w.task(j, "1")
	w.start(tk)
	w.advance(100 * time.Second)
	f := coretest.Exit(tk, 0)
	f.EndedAt = w.now.UnixNano()
	w.report(tk, f)
	// 100 s on a 2-slot node priced 3.6/h: 50 node-seconds, 0.05.
	if !near(j.SlotSeconds, 100) || !near(j.NodeSeconds, 50) || !near(j.Cost, 0.05) {
		t.Errorf("job usage slot-s %g node-s %g cost %g, want 100, 50, 0.05", j.SlotSeconds, j.NodeSeconds, j.Cost)
	}
	u := p.UsageAt(w.now)
	if !near(u.NodeSeconds, 110) || !near(u.SpotNodeSeconds, 110) || !near(u.Cost, 0.11+0.022) {
		t.Errorf("pool usage %+v, want 110 s each and cost 0.132", u)
	}
	w.c.ScaleDown(p, []string{"P-2"}, core.DeallocRequeue, w.now)
	w.advance(time.Hour)
	if u := p.UsageAt(w.now); !near(u.SpotNodeSeconds, 110) {
		t.Errorf("removed spot node still accrues: %+v", u)
	}
	w.fx.Commit()
	w = restored(t, w)
	if j := w.c.Job("J"); !near(j.Cost, 0.05) {
		t.Errorf("job cost after restart %g, want 0.05", j.Cost)
	}
	if u := w.c.Pool("P").Usage; !near(u.SpotNodeSeconds, 110) {
		t.Errorf("pool usage after restart %+v", u)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

// TestUnreachableNodeReplaced: in a managed pool a node that went silent
// past the heartbeat timeout is dropped once its tasks were requeued, so
// the pool makes a new one; a static pool keeps its silent node.
func TestUnreachableNodeReplaced(t *testing.T) {
	w := newWorld(t)
	p := managedPool(w, "M", 1, core.Scaling{})
	w.c.SetTargets(p, 1, 0)
	if created, _ := w.c.Resize(p, core.DeallocRequeue, w.now); len(created) != 1 {
		t.Fatalf("created %v, want one node", created)
	}
	w.joinAs(p, "M-1", 1)
	static := coretest.Pool(w.c, "S", 1)
	coretest.Node(w.c, static, "s1", 1)
	j := coretest.Job(w.c, p, "J")
	coretest.Array(w.c, j, "1")
	w.schedule()
	w.advance(core.DefaultHeartbeatTimeout + time.Second)
	w.c.Tick(w.now)
	if tk := w.task(j, "1"); tk.State != core.TaskActive {
		t.Fatalf("task %s after its node went silent, want requeued", tk.State)
	}
	_, left := w.c.SweepNodes(w.now)
	if len(left) != 1 || left[0].ID != "M-1" {
		t.Fatalf("swept %v, want the silent M-1 only", left)
	}
	if w.c.Node("s1") == nil {
		t.Error("a static pool's silent node was dropped")
	}
	if created, _ := w.c.Resize(p, core.DeallocRequeue, w.now); len(created) != 1 || created[0].ID != "M-2" {
		t.Errorf("created %v, want the replacement M-2", created)
	}
}
