package core

// Scheduling passes: the core side of sched.Plan, job queues, revocation of prefilled tasks.

import (
	"slices"
	"time"

	"github.com/lotehq/lote/internal/sched"
)

// Schedule runs a placement pass over every pool that changed. A pass can
// fill a pool that a bursting job lists before others, which makes those
// later pools worth another pass; the rounds are bounded by the number of
// pools, since a job's pools come in a fixed order.
func (c *Core) Schedule(now time.Time) {
	c.markQuotaHeld()
	pools := c.Pools()
	for range len(pools) + 1 {
		again := false
		for _, p := range pools {
			if p.dirty {
				p.dirty = false
				c.schedulePool(p, now.UnixNano())
				again = true
			}
		}
		if !again {
			return
		}
	}
}
func (c *Core) schedulePool(p *Pool, now int64) {
	// Within a priority level the job with the fewest live tasks goes first
	// (the scheduler keeps the order inside a level and takes turns from it),
	// so equal-priority jobs converge to equal shares of the pool even when
	// slots free up one per pass.
	slices.SortFunc(p.jobs, func(a, b *Job) int {
		if la, lb := a.live(), b.live(); la != lb {
			return la - lb
		}
		return int(a.Seq - b.Seq)
	})
	var nodes []*Node
	var free []sched.Node
	for _, n := range p.SortedNodes() {
		if !n.schedulable() {
			continue
		}
		fs := n.Slots + p.prefill(n) - n.usedSlots
		if fs <= 0 {
			continue
		}
		nodes = append(nodes, n)
		free = append(free, sched.Node{
			Slots: n.Slots, FreeSlots: fs, FreeCores: n.Cores - n.usedCores, FreeMemory: n.Memory - n.usedMem,
			Labels: n.Labels,
		})
	}
	queues := make([]sched.Queue, 0, len(p.jobs))
	jq := make([]*jobQueue, 0, len(p.jobs))
	live := c.liveByOwner()
	for _, j := range p.jobs {
		q := &jobQueue{c: c, job: j, nodes: nodes, now: now, live: live, held: j.earlierPoolFree(p)}
		queues = append(queues, q)
		jq = append(jq, q)
	}
	policy := sched.Spread
	if p.Fill == FillPack {
		policy = sched.Pack
	}
	out := sched.Plan(free, queues, policy)

	kept := p.jobs[:0]
	blockedPrio, blockedReq := 0, (*Requirements)(nil)
	for i, q := range jq {
		j := q.job
		if !j.hasWaiting() {
			j.inPool &^= 1 << slices.Index(j.Pools, p)
			j.PendingReason = ""
			continue
		}
		kept = append(kept, j)
		if q.held {
			continue // its earlier pool owns the reason
		}
		j.markLaterPoolsDirty(p)
		req, ok := q.Next()
		switch {
		case !ok && q.overQuota:
			j.PendingReason = "quota"
		case !ok:
			j.PendingReason = "concurrency_cap"
		case !p.anyNodeFits(req):
			j.PendingReason = "no_matching_node"
		case out.Preempted[i]:
			j.PendingReason = "priority"
		default:
			j.PendingReason = "no_capacity"
		}
		if out.Blocked[i] && j.PendingReason != "no_matching_node" && (blockedReq == nil || j.Priority > blockedPrio) {
			blockedPrio, blockedReq = j.Priority, q.headReq()
		}
	}
	for i := len(kept); i < len(p.jobs); i++ {
		p.jobs[i] = nil
	}
	p.jobs = kept
	if blockedReq != nil && c.prefilledBelow(p, blockedPrio) {
		c.revokeBelow(p, blockedPrio, blockedReq)
	}
}

// live counts a job's tasks that hold slots.
func (j *Job) live() int {
	return j.Counts[TaskAssigned] + j.Counts[TaskPreparing] + j.Counts[TaskRunning]
}

// prefilledBelow reports whether any job of the pool below prio has
// assigned (not started) tasks, before revokeBelow scans every node.
func (c *Core) prefilledBelow(p *Pool, prio int) bool {
	for _, j := range c.jobList {
		if slices.Contains(j.Pools, p) && j.Priority < prio && j.Counts[TaskAssigned] > 0 {
			return true
		}
	}
	return false
}

// revokeBelow takes back prefilled (assigned, not started) tasks of lower
// priority from nodes where a blocked higher-priority task could run.
func (c *Core) revokeBelow(p *Pool, prio int, req *Requirements) {
	for _, n := range p.SortedNodes() {
		if !n.schedulable() || !n.couldEverFit(req) {
			continue
		}
		for _, t := range n.tasks {
			if t.State == TaskAssigned && !t.revoking && t.Job.Priority < prio {
				t.revoking = true
				c.fx.Revoke(n, t)
			}
		}
	}
}

// earlierPoolFree reports whether a pool the job lists before p has a node
// with a free slot (prefill aside): bursting waits for those to fill.
func (j *Job) earlierPoolFree(p *Pool) bool {
	for _, ep := range j.Pools {
		if ep == p {
			return false
		}
		for _, n := range ep.SortedNodes() {
			if n.schedulable() && n.usedSlots < n.Slots {
				return true
			}
		}
	}
	return false
}

// markLaterPoolsDirty gives the pools after p in the job's list a pass: p
// could not place all the job's tasks.
func (j *Job) markLaterPoolsDirty(p *Pool) {
	for i := len(j.Pools) - 1; i >= 0 && j.Pools[i] != p; i-- {
		j.Pools[i].dirty = true
	}
}

func (n *Node) schedulable() bool {
	return n.Connected && !n.Unreachable && !n.Drained && !n.Preempted && !n.Leaving && n.startTaskAllows()
}

// startTaskAllows says whether the pool's start task lets the node take
// tasks: always without wait_for_success, else only once it succeeded.
func (n *Node) startTaskAllows() bool {
	st := n.Pool.StartTask
	return st == nil || !st.WaitForSuccess || n.StartTask == StartTaskNone || n.StartTask == StartTaskSucceeded
}
func (n *Node) couldEverFit(r *Requirements) bool {
	if max(r.Slots, 1) > n.Slots || r.Cores > n.Cores || r.Memory > n.Memory {
		return false
	}
	for k, v := range r.Labels {
		if n.Labels[k] != v {
			return false
		}
	}
	return true
}
func (p *Pool) anyNodeFits(r sched.Request) bool {
	req := Requirements{Slots: r.Slots, Cores: r.Cores, Memory: r.Memory, Labels: r.Labels}
	for _, n := range p.Nodes {
		if !n.Unreachable && !n.Drained && n.couldEverFit(&req) {
			return true
		}
	}
	return false
}
func (j *Job) hasWaiting() bool {
	if len(j.ready) > 0 {
		return true
	}
	for ; j.openGroup < len(j.Groups); j.openGroup++ {
		if g := j.Groups[j.openGroup]; g.cursor < g.count && !g.closed {
			return true
		}
	}
	return false
}

// jobQueue adapts a job to sched.Queue. Next finds the task Take will place:
// first tasks back from a retry or requeue, then the groups in order.
type jobQueue struct {
	c     *Core
	job   *Job
	nodes []*Node
	now   int64

	task  *Task // candidate from the ready list
	at    int   // its index in the ready list
	group *Group

	// live counts live tasks by owner for the running-task quota (nil
	// when there is none); overQuota says Next stopped on it.
	live      map[string]int
	overQuota bool
	// held: an earlier pool of the job has a free slot, so this pool gets
	// none of its tasks now.
	held bool
}

func (q *jobQueue) Priority() int { return q.job.Priority }
func (q *jobQueue) Next() (sched.Request, bool) {
	j := q.job
	q.task, q.group, q.overQuota = nil, nil, false
	if j.State != JobActive || q.held {
		return sched.Request{}, false
	}
	if q.live != nil && q.live[j.Owner] >= q.c.cfg.MaxRunningTasksPerUser {
		q.overQuota = true
		return sched.Request{}, false
	}
	for i, t := range j.ready {
		if i == maxReadyScan {
			break
		}
		if t.Group.capOK() {
			q.task, q.at = t, i
			return q.exclude(request(t.Template())), true
		}
	}
	for gi := j.openGroup; gi < len(j.Groups); gi++ {
		g := j.Groups[gi]
		for g.ahead > 0 && g.cursor < g.count && q.materializedAt(g) {
			g.ahead--
			g.cursor++
			q.c.fx.SaveCursor(g)
		}
		if g.cursor < g.count && !g.closed && g.capOK() {
			q.group = g
			return q.exclude(request(g.TemplateAt(g.cursor))), true
		}
	}
	return sched.Request{}, false
}

// materializedAt reports whether the task at g's cursor was materialized out
// of order (cancelled before dispatch, for instance). Only groups with such
// tasks pay for the lookup; normally the cursor is the frontier.
func (q *jobQueue) materializedAt(g *Group) bool {
	t := q.job.Tasks[key(g.IDAt(g.cursor))]
	return t != nil && t.Group == g && t.Pos == g.cursor
}
func (q *jobQueue) headReq() *Requirements {
	if q.task != nil {
		return &q.task.Template().Req
	}
	if q.group != nil {
		return &q.group.TemplateAt(q.group.cursor).Req
	}
	return &Requirements{}
}

// exclude keeps req off the nodes the job is barred from.
func (q *jobQueue) exclude(req sched.Request) sched.Request {
	if len(q.job.barred) > 0 {
		req.Exclude = func(ni int) bool { return q.job.barred[key(q.nodes[ni].ID)] }
	}
	return req
}
func request(t *Template) sched.Request {
	return sched.Request{Slots: t.Req.Slots, Cores: t.Req.Cores, Memory: t.Req.Memory, Labels: t.Req.Labels}
}
func (g *Group) capOK() bool { return g.Spec.Limit == 0 || g.live < g.Spec.Limit }
func (q *jobQueue) Take(ni int) {
	j := q.job
	t := q.task
	if t != nil && q.at == 0 {
		j.ready[0] = nil
		j.ready = j.ready[1:]
	} else if t != nil {
		j.ready = slices.Delete(j.ready, q.at, q.at+1)
	} else {
		g := q.group
		t = &Task{Job: j, Group: g, Pos: g.cursor, ID: g.IDAt(g.cursor), Num: q.c.nextTaskNum()}
		j.Tasks[key(t.ID)] = t
		g.cursor++
		q.c.fx.SaveCursor(g)
	}
	if q.live != nil {
		q.live[j.Owner]++
	}
	q.c.assign(t, q.nodes[ni], q.now)
}

// assign gives a task's next attempt to a node.
func (c *Core) assign(t *Task, n *Node, now int64) {
	c.setState(t, TaskAssigned)
	t.Attempt++
	t.Node = n
	t.Cur = AttemptRecord{Number: t.Attempt, NodeID: n.ID, AssignedAt: now}
	t.nodeSlot = len(n.tasks)
	n.tasks = append(n.tasks, t)
	req := &t.Template().Req
	n.usedSlots += max(req.Slots, 1)
	n.usedCores += req.Cores
	n.usedMem += req.Memory
	t.Group.live++
	c.fx.SaveTask(t)
	c.fx.Dispatch(n, t)
}
