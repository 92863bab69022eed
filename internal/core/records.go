package core

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/lotehq/lote/internal/arrayspec"
)

// The records below are the durable form of the core's objects: what the
// store writes and what Restore rebuilds the core from. Everything else in
// memory (node load, ready lists, counts) is derived from them.

// PoolRecord is a pool's durable form.
type PoolRecord struct {
	ID           string            `json:"id"`
	Provider     string            `json:"provider"`
	SlotsPerNode int               `json:"slots_per_node"`
	Fill         FillPolicy        `json:"fill"`
	Prefill      int               `json:"prefill"`
	TargetNodes  int               `json:"target_nodes"`
	Labels       map[string]string `json:"labels,omitempty"`
	JoinToken    string            `json:"join_token"`
	CreatedAt    int64             `json:"created_at"`
	AllowRoot    bool              `json:"allow_root,omitempty"`
	StartTask    *StartTask        `json:"start_task,omitempty"`
	Apps         []string          `json:"apps,omitempty"`
	Scaling      Scaling           `json:"scaling"`
	Usage        Usage             `json:"usage"`
	NodeSeq      int               `json:"node_seq,omitempty"`
}

// Record returns the pool's durable form.
func (p *Pool) Record() PoolRecord {
	return PoolRecord{
		ID: p.ID, Provider: p.Provider, SlotsPerNode: p.SlotsPerNode, Fill: p.Fill, Prefill: p.Prefill,
		TargetNodes: p.TargetNodes, Labels: p.Labels, JoinToken: p.JoinToken, CreatedAt: p.CreatedAt,
		AllowRoot: p.AllowRoot, StartTask: p.StartTask, Apps: p.Apps,
		Scaling: p.Scaling, Usage: p.Usage, NodeSeq: p.NodeSeq,
	}
}

// NodeRecord is a node's durable form.
type NodeRecord struct {
	ID          string            `json:"id"`
	PoolID      string            `json:"pool_id"`
	Hostname    string            `json:"hostname"`
	Slots       int               `json:"slots"`
	Cores       int               `json:"cores"`
	Memory      int64             `json:"memory"`
	Labels      map[string]string `json:"labels,omitempty"`
	TokenHash   string            `json:"token_hash"`
	Drained     bool              `json:"drained,omitempty"`
	JoinedAt    int64             `json:"joined_at"`
	StartTask   StartTaskPhase    `json:"start_task,omitempty"`
	Spot        bool              `json:"spot,omitempty"`
	Provisioned bool              `json:"provisioned,omitempty"`
	RequestedAt int64             `json:"requested_at,omitempty"`
	Preempted   bool              `json:"preempted,omitempty"`
	Leaving     bool              `json:"leaving,omitempty"`
}

// Record returns the node's durable form.
func (n *Node) Record() NodeRecord {
	return NodeRecord{
		ID: n.ID, PoolID: n.Pool.ID, Hostname: n.Hostname, Slots: n.Slots, Cores: n.Cores, Memory: n.Memory,
		Labels: n.Labels, TokenHash: n.TokenHash, Drained: n.Drained, JoinedAt: n.JoinedAt,
		StartTask: n.StartTask, Spot: n.Spot, Provisioned: n.Provisioned, RequestedAt: n.RequestedAt,
		Preempted: n.Preempted, Leaving: n.Leaving,
	}
}

// JobRecord is a job's durable form.
type JobRecord struct {
	ID                string            `json:"id"`
	PoolID            string            `json:"pool_id"`
	Priority          int               `json:"priority"`
	MaxRetries        int               `json:"max_retries"`
	MaxWallClock      time.Duration     `json:"max_wall_clock"`
	TerminateWhenDone bool              `json:"terminate_when_done,omitempty"`
	Owner             string            `json:"owner"`
	Tags              map[string]string `json:"tags,omitempty"`
	Env               map[string]string `json:"env,omitempty"`
	State             JobState          `json:"state"`
	CreatedAt         int64             `json:"created_at"`
	CompletedAt       int64             `json:"completed_at,omitempty"`
	Seq               int64             `json:"seq"`
	PrepTask          *StartTask        `json:"prep_task,omitempty"`
	ReleaseTask       *StartTask        `json:"release_task,omitempty"`
	BurstPoolIDs      []string          `json:"burst_pool_ids,omitempty"`
	SlotSeconds       float64           `json:"slot_seconds,omitempty"`
	NodeSeconds       float64           `json:"node_seconds,omitempty"`
	Cost              float64           `json:"cost,omitempty"`
	// BarredNodes are the (lower-cased) IDs of the nodes where the job's
	// preparation task failed; the job's tasks never go there.
	BarredNodes []string `json:"barred_nodes,omitempty"`
}

// Record returns the job's durable form.
func (j *Job) Record() JobRecord {
	return JobRecord{
		ID: j.ID, PoolID: j.Pool.ID, Priority: j.Priority, MaxRetries: j.MaxRetries, MaxWallClock: j.MaxWallClock,
		TerminateWhenDone: j.TerminateWhenDone, Owner: j.Owner, Tags: j.Tags, Env: j.Env, State: j.State,
		CreatedAt: j.CreatedAt, CompletedAt: j.CompletedAt, Seq: j.Seq,
		PrepTask: j.PrepTask, ReleaseTask: j.ReleaseTask, BurstPoolIDs: j.BurstPoolIDs(),
		BarredNodes: slices.Sorted(maps.Keys(j.barred)),
		SlotSeconds: j.SlotSeconds, NodeSeconds: j.NodeSeconds, Cost: j.Cost,
	}
}

// barredSet is JobRecord.BarredNodes as Job.barred (nil when empty).
func barredSet(keys []string) map[string]bool {
	if len(keys) == 0 {
		return nil
	}
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// BurstPoolIDs are the IDs of the job's pools after its first.
func (j *Job) BurstPoolIDs() []string {
	var ids []string
	for _, p := range j.Pools[1:] {
		ids = append(ids, p.ID)
	}
	return ids
}

// GroupRecord is a group's durable form; its cursor is written separately
// because it moves with every dispatch while the rest never changes.
type GroupRecord struct {
	JobID       string    `json:"job_id"`
	Seq         int       `json:"seq"`
	Kind        GroupKind `json:"kind"`
	Template    *Template `json:"template,omitempty"`
	Spec        string    `json:"spec,omitempty"`
	Lines       []string  `json:"lines,omitempty"`
	Items       []Item    `json:"items,omitempty"`
	IDPrefix    string    `json:"id_prefix,omitempty"`
	SubmittedAt int64     `json:"submitted_at"`
	Closed      bool      `json:"closed,omitempty"`
	Cursor      int       `json:"-"`
}

// Record returns the group's durable form.
func (g *Group) Record() GroupRecord {
	r := GroupRecord{
		JobID: g.Job.ID, Seq: g.Seq, Kind: g.Kind, Template: g.Template, Lines: g.Lines, Items: g.Items,
		IDPrefix: g.IDPrefix, SubmittedAt: g.SubmittedAt, Closed: g.closed, Cursor: g.cursor,
	}
	if g.Kind == GroupArray {
		r.Spec = g.Spec.String()
	}
	return r
}

// TaskRecord is a materialized task's durable form. Cur.NodeID names the
// node of a live attempt.
type TaskRecord struct {
	Num      int64
	JobID    string
	ID       string
	GroupSeq int
	Pos      int
	State    TaskState
	Attempt  int
	Retries  int
	Requeues int
	Cur      AttemptRecord
	History  []AttemptRecord
}

// Record returns the task's durable form.
func (t *Task) Record() TaskRecord {
	r := TaskRecord{
		Num: t.Num, JobID: t.Job.ID, ID: t.ID, GroupSeq: t.Group.Seq, Pos: t.Pos, State: t.State, Attempt: t.Attempt,
		Retries: t.Retries, Requeues: t.Requeues, Cur: t.Cur, History: t.History,
	}
	return r
}

// Snapshot is everything Restore needs.
type Snapshot struct {
	Pools  []PoolRecord
	Nodes  []NodeRecord
	Jobs   []JobRecord
	Groups []GroupRecord
	Tasks  []TaskRecord
}

// Restore rebuilds a core from its records. Nodes come back disconnected with
// a fresh heartbeat deadline, so agents that reconnect in time keep their
// tasks.
func Restore(cfg Config, fx Effects, s Snapshot, now time.Time) (*Core, error) {
	r, err := NewRestorer(cfg, fx, s, now)
	if err != nil {
		return nil, err
	}
	if err := r.AddTasks(s.Tasks); err != nil {
		return nil, err
	}
	return r.Core(), nil
}

// Restorer is Restore in steps, so that the shell can rebuild tasks while
// the store is still reading them (a million task rows take seconds to
// decode): NewRestorer takes every record but the tasks', AddTasks takes
// task records in batches and in any order, Core returns the result.
type Restorer struct {
	c *Core
	// blocks hold each job's tasks below its groups' cursors, allocated
	// at once. Records come grouped by job, so the job of the last record
	// and its block are kept at hand.
	blocks map[*Job][]Task
	held   []*Task // tasks on a node
	last   *Job
	lastID string
	block  []Task // blocks[last], until the job changes
}

// NewRestorer starts rebuilding a core from s; s.Tasks are left to
// AddTasks.
func NewRestorer(cfg Config, fx Effects, s Snapshot, now time.Time) (*Restorer, error) {
	c := New(cfg, fx)
	for _, r := range s.Pools {
		c.pools[key(r.ID)] = &Pool{
			ID: r.ID, Provider: r.Provider, SlotsPerNode: r.SlotsPerNode, Fill: r.Fill, Prefill: r.Prefill,
			TargetNodes: r.TargetNodes, Labels: r.Labels, JoinToken: r.JoinToken, CreatedAt: r.CreatedAt,
			AllowRoot: r.AllowRoot, StartTask: r.StartTask, Apps: r.Apps, Nodes: map[string]*Node{}, dirty: true,
			Scaling: r.Scaling, Usage: r.Usage, NodeSeq: r.NodeSeq,
		}
	}
	for _, r := range s.Nodes {
		p := c.pools[key(r.PoolID)]
		if p == nil {
			return nil, fmt.Errorf("node %q: no pool %q", r.ID, r.PoolID)
		}
		n := &Node{
			ID: r.ID, Pool: p, Hostname: r.Hostname, Slots: r.Slots, Cores: r.Cores, Memory: r.Memory,
			Labels: r.Labels, TokenHash: r.TokenHash, Drained: r.Drained, JoinedAt: r.JoinedAt,
			StartTask: r.StartTask, LastSeen: now.UnixNano(), Spot: r.Spot, Provisioned: r.Provisioned,
			RequestedAt: r.RequestedAt, Preempted: r.Preempted, Leaving: r.Leaving,
		}
		c.nodes[key(n.ID)] = n
		p.addNode(n)
	}
	jobs := slices.Clone(s.Jobs)
	slices.SortFunc(jobs, func(a, b JobRecord) int { return int(a.Seq - b.Seq) })
	for _, r := range jobs {
		p := c.pools[key(r.PoolID)]
		if p == nil {
			return nil, fmt.Errorf("job %q: no pool %q", r.ID, r.PoolID)
		}
		pools := []*Pool{p}
		for _, id := range r.BurstPoolIDs {
			bp := c.pools[key(id)]
			if bp == nil {
				return nil, fmt.Errorf("job %q: no burst pool %q", r.ID, id)
			}
			pools = append(pools, bp)
		}
		c.addJob(&Job{
			ID: r.ID, Pool: p, Pools: pools, Priority: r.Priority, SlotSeconds: r.SlotSeconds, NodeSeconds: r.NodeSeconds, Cost: r.Cost, MaxRetries: r.MaxRetries, MaxWallClock: r.MaxWallClock,
			TerminateWhenDone: r.TerminateWhenDone, Owner: r.Owner, Tags: r.Tags, Env: r.Env, State: r.State,
			CreatedAt: r.CreatedAt, CompletedAt: r.CompletedAt, Seq: r.Seq, Tasks: map[string]*Task{},
			PrepTask: r.PrepTask, ReleaseTask: r.ReleaseTask, barred: barredSet(r.BarredNodes),
		})
		c.jobSeq = max(c.jobSeq, r.Seq)
	}
	groups := slices.Clone(s.Groups)
	slices.SortFunc(groups, func(a, b GroupRecord) int { return a.Seq - b.Seq })
	for _, r := range groups {
		j := c.jobs[key(r.JobID)]
		if j == nil {
			return nil, fmt.Errorf("task group %d: no job %q", r.Seq, r.JobID)
		}
		if r.Seq != len(j.Groups) {
			return nil, fmt.Errorf("job %q: task group %d missing", j.ID, len(j.Groups))
		}
		g := &Group{
			Job: j, Seq: r.Seq, Kind: r.Kind, Template: r.Template, Lines: r.Lines, Items: r.Items,
			IDPrefix: r.IDPrefix, SubmittedAt: r.SubmittedAt, cursor: r.Cursor, closed: r.Closed,
		}
		switch g.Kind {
		case GroupArray:
			spec, err := arrayspec.Parse(r.Spec)
			if err != nil {
				return nil, fmt.Errorf("job %q group %d: %w", j.ID, r.Seq, err)
			}
			g.Spec, g.count = spec, spec.Count()
		case GroupLines:
			g.count = len(g.Lines)
		default:
			g.count = len(g.Items)
		}
		j.Groups = append(j.Groups, g)
		if g.closed {
			n := g.count - g.cursor
			j.Counts[TaskCompleted] += n
			j.Failed += n
			g.done += n
		} else {
			j.Counts[TaskActive] += g.count - g.cursor
		}
	}
	// Every position below a group's cursor has a task record (those at
	// or past it are rare), so the cursors size each job's task map and
	// the one allocation its task objects come from.
	rs := &Restorer{c: c, blocks: map[*Job][]Task{}}
	for _, j := range c.jobList {
		n := 0
		for _, g := range j.Groups {
			n += g.cursor
		}
		if n > 0 {
			j.Tasks = make(map[string]*Task, n)
			rs.blocks[j] = make([]Task, 0, n)
		}
	}
	return rs, nil
}

// AddTasks restores tasks from their records. Records may come in any
// order and recs may be reused once it returns.
func (r *Restorer) AddTasks(recs []TaskRecord) error {
	for i := range recs {
		rec := &recs[i]
		if r.last == nil || rec.JobID != r.lastID {
			j := r.c.jobs[key(rec.JobID)]
			if j != r.last {
				if r.last != nil {
					r.blocks[r.last] = r.block
				}
				r.block = r.blocks[j]
			}
			r.last, r.lastID = j, rec.JobID
		}
		j := r.last
		if j == nil || rec.GroupSeq >= len(j.Groups) {
			return fmt.Errorf("task %q: no job %q or group %d", rec.ID, rec.JobID, rec.GroupSeq)
		}
		var t *Task
		if len(r.block) < cap(r.block) {
			r.block = r.block[:len(r.block)+1]
			t = &r.block[len(r.block)-1]
		} else {
			t = new(Task)
		}
		if err := r.c.restoreTask(j, rec, t); err != nil {
			return err
		}
		if t.Node != nil {
			r.held = append(r.held, t)
		}
	}
	return nil
}

// Core finishes the rebuild: only a job's ready list and a node's task
// list depend on the order of the records, so they are put in the order
// the core materializes tasks in (by group and position) here.
func (r *Restorer) Core() *Core {
	c := r.c
	for _, j := range c.jobList {
		if !slices.IsSortedFunc(j.ready, byPosition) {
			slices.SortFunc(j.ready, byPosition)
		}
	}
	slices.SortFunc(r.held, byPosition)
	for _, t := range r.held {
		n := t.Node
		t.nodeSlot = len(n.tasks)
		n.tasks = append(n.tasks, t)
		req := &t.Template().Req
		n.usedSlots += max(req.Slots, 1)
		n.usedCores += req.Cores
		n.usedMem += req.Memory
		if t.State == TaskRunning {
			n.running++
		}
	}
	r.held = nil
	for _, j := range c.jobList {
		if j.State == JobActive && j.hasWaiting() {
			c.wake(j)
		}
	}
	return c
}

// byPosition orders tasks by group and position, then by number: the order
// of a job's ready list and of a node's tasks after a restore.
func byPosition(a, b *Task) int {
	if a.Group.Seq != b.Group.Seq {
		return a.Group.Seq - b.Group.Seq
	}
	if a.Pos != b.Pos {
		return a.Pos - b.Pos
	}
	return cmp.Compare(a.Num, b.Num)
}

// restoreTask fills t from r, a task of j, and counts it in its job and
// group; a task held by a node gets its Node but is not yet in its list.
func (c *Core) restoreTask(j *Job, r *TaskRecord, t *Task) error {
	g := j.Groups[r.GroupSeq]
	c.taskSeq = max(c.taskSeq, r.Num)
	*t = Task{
		Num: r.Num, Job: j, Group: g, Pos: r.Pos, ID: r.ID, State: r.State, Attempt: r.Attempt, Retries: r.Retries,
		Requeues: r.Requeues, Cur: r.Cur, History: r.History,
	}
	if r.Pos >= g.cursor {
		// Counted above as never materialized; count it by its record instead.
		g.ahead++
		if g.closed {
			j.Counts[TaskCompleted]--
			j.Failed--
			g.done--
		} else {
			j.Counts[TaskActive]--
		}
	}
	j.Tasks[key(t.ID)] = t
	j.Counts[t.State]++
	switch t.State {
	case TaskActive:
		j.ready = append(j.ready, t)
	case TaskCompleted:
		g.done++
		if t.Cur.Result == ResultSuccess {
			j.Succeeded++
		} else {
			j.Failed++
		}
	default:
		n := c.nodes[key(r.Cur.NodeID)]
		if n == nil {
			return fmt.Errorf("task %s/%s: no node %q", j.ID, t.ID, r.Cur.NodeID)
		}
		t.Node = n
		g.live++
	}
	return nil
}
