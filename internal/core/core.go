// Package core is Lote's control plane as a pure state machine: pools, nodes,
// jobs and tasks in memory, changed only by event handlers (a job created,
// tasks added, a node joined, a task finished, time passed). Handlers never do
// I/O, read the clock or start goroutines: `now` is passed in, and every
// consequence — a record to persist, a task to dispatch, a task to revoke or
// kill — leaves through the Effects interface. The server shell holds the one
// Core behind a mutex, persists what it is told with group commit and releases
// dispatches only after their batch committed; tests drive the same handlers
// synchronously with a recording fake.
package core

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lotehq/lote/internal/arrayspec"
	"github.com/lotehq/lote/internal/sched"
)

// Effects receives everything a handler wants done outside the core. Save*
// calls may repeat for one object within a batch; the shell keeps the last.
// Dispatch, Revoke and Kill must not reach an agent before the changes saved
// before them are durable.
type Effects interface {
	SavePool(*Pool)
	SaveNode(*Node)
	SaveJob(*Job)
	SaveGroup(*Group)
	SaveCursor(*Group)
	SaveTask(*Task)
	SaveLog(LogRecord)
	Dispatch(*Node, *Task)
	Revoke(*Node, *Task)
	Kill(n *Node, jobID, taskID string, attempt int)
	DeleteJob(*Job)
	DeletePool(*Pool)
	DeleteNode(*Node)
}

// Config holds the core's policy knobs.
type Config struct {
	// CrashLimit is how many infrastructure requeues a task survives before it
	// fails with category infra.
	CrashLimit int
	// HeartbeatTimeout is how long a node may stay silent before it is
	// unreachable and its tasks are requeued.
	HeartbeatTimeout time.Duration
}

// Defaults of DESIGN §4.
const (
	DefaultCrashLimit       = 5
	DefaultHeartbeatTimeout = 30 * time.Second
	MaxPriority             = 1000
	// maxReadyScan bounds how far Next looks past capped tasks in a job's
	// ready list, so one pass stays cheap.
	maxReadyScan = 64
)

// Errors the API maps to status codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
)

// FieldError is invalid input, naming the wire field at fault.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Core is the in-memory control plane. It is not safe for concurrent use.
type Core struct {
	cfg     Config
	fx      Effects
	pools   map[string]*Pool
	jobs    map[string]*Job
	jobList []*Job // creation order
	nodes   map[string]*Node
	jobSeq  int64
	taskSeq int64 // the last task number handed out
}

// nextTaskNum numbers a task when it is first materialized; the number is
// its durable identity in the store (a dense integer key is far cheaper to
// write than a text one).
func (c *Core) nextTaskNum() int64 {
	c.taskSeq++
	return c.taskSeq
}

// New returns an empty core.
func New(cfg Config, fx Effects) *Core {
	if cfg.CrashLimit == 0 {
		cfg.CrashLimit = DefaultCrashLimit
	}
	if cfg.HeartbeatTimeout == 0 {
		cfg.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	return &Core{
		cfg:   cfg,
		fx:    fx,
		pools: map[string]*Pool{},
		jobs:  map[string]*Job{},
		nodes: map[string]*Node{},
	}
}

// SetEffects replaces the effects sink (used after Restore).
func (c *Core) SetEffects(fx Effects) { c.fx = fx }

// ValidID reports whether id is ≤ 64 characters of [A-Za-z0-9_-].
func ValidID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		b := id[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-') {
			return false
		}
	}
	return true
}

// PoolSpec describes a pool to create.
type PoolSpec struct {
	ID           string
	Provider     string
	SlotsPerNode int
	Fill         FillPolicy
	Prefill      int // -1: default
	TargetNodes  int
	Labels       map[string]string
	JoinToken    string
}

// DefaultPrefill is how many tasks an agent may hold beyond its free slots:
// enough to replace a finished task without waiting for a round trip.
func DefaultPrefill(slots int) int { return max(2*slots, 4) }

// CreatePool adds a pool.
func (c *Core) CreatePool(s PoolSpec, now time.Time) (*Pool, error) {
	if !ValidID(s.ID) {
		return nil, fieldErr("id", "must be 1-64 characters of letters, digits, '_' and '-'")
	}
	if _, ok := c.pools[key(s.ID)]; ok {
		return nil, fmt.Errorf("pool %q: %w", s.ID, ErrConflict)
	}
	if s.SlotsPerNode < 0 || s.SlotsPerNode > 1<<16 {
		return nil, fieldErr("slots_per_node", "must be between 0 and 65536")
	}
	if s.Prefill < -1 || s.Prefill > 1<<16 {
		return nil, fieldErr("prefill", "must be between 0 and 65536")
	}
	p := &Pool{
		ID: s.ID, Provider: s.Provider, SlotsPerNode: s.SlotsPerNode, Fill: s.Fill,
		Prefill: s.Prefill, TargetNodes: s.TargetNodes, Labels: s.Labels, JoinToken: s.JoinToken,
		CreatedAt: now.UnixNano(), Nodes: map[string]*Node{},
	}
	c.pools[key(p.ID)] = p
	c.fx.SavePool(p)
	return p, nil
}

// Pool finds a pool by ID.
func (c *Core) Pool(id string) *Pool { return c.pools[key(id)] }

// Pools lists pools by ID.
func (c *Core) Pools() []*Pool {
	out := make([]*Pool, 0, len(c.pools))
	for _, p := range c.pools {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b *Pool) int { return strings.Compare(key(a.ID), key(b.ID)) })
	return out
}

// SortedNodes lists a pool's nodes by ID. The list is cached until a node
// joins or leaves: every scheduling pass needs it. Callers must not modify it.
func (p *Pool) SortedNodes() []*Node {
	if p.sorted != nil {
		return p.sorted
	}
	out := make([]*Node, 0, len(p.Nodes))
	for _, n := range p.Nodes {
		out = append(out, n)
	}
	slices.SortFunc(out, func(a, b *Node) int { return strings.Compare(key(a.ID), key(b.ID)) })
	p.sorted = out
	return out
}

func (p *Pool) addNode(n *Node) {
	p.Nodes[key(n.ID)] = n
	p.sorted = nil
}

func (p *Pool) removeNode(n *Node) {
	delete(p.Nodes, key(n.ID))
	p.sorted = nil
}

func (p *Pool) prefill(n *Node) int {
	if p.Prefill >= 0 {
		return p.Prefill
	}
	return DefaultPrefill(n.Slots)
}

// JobSpec describes a job to create.
type JobSpec struct {
	ID                string
	PoolID            string
	Priority          int
	MaxRetries        int
	MaxWallClock      time.Duration
	TerminateWhenDone bool
	Owner             string
	Tags              map[string]string
	Env               map[string]string
}

// CreateJob adds a job. An empty ID gets the next free "job-N".
func (c *Core) CreateJob(s JobSpec, now time.Time) (*Job, error) {
	j, err := c.newJob(s, now)
	if err != nil {
		return nil, err
	}
	c.registerJob(j)
	return j, nil
}

// newJob validates a job spec and builds the job without registering it.
func (c *Core) newJob(s JobSpec, now time.Time) (*Job, error) {
	if s.ID != "" && !ValidID(s.ID) {
		return nil, fieldErr("id", "must be 1-64 characters of letters, digits, '_' and '-'")
	}
	p := c.pools[key(s.PoolID)]
	if p == nil {
		return nil, fieldErr("pool_id", "no pool %q", s.PoolID)
	}
	if s.Priority < -MaxPriority || s.Priority > MaxPriority {
		return nil, fieldErr("priority", "must be between -1000 and 1000")
	}
	if s.MaxRetries < -1 {
		return nil, fieldErr("max_retries", "must be -1 (unlimited) or more")
	}
	if s.ID == "" {
		for n := c.jobSeq + 1; ; n++ {
			id := "job-" + strconv.FormatInt(n, 10)
			if c.jobs[key(id)] == nil {
				s.ID = id
				break
			}
		}
	}
	if c.jobs[key(s.ID)] != nil {
		return nil, fmt.Errorf("job %q: %w", s.ID, ErrConflict)
	}
	return &Job{
		ID: s.ID, Pool: p, Priority: s.Priority, MaxRetries: s.MaxRetries,
		MaxWallClock: s.MaxWallClock, TerminateWhenDone: s.TerminateWhenDone,
		Owner: s.Owner, Tags: s.Tags, Env: s.Env, CreatedAt: now.UnixNano(),
		Seq: c.jobSeq + 1, Tasks: map[string]*Task{},
	}, nil
}

func (c *Core) registerJob(j *Job) {
	c.jobSeq = j.Seq
	c.addJob(j)
	c.fx.SaveJob(j)
}

func (c *Core) addJob(j *Job) {
	c.jobs[key(j.ID)] = j
	c.jobList = append(c.jobList, j)
}

// Job finds a job by ID.
func (c *Core) Job(id string) *Job { return c.jobs[key(id)] }

// Jobs lists jobs in creation order.
func (c *Core) Jobs() []*Job { return c.jobList }

// Node finds a node by ID.
func (c *Core) Node(id string) *Node { return c.nodes[key(id)] }

// TaskAdd is a batch of tasks for one job: explicit items, or one template
// over an array spec or over lines.
type TaskAdd struct {
	Kind     GroupKind
	Items    []Item
	Template *Template
	Spec     arrayspec.Spec
	Lines    []string
	IDPrefix string
}

// AddTasks adds a group of tasks to a job, all or nothing.
func (c *Core) AddTasks(j *Job, a TaskAdd, now time.Time) (*Group, error) {
	g, err := c.prepareGroup(j, a, now)
	if err != nil {
		return nil, err
	}
	c.addGroup(g)
	return g, nil
}

// CreateJobWithTasks creates a job and its first group atomically: when the
// tasks are refused, the job is not created either.
func (c *Core) CreateJobWithTasks(s JobSpec, a TaskAdd, now time.Time) (*Job, *Group, error) {
	j, err := c.newJob(s, now)
	if err != nil {
		return nil, nil, err
	}
	g, err := c.prepareGroup(j, a, now)
	if err != nil {
		return nil, nil, err
	}
	c.registerJob(j)
	c.addGroup(g)
	return j, g, nil
}

// prepareGroup validates a task batch against a job without changing either.
func (c *Core) prepareGroup(j *Job, a TaskAdd, now time.Time) (*Group, error) {
	if j.State != JobActive {
		return nil, fmt.Errorf("job %q is %s: %w", j.ID, j.State, ErrConflict)
	}
	g := &Group{
		Job: j, Seq: len(j.Groups), Kind: a.Kind, Template: a.Template, Spec: a.Spec,
		Lines: a.Lines, Items: a.Items, IDPrefix: a.IDPrefix, SubmittedAt: now.UnixNano(),
	}
	switch a.Kind {
	case GroupExplicit:
		g.count = len(a.Items)
		seen := make(map[string]struct{}, len(a.Items))
		for i, it := range a.Items {
			k := key(it.ID)
			if _, dup := seen[k]; dup {
				return nil, fieldErr(fmt.Sprintf("tasks[%d].id", i), "duplicate task ID %q", it.ID)
			}
			seen[k] = struct{}{}
			if c.taskIDTaken(j, it.ID) {
				return nil, fmt.Errorf("task %q already exists in job %q: %w", it.ID, j.ID, ErrConflict)
			}
		}
	case GroupArray:
		g.count = a.Spec.Count()
		for _, o := range j.Groups {
			if o.Kind == GroupArray && strings.EqualFold(o.IDPrefix, g.IDPrefix) && o.Spec.Overlaps(g.Spec) {
				return nil, fmt.Errorf("array %s overlaps array %s of job %q (use an ID prefix): %w",
					g.Spec.String(), o.Spec.String(), j.ID, ErrConflict)
			}
		}
		if err := c.checkPrefixClash(j, g); err != nil {
			return nil, err
		}
	case GroupLines:
		g.count = len(a.Lines)
		if err := c.checkPrefixClash(j, g); err != nil {
			return nil, err
		}
	}
	if g.count == 0 {
		return nil, fieldErr("tasks", "no tasks to add")
	}
	return g, nil
}

func (c *Core) addGroup(g *Group) {
	j := g.Job
	j.Groups = append(j.Groups, g)
	j.Counts[TaskActive] += g.count
	c.fx.SaveGroup(g)
	c.wake(j)
}

// checkPrefixClash rejects an array or line group whose generated IDs could
// collide with tasks already in the job.
func (c *Core) checkPrefixClash(j *Job, g *Group) error {
	for _, o := range j.Groups {
		if o == g {
			continue
		}
		switch o.Kind {
		case GroupExplicit:
			for _, it := range o.Items {
				if pos, ok := g.PosOf(it.ID); ok && pos < g.count {
					return fmt.Errorf("task %q already exists in job %q: %w", it.ID, j.ID, ErrConflict)
				}
			}
		case GroupLines, GroupArray:
			if (o.Kind == GroupLines || g.Kind == GroupLines) && strings.EqualFold(o.IDPrefix, g.IDPrefix) {
				return fmt.Errorf("tasks with ID prefix %q already exist in job %q (use an ID prefix): %w",
					g.IDPrefix, j.ID, ErrConflict)
			}
		}
	}
	return nil
}

func (c *Core) taskIDTaken(j *Job, id string) bool {
	if _, ok := j.Tasks[key(id)]; ok {
		return true
	}
	for _, g := range j.Groups {
		if _, ok := g.PosOf(id); ok {
			return true
		}
	}
	return false
}

// FindTask finds a task by ID: a materialized Task, or else the group and
// position of a task that never left active.
func (c *Core) FindTask(j *Job, id string) (*Task, *Group, int, bool) {
	if t, ok := j.Tasks[key(id)]; ok {
		return t, t.Group, t.Pos, true
	}
	for _, g := range j.Groups {
		if pos, ok := g.PosOf(id); ok && pos >= g.cursor {
			return nil, g, pos, true
		}
	}
	return nil, nil, 0, false
}

// wake puts a job with waiting tasks into its pool's scheduling list.
func (c *Core) wake(j *Job) {
	p := j.Pool
	p.dirty = true
	if !j.inPool {
		j.inPool = true
		p.jobs = append(p.jobs, j)
	}
}

// Join is what an agent says when it connects.
type Join struct {
	NodeID    string // set when the agent already has an identity (checked by the shell)
	Name      string // proposed ID for a new node
	Pool      *Pool
	Hostname  string
	Slots     int
	Cores     int
	Memory    int64
	Labels    map[string]string
	TokenHash string // new node's credential hash
	Known     []AgentTask
}

// AgentPhase is where an agent says a task is.
type AgentPhase uint8

// Agent phases.
const (
	PhaseQueued AgentPhase = iota
	PhaseRunning
	PhaseFinished
)

// AgentTask is a task an agent knows about when it (re)connects.
type AgentTask struct {
	JobID   string
	TaskID  string
	Attempt int
	Phase   AgentPhase
}

// Reconcile is the core's answer to a join: what the agent must drop and
// which of its tasks stay. Tasks the agent lost are requeued by the core and
// tasks it never received are dispatched again through Effects.
type Reconcile struct {
	Drop []AgentTask
	Keep []*Task
}

// NodeJoin registers a new node or takes back a known one.
func (c *Core) NodeJoin(jn Join, now time.Time) (*Node, Reconcile, error) {
	var rec Reconcile
	if jn.Slots <= 0 {
		return nil, rec, fieldErr("slots", "must be at least 1")
	}
	n := c.nodes[key(jn.NodeID)]
	if jn.NodeID != "" && n == nil {
		return nil, rec, fmt.Errorf("node %q: %w", jn.NodeID, ErrNotFound)
	}
	if n == nil {
		base := jn.Name
		if !ValidID(base) {
			base = "node"
		}
		id := base
		for i := 2; c.nodes[key(id)] != nil; i++ {
			suffix := "-" + strconv.Itoa(i)
			id = base[:min(len(base), 64-len(suffix))] + suffix
		}
		n = &Node{ID: id, Pool: jn.Pool, TokenHash: jn.TokenHash, JoinedAt: now.UnixNano()}
		c.nodes[key(id)] = n
		jn.Pool.addNode(n)
	}
	n.Hostname, n.Slots, n.Cores, n.Memory, n.Labels = jn.Hostname, jn.Slots, jn.Cores, jn.Memory, jn.Labels
	n.Connected, n.Unreachable, n.LastSeen = true, false, now.UnixNano()
	n.Pool.dirty = true
	c.fx.SaveNode(n)

	known := make(map[taskRef]AgentTask, len(jn.Known))
	for _, k := range jn.Known {
		known[taskRef{key(k.JobID), key(k.TaskID)}] = k
	}
	for _, t := range slices.Clone(n.tasks) {
		k, ok := known[taskRef{key(t.Job.ID), key(t.ID)}]
		switch {
		case ok && k.Attempt == t.Attempt:
			delete(known, taskRef{key(t.Job.ID), key(t.ID)})
			rec.Keep = append(rec.Keep, t)
			if k.Phase == PhaseRunning && t.State == TaskAssigned {
				c.markRunning(t, now.UnixNano())
				c.fx.SaveTask(t)
			}
		case t.State == TaskAssigned && t.revoking:
			// The agent never started it and the revoke is moot: back to the
			// queue with its attempt unused, as a confirmed revoke does.
			c.unassign(t)
		case t.State == TaskAssigned:
			c.fx.Dispatch(n, t) // never received: send again, same attempt
		default:
			c.requeue(t, "the node lost the task", now)
		}
	}
	for _, k := range known {
		if k.Phase != PhaseFinished {
			rec.Drop = append(rec.Drop, k)
		}
	}
	slices.SortFunc(rec.Drop, func(a, b AgentTask) int {
		return strings.Compare(a.JobID+"/"+a.TaskID, b.JobID+"/"+b.TaskID)
	})
	return n, rec, nil
}

type taskRef struct{ job, task string }

// NodeDisconnected records that a node's stream ended. Its tasks stay
// assigned until the heartbeat timeout: a reconnect within it loses nothing.
func (c *Core) NodeDisconnected(n *Node, now time.Time) {
	n.Connected = false
	n.Pool.dirty = true
}

// Heartbeat records that a node is alive.
func (c *Core) Heartbeat(n *Node, now time.Time) { n.LastSeen = now.UnixNano() }

// SetDrained stops (or resumes) dispatch to a node; its tasks run on.
func (c *Core) SetDrained(n *Node, drained bool) {
	n.Drained = drained
	n.Pool.dirty = true
	c.fx.SaveNode(n)
}

// Tick declares silent nodes unreachable and requeues their tasks.
func (c *Core) Tick(now time.Time) {
	deadline := now.Add(-c.cfg.HeartbeatTimeout).UnixNano()
	for _, p := range c.Pools() {
		for _, n := range p.SortedNodes() {
			if n.Unreachable || n.LastSeen > deadline {
				continue
			}
			n.Unreachable = true
			n.Connected = false
			for _, t := range slices.Clone(n.tasks) {
				c.requeue(t, "node "+n.ID+" missed its heartbeats", now)
			}
			p.dirty = true
		}
	}
}

// liveTask finds a task a node reports on, or nil when the report is stale:
// another attempt, another node, or already completed.
func (c *Core) liveTask(n *Node, jobID, taskID string, attempt int) *Task {
	j := c.jobs[key(jobID)]
	if j == nil {
		return nil
	}
	t := j.Tasks[key(taskID)]
	if t == nil || t.Node != n || t.Attempt != attempt || t.State == TaskCompleted || t.State == TaskActive {
		return nil
	}
	return t
}

// TaskStarted records that an agent started a task's process.
func (c *Core) TaskStarted(n *Node, jobID, taskID string, attempt int, at time.Time) {
	t := c.liveTask(n, jobID, taskID, attempt)
	if t == nil || t.State == TaskRunning {
		return
	}
	t.revoking = false
	c.markRunning(t, at.UnixNano())
	c.fx.SaveTask(t)
}

func (c *Core) markRunning(t *Task, at int64) {
	c.setState(t, TaskRunning)
	t.Cur.StartedAt = at
	t.Node.running++
}

// Finish is an agent's report that an attempt ended.
type Finish struct {
	JobID, TaskID string
	Attempt       int
	ExitCode      int
	Signal        int
	TimedOut      bool
	Lost          bool // the process was lost with the agent's spawner: infrastructure, not the user
	StartErr      string
	StartedAt     int64
	EndedAt       int64
	UserCPU       int64
	SysCPU        int64
	MaxRSS        int64
	Stdout        []byte
	Stderr        []byte
}

// LogRecord is a finished attempt's captured output, stored packed.
type LogRecord struct {
	JobID, TaskID string
	Attempt       int
	Stdout        []byte
	Stderr        []byte
}

// TaskFinished records an attempt's end and decides what follows: success,
// a retry, or failure. Reports on stale attempts are ignored.
func (c *Core) TaskFinished(n *Node, f Finish, now time.Time) {
	t := c.liveTask(n, f.JobID, f.TaskID, f.Attempt)
	if t == nil {
		return
	}
	if len(f.Stdout) > 0 || len(f.Stderr) > 0 {
		c.fx.SaveLog(LogRecord{JobID: t.Job.ID, TaskID: t.ID, Attempt: t.Attempt, Stdout: f.Stdout, Stderr: f.Stderr})
	}
	a := &t.Cur
	if f.StartedAt != 0 {
		a.StartedAt = f.StartedAt
	}
	a.EndedAt, a.ExitCode, a.Signal = f.EndedAt, f.ExitCode, f.Signal
	a.UserCPU, a.SysCPU, a.MaxRSS = f.UserCPU, f.SysCPU, f.MaxRSS
	if f.Lost {
		c.requeue(t, "the task's process was lost with the node's spawner", now)
		return
	}
	switch {
	case f.StartErr != "":
		a.Result, a.Category, a.Message = ResultFailure, CategoryUser, f.StartErr
	case f.TimedOut:
		a.Result, a.Category = ResultFailure, CategoryTimeout
		a.Message = "killed after max wall clock " + time.Duration(t.Template().MaxWallClock).String()
	case f.ExitCode != 0 || f.Signal != 0:
		a.Result, a.Category = ResultFailure, CategoryUser
		if f.Signal != 0 {
			a.Message = "killed by signal " + strconv.Itoa(f.Signal)
		} else {
			a.Message = "exit code " + strconv.Itoa(f.ExitCode)
		}
	default:
		a.Result, a.Category = ResultSuccess, CategoryNone
	}
	c.release(t)
	if a.Result == ResultFailure && c.retriesLeft(t) {
		t.Retries++
		c.toReady(t)
		return
	}
	c.complete(t, now)
}

func (c *Core) retriesLeft(t *Task) bool {
	mr := t.Template().MaxRetries
	return mr < 0 || t.Retries < mr
}

// requeue returns a task lost to infrastructure to the queue without using a
// retry, until the crash limit.
func (c *Core) requeue(t *Task, why string, now time.Time) {
	a := &t.Cur
	a.Result, a.Category, a.Message = ResultFailure, CategoryInfra, why
	if a.EndedAt == 0 {
		a.EndedAt = now.UnixNano()
	}
	c.release(t)
	if t.Requeues < c.cfg.CrashLimit {
		t.Requeues++
		c.toReady(t)
		return
	}
	a.Message = why + " (crash limit " + strconv.Itoa(c.cfg.CrashLimit) + " reached)"
	c.complete(t, now)
}

// release detaches a task from its node.
func (c *Core) release(t *Task) {
	n := t.Node
	if n == nil {
		return
	}
	last := n.tasks[len(n.tasks)-1]
	n.tasks[t.nodeSlot] = last
	last.nodeSlot = t.nodeSlot
	n.tasks = n.tasks[:len(n.tasks)-1]
	req := &t.Template().Req
	n.usedSlots -= max(req.Slots, 1)
	n.usedCores -= req.Cores
	n.usedMem -= req.Memory
	if t.State == TaskRunning {
		n.running--
	}
	t.Group.live--
	t.revoking = false
	n.Pool.dirty = true
}

// toReady puts a task back in its job's queue for another attempt.
func (c *Core) toReady(t *Task) {
	if t.Cur.Number != 0 {
		t.History = append(t.History, t.Cur)
	}
	t.Cur = AttemptRecord{}
	c.setState(t, TaskActive)
	t.Node = nil
	t.Job.ready = append(t.Job.ready, t)
	c.fx.SaveTask(t)
	c.wake(t.Job)
}

func (c *Core) complete(t *Task, now time.Time) {
	c.setState(t, TaskCompleted)
	t.Node = nil
	t.Group.done++
	j := t.Job
	if t.Cur.Result == ResultSuccess {
		j.Succeeded++
	} else {
		j.Failed++
	}
	c.fx.SaveTask(t)
	if j.TerminateWhenDone && j.State == JobActive && j.Counts[TaskCompleted] == j.total() {
		j.State = JobCompleted
		j.CompletedAt = now.UnixNano()
		c.fx.SaveJob(j)
	}
}

func (j *Job) total() int {
	n := 0
	for _, v := range j.Counts {
		n += v
	}
	return n
}

func (c *Core) setState(t *Task, s TaskState) {
	t.Job.Counts[t.State]--
	t.Job.Counts[s]++
	t.State = s
}

// RevokeAnswered records an agent's answer to a revoke: a task it had not
// started goes back to the queue with its attempt number unused.
func (c *Core) RevokeAnswered(n *Node, jobID, taskID string, attempt int, revoked bool) {
	t := c.liveTask(n, jobID, taskID, attempt)
	if t == nil || !t.revoking {
		return
	}
	if !revoked || t.State != TaskAssigned {
		t.revoking = false
		return
	}
	c.unassign(t)
}

// unassign takes back an assigned task that never started: it goes to the
// front of its job's queue and its attempt number is not used up.
func (c *Core) unassign(t *Task) {
	c.release(t)
	t.Attempt--
	t.Cur = AttemptRecord{}
	c.setState(t, TaskActive)
	t.Node = nil
	j := t.Job
	j.ready = append([]*Task{t}, j.ready...)
	c.fx.SaveTask(t)
	c.wake(j)
}

// Schedule runs a placement pass over every pool that changed.
func (c *Core) Schedule(now time.Time) {
	for _, p := range c.Pools() {
		if p.dirty {
			p.dirty = false
			c.schedulePool(p, now.UnixNano())
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
	for _, j := range p.jobs {
		q := &jobQueue{c: c, job: j, nodes: nodes, now: now}
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
			j.inPool = false
			j.PendingReason = ""
			continue
		}
		kept = append(kept, j)
		req, ok := q.Next()
		switch {
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
		if j.Pool == p && j.Priority < prio && j.Counts[TaskAssigned] > 0 {
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

func (n *Node) schedulable() bool { return n.Connected && !n.Unreachable && !n.Drained }

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
}

func (q *jobQueue) Priority() int { return q.job.Priority }

func (q *jobQueue) Next() (sched.Request, bool) {
	j := q.job
	q.task, q.group = nil, nil
	if j.State != JobActive {
		return sched.Request{}, false
	}
	for i, t := range j.ready {
		if i == maxReadyScan {
			break
		}
		if t.Group.capOK() {
			q.task, q.at = t, i
			return request(t.Template()), true
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
			return request(g.TemplateAt(g.cursor)), true
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
