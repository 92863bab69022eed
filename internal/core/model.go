package core

import (
	"strconv"
	"strings"
	"time"

	"github.com/lotehq/lote/internal/arrayspec"
)

// TaskState is where a task is in its life:
//
//	active ──dispatch──► assigned ──started──► running ──finished──► completed
//	                        └──staging──► preparing ──started──┘
//	  ▲                     │                     │
//	  └──── revoked (not ───┘                     │
//	  │     yet started)                          │
//	  └──── retry (non-zero exit, retries left) ──┤
//	  └──── requeue (node lost, crash limit left) ┘
//
// A task leaves completed only by an explicit retry (issue 3).
type TaskState uint8

// Task states; the order is the display order of task_counts.
const (
	TaskActive TaskState = iota
	TaskAssigned
	TaskPreparing
	TaskRunning
	TaskCompleted
)

var taskStateNames = [...]string{"active", "assigned", "preparing", "running", "completed"}

func (s TaskState) String() string { return taskStateNames[s] }

// ParseTaskState reads a wire task state.
func ParseTaskState(s string) (TaskState, bool) {
	for i, n := range taskStateNames {
		if n == s {
			return TaskState(i), true
		}
	}
	return 0, false
}

// Result is the outcome of a completed task.
type Result uint8

// Results.
const (
	ResultNone Result = iota
	ResultSuccess
	ResultFailure
)

func (r Result) String() string { return [...]string{"", "success", "failure"}[r] }

// Category says why a task failed.
type Category uint8

// Failure categories of DESIGN §2.
const (
	CategoryNone Category = iota
	CategoryUser
	CategoryTimeout
	CategoryStaging
	CategoryInfra
	CategoryCancelled
)

func (c Category) String() string {
	return [...]string{"", "user", "timeout", "staging", "infra", "cancelled"}[c]
}

// NodeState is the state of a node as users see it.
type NodeState uint8

// Node states of DESIGN §2.
const (
	NodeStarting NodeState = iota
	NodeIdle
	NodeRunning
	NodeOffline
	NodeUnreachable
	NodeLeaving
	NodeWaitingForStartTask
	NodeStartTaskFailed
	NodePreempted
)

var nodeStateNames = [...]string{"starting", "idle", "running", "offline", "unreachable", "leaving",
	"waiting_for_start_task", "start_task_failed", "preempted"}

// StartTask prepares every node of a pool as it joins (Azure Batch's start
// task): installs, mounts, warm caches. The agent retries it up to
// MaxRetries times; with WaitForSuccess the node takes no task until it
// succeeded, and none at all once it failed for good.
type StartTask struct {
	Command        []string          `json:"command"`
	Shell          bool              `json:"shell,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	MaxRetries     int               `json:"max_retries,omitempty"`
	WaitForSuccess bool              `json:"wait_for_success"`
	// Inputs are staged into its working directory before each attempt.
	Inputs []InputFile `json:"inputs,omitempty"`
}

// StartTaskPhase is where a node is with its pool's start task.
type StartTaskPhase uint8

// Start task phases; the zero value is a node of a pool without one, or
// one that joined before its pool had one.
const (
	StartTaskNone StartTaskPhase = iota
	StartTaskRunning
	StartTaskSucceeded
	StartTaskFailed
)

func (s NodeState) String() string { return nodeStateNames[s] }

// FillPolicy says how tasks are spread over a pool's nodes.
type FillPolicy uint8

// Fill policies.
const (
	FillSpread FillPolicy = iota
	FillPack
)

func (f FillPolicy) String() string { return [...]string{"spread", "pack"}[f] }

// ParseFillPolicy reads a wire fill policy.
func ParseFillPolicy(s string) (FillPolicy, bool) {
	switch s {
	case "", "spread":
		return FillSpread, true
	case "pack":
		return FillPack, true
	}
	return 0, false
}

// JobState is the state of a job.
type JobState uint8

// Job states.
const (
	JobActive JobState = iota
	JobTerminating
	JobCompleted
)

func (s JobState) String() string { return [...]string{"active", "terminating", "completed"}[s] }

// Requirements are what one task needs of a node. Zero cores or memory means
// "not stated": the task is then only counted in slots.
type Requirements struct {
	Slots  int               `json:"slots,omitempty"`
	Cores  int               `json:"cores,omitempty"`
	Memory int64             `json:"memory,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Template is what a task runs. An array's tasks share one template; the
// agent expands placeholders per index.
type Template struct {
	Command      []string          `json:"command"`
	Shell        bool              `json:"shell,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	Req          Requirements      `json:"req"`
	MaxRetries   int               `json:"max_retries"`
	MaxWallClock time.Duration     `json:"max_wall_clock,omitempty"`
	Cwd          string            `json:"cwd,omitempty"`
	Inputs       []InputFile       `json:"inputs,omitempty"`
	Outputs      []OutputFile      `json:"outputs,omitempty"`
	// Apps are application packages as NAME@VERSION, resolved at submission.
	Apps []string `json:"apps,omitempty"`
}

// InputFile is a resource file the agent stages into the working directory
// before the process starts. Source and Path may hold placeholders.
type InputFile struct {
	Source string `json:"source"`
	Path   string `json:"path"`
	Mode   uint32 `json:"mode,omitempty"` // 0 = read-only default
}

// UploadWhen says after which outcomes an output file is uploaded.
type UploadWhen uint8

// Upload conditions; the zero value is the default, success.
const (
	UploadOnSuccess UploadWhen = iota
	UploadOnFailure
	UploadAlways
)

func (w UploadWhen) String() string { return [...]string{"success", "failure", "always"}[w] }

// ParseUploadWhen reads a wire upload condition ("" = success).
func ParseUploadWhen(s string) (UploadWhen, bool) {
	switch s {
	case "", "success":
		return UploadOnSuccess, true
	case "failure":
		return UploadOnFailure, true
	case "always":
		return UploadAlways, true
	}
	return 0, false
}

// OutputFile is uploaded by the agent after the process ended, when When
// holds. Pattern and Dest may hold placeholders.
type OutputFile struct {
	Pattern string     `json:"pattern"`
	Dest    string     `json:"dest"`
	When    UploadWhen `json:"when,omitempty"`
}

// GroupKind says how a group's tasks are named and what they run.
type GroupKind uint8

// Group kinds.
const (
	GroupExplicit GroupKind = iota // a list of tasks, each with its own ID and template
	GroupArray                     // one template over an index spec; task ID = prefix + index
	GroupLines                     // one template per line; index = line number from 0
)

// Item is one explicitly listed task of an explicit group.
type Item struct {
	ID       string   `json:"id"`
	Template Template `json:"template"`
}

// Group is one submission of tasks to a job, stored compactly: tasks that have
// never left active exist only as a position in the group, below cursor.
type Group struct {
	Job         *Job
	Seq         int
	Kind        GroupKind
	Template    *Template // GroupArray, GroupLines
	Spec        arrayspec.Spec
	Lines       []string
	Items       []Item
	IDPrefix    string
	SubmittedAt int64

	count  int            // number of tasks in the group
	cursor int            // positions below cursor have been materialized
	live   int            // tasks of this group in assigned/preparing/running, for the % cap
	ahead  int            // tasks materialized at or beyond cursor (out of order)
	done   int            // completed tasks, so waiting on a job's groups is O(groups)
	closed bool           // terminated: positions never materialized count as cancelled
	byID   map[string]int // explicit groups: lower-cased task ID → position
}

// Count is the number of tasks in the group.
func (g *Group) Count() int { return g.count }

// Closed reports whether the group's job was terminated: its positions that
// never left active are completed, cancelled.
func (g *Group) Closed() bool { return g.closed }

// Done counts the group's completed tasks.
func (g *Group) Done() int { return g.done }

// Cursor is the first position not yet materialized.
func (g *Group) Cursor() int { return g.cursor }

// Limit is the group's concurrency cap (0 = none).
func (g *Group) Limit() int { return g.Spec.Limit }

// IndexAt is the array index of position pos (-1 for explicit groups).
func (g *Group) IndexAt(pos int) int {
	switch g.Kind {
	case GroupArray:
		return g.Spec.At(pos)
	case GroupLines:
		return pos
	}
	return -1
}

// IDAt is the task ID of position pos.
func (g *Group) IDAt(pos int) string {
	if g.Kind == GroupExplicit {
		return g.Items[pos].ID
	}
	return g.IDPrefix + strconv.Itoa(g.IndexAt(pos))
}

// TemplateAt is the template of position pos.
func (g *Group) TemplateAt(pos int) *Template {
	if g.Kind == GroupExplicit {
		return &g.Items[pos].Template
	}
	return g.Template
}

// indexItems maps an explicit group's task IDs to positions, so a job with
// many explicit tasks checks a new ID in constant time.
func (g *Group) indexItems() {
	g.byID = make(map[string]int, len(g.Items))
	for i := range g.Items {
		g.byID[key(g.Items[i].ID)] = i
	}
}

// PosOf finds the position of a task ID that was never materialized.
func (g *Group) PosOf(id string) (int, bool) {
	switch g.Kind {
	case GroupExplicit:
		if g.byID == nil {
			g.indexItems()
		}
		pos, ok := g.byID[key(id)]
		return pos, ok
	}
	rest, ok := cutPrefixFold(id, g.IDPrefix)
	if !ok {
		return 0, false
	}
	idx, err := strconv.Atoi(rest)
	if err != nil || idx < 0 || strconv.Itoa(idx) != rest {
		return 0, false
	}
	if g.Kind == GroupLines {
		return idx, idx < g.count
	}
	return positionOf(g.Spec, idx)
}

// positionOf finds where idx stands in spec, without enumerating it.
func positionOf(spec arrayspec.Spec, idx int) (int, bool) {
	base := 0
	for _, r := range spec.Ranges {
		n := (r.Last-r.First)/r.Step + 1
		if idx >= r.First && idx <= r.Last && (idx-r.First)%r.Step == 0 {
			return base + (idx-r.First)/r.Step, true
		}
		base += n
	}
	return 0, false
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

// AttemptRecord keeps what one finished attempt did.
type AttemptRecord struct {
	Number     int    `json:"n"`
	NodeID     string `json:"node"`
	AssignedAt int64  `json:"as"`
	// PreparingAt is when staging began (0 when there was nothing to stage).
	PreparingAt int64    `json:"pr,omitempty"`
	StartedAt   int64    `json:"st,omitempty"`
	EndedAt     int64    `json:"en,omitempty"`
	Result      Result   `json:"r"`
	Category    Category `json:"c"`
	ExitCode    int      `json:"x"`
	Signal      int      `json:"sig,omitempty"`
	UserCPU     int64    `json:"u,omitempty"`
	SysCPU      int64    `json:"s,omitempty"`
	MaxRSS      int64    `json:"rss,omitempty"`
	Message     string   `json:"m,omitempty"`
}

// Task is a task that has left active at least once. Tasks still waiting for
// their first dispatch are positions in their group, not Task values.
type Task struct {
	Job   *Job
	Group *Group
	Pos   int
	ID    string
	Num   int64 // unique across the server, assigned at materialization
	State TaskState

	// Attempt is the number of the current (or last) attempt; 0 before the
	// first dispatch. Reports naming another attempt are ignored.
	Attempt  int
	Retries  int // retries used by failures (non-zero exit, timeout)
	Requeues int // infrastructure requeues (node lost), bounded by the crash limit

	Node     *Node
	Cur      AttemptRecord   // the current or last attempt
	History  []AttemptRecord // earlier attempts
	revoking bool
	nodeSlot int // index in Node.tasks
}

// Template is what the task runs.
func (t *Task) Template() *Template { return t.Group.TemplateAt(t.Pos) }

// Index is the task's array index, or -1.
func (t *Task) Index() int { return t.Group.IndexAt(t.Pos) }

// Job is a container of tasks bound to a pool.
type Job struct {
	ID   string
	Pool *Pool // Pools[0]
	// Pools are where the job's tasks may run, in order: a task goes to a
	// later pool only while the earlier ones have no free slot (bursting).
	Pools             []*Pool
	Priority          int
	MaxRetries        int
	MaxWallClock      time.Duration
	TerminateWhenDone bool
	Owner             string
	Tags              map[string]string
	Env               map[string]string
	State             JobState
	CreatedAt         int64
	CompletedAt       int64
	Seq               int64 // creation order, for stable round-robin
	Groups            []*Group
	Tasks             map[string]*Task // materialized tasks by lower-cased ID
	Counts            [5]int           // tasks by TaskState
	Succeeded         int
	Failed            int
	PendingReason     string
	// SlotSeconds and Cost sum the job's ended attempts: run time × slots,
	// priced at the per-slot share of their node's price per hour.
	SlotSeconds float64
	NodeSeconds float64
	Cost        float64
	// PrepTask runs once on a node before the job's first task there;
	// ReleaseTask runs on the nodes that ran the job's tasks when it ends.
	PrepTask    *StartTask
	ReleaseTask *StartTask
	// barred are the nodes (by key) whose job preparation task failed: the
	// job's tasks never go there again (Azure Batch). Durable, as
	// JobRecord.BarredNodes.
	barred    map[string]bool
	ready     []*Task // materialized tasks waiting to run again, FIFO
	openGroup int     // first group whose cursor has not reached its count
	inPool    uint8   // bit i: in Pools[i]'s scheduling list
	deleted   bool
}

// Deleted reports whether the job was deleted (its records go with it).
func (j *Job) Deleted() bool { return j.deleted }

// Node is one agent that joined a pool.
type Node struct {
	ID        string
	Pool      *Pool
	Hostname  string
	Slots     int
	Cores     int
	Memory    int64
	Labels    map[string]string
	TokenHash string
	Drained   bool
	JoinedAt  int64

	Connected   bool
	Unreachable bool
	LastSeen    int64
	StartTask   StartTaskPhase

	// Spot nodes are cheaper and may be preempted (Azure's low-priority
	// nodes). A provisioned node was asked of the pool's provider at
	// RequestedAt and has not joined yet. A preempted node takes no task; a
	// leaving one takes none and goes once its tasks ended
	// (deallocation task_completion).
	Spot        bool
	Provisioned bool
	RequestedAt int64
	Preempted   bool
	Leaving     bool

	tasks     []*Task // assigned, preparing and running tasks
	usedSlots int
	usedCores int
	usedMem   int64
	running   int
	// runAvg is a moving average of the node's task run times (ns), which
	// sizes its default prefill. Not persisted: a restart starts it afresh.
	runAvg int64
}

// State is the node's state as users see it.
func (n *Node) State() NodeState {
	switch {
	case n.Provisioned:
		return NodeStarting
	case n.Preempted:
		return NodePreempted
	case n.Leaving:
		return NodeLeaving
	case n.Unreachable:
		return NodeUnreachable
	case n.StartTask == StartTaskFailed && n.Pool.StartTask != nil && n.Pool.StartTask.WaitForSuccess:
		return NodeStartTaskFailed
	case n.StartTask == StartTaskRunning && n.Pool.StartTask != nil && n.Pool.StartTask.WaitForSuccess:
		return NodeWaitingForStartTask
	case n.Drained:
		return NodeOffline
	case len(n.tasks) > 0:
		return NodeRunning
	}
	return NodeIdle
}

// Tasks are the node's assigned and running tasks.
func (n *Node) Tasks() []*Task { return n.tasks }

// Running counts the node's running tasks.
func (n *Node) Running() int { return n.running }

// Pool is a named set of nodes sharing slots per node and a fill policy.
type Pool struct {
	ID           string
	Provider     string
	SlotsPerNode int
	Fill         FillPolicy
	Prefill      int
	TargetNodes  int
	Labels       map[string]string
	JoinToken    string
	CreatedAt    int64
	AllowRoot    bool       // see PoolSpec.AllowRoot
	StartTask    *StartTask // nil: none
	Apps         []string   // see PoolSpec.Apps
	Scaling      Scaling    // see PoolSpec.Scaling
	Usage        Usage      // node time and cost of the pool's removed nodes
	NodeSeq      int        // last number used for a provisioned node's ID

	Nodes  map[string]*Node // by lower-cased ID
	sorted []*Node          // Nodes by ID, rebuilt after a change
	jobs   []*Job           // active jobs with tasks waiting to be dispatched
	dirty  bool             // something changed that a scheduling pass may act on
}

// key is the case-insensitive identity of an ID.
func key(id string) string { return strings.ToLower(id) }
