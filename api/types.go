// Package api holds Lote's wire types (the JSON shapes of the REST API and of
// `-o json` output) and the Go client the CLI uses. It imports nothing from
// internal/: the domain model lives in internal/core and is converted at the
// API edge, so the wire format can stay stable while the core changes.
package api

import (
	"encoding/json"
	"fmt"
	"reflect"
	"time"
)

// Version is the schema version carried by every `-o json` document.
const Version = "1"

// Duration is a time.Duration that travels as a Go duration string ("30s").
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON accepts a Go duration string; negative durations are refused.
// Errors are *json.UnmarshalTypeError, so a decoder names the field at fault.
func (d *Duration) UnmarshalJSON(b []byte) error {
	bad := func(what string) error {
		return &json.UnmarshalTypeError{Value: what, Type: reflect.TypeFor[Duration]()}
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return bad(fmt.Sprintf("%.40s", b))
	}
	if s == "" {
		*d = 0
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return bad(fmt.Sprintf("%.40q", s))
	}
	if v < 0 {
		return bad(fmt.Sprintf("negative %q", s))
	}
	*d = Duration(v)
	return nil
}

// Task states, node states, results and failure categories as they appear on
// the wire. They are the words of DESIGN §2.
const (
	TaskActive    = "active"
	TaskAssigned  = "assigned"
	TaskPreparing = "preparing"
	TaskRunning   = "running"
	TaskCompleted = "completed"

	ResultSuccess = "success"
	ResultFailure = "failure"

	JobActive      = "active"
	JobTerminating = "terminating"
	JobCompleted   = "completed"
)

// Pool is a named set of identical nodes.
type Pool struct {
	ID           string            `json:"id"`
	Provider     string            `json:"provider"`
	SlotsPerNode int               `json:"slots_per_node"`
	FillPolicy   string            `json:"fill_policy"`
	Prefill      int               `json:"prefill"`
	TargetNodes  int               `json:"target_nodes"`
	CurrentNodes int               `json:"current_nodes"`
	NodeCounts   map[string]int    `json:"node_counts"`
	Labels       map[string]string `json:"labels,omitempty"`
	JoinToken    string            `json:"join_token,omitempty"`
	CreatedAt    time.Time         `json:"created_at"`
	// AllowRoot says tasks may run as root on agents running as root;
	// otherwise those agents run them as their --run-as user.
	AllowRoot bool       `json:"allow_root"`
	StartTask *StartTask `json:"start_task,omitempty"`
	Apps      []string   `json:"apps,omitempty"`
	Scaling
	CurrentSpotNodes int `json:"current_spot_nodes"`
	// Usage is the pool's node time and cost so far, live nodes included.
	Usage Usage `json:"usage"`
	// AutoscaleRuns are the latest evaluations of the formula, oldest
	// first; ResizeErrors the latest provider failures.
	AutoscaleRuns []AutoscaleRun `json:"autoscale_runs,omitempty"`
	ResizeErrors  []ResizeError  `json:"resize_errors,omitempty"`
}

// Scaling is how a pool's size is decided and what its nodes cost; it is
// part of Pool and PoolCreate.
type Scaling struct {
	Autoscale *Autoscale `json:"autoscale,omitempty"`
	// MinNodes and MaxNodes bound the sizes the formula sets (dedicated and
	// spot together); max 0 means no bound.
	MinNodes        int `json:"min_nodes,omitempty"`
	MaxNodes        int `json:"max_nodes,omitempty"`
	TargetSpotNodes int `json:"target_spot_nodes,omitempty"`
	// Deallocation is what scale-down does to running tasks: requeue (the
	// default), terminate or task_completion.
	Deallocation string `json:"deallocation,omitempty"`
	// JoinTimeout is how long a node the provider made may take to join
	// before it is deleted and reported as a resize error (default 10m).
	JoinTimeout Duration      `json:"join_timeout,omitempty"`
	Exec        *ExecProvider `json:"exec,omitempty"`
	// Price and SpotPrice are per node-hour.
	Price     float64 `json:"price,omitempty"`
	SpotPrice float64 `json:"spot_price,omitempty"`
}

// Autoscale is a pool's formula (see docs/autoscale.md) and how often it is
// evaluated (default 30s, at least 1s).
type Autoscale struct {
	Formula  string   `json:"formula"`
	Interval Duration `json:"interval,omitempty"`
	Enabled  bool     `json:"enabled"`
}

// ExecProvider is the command of a pool with provider exec: it is run as
// COMMAND ARGS... create|status|delete with JSON on stdin and stdout (see
// examples/providers/README.md).
type ExecProvider struct {
	Command string   `json:"command"`
	Args    []string `json:"args,omitempty"`
	Timeout Duration `json:"timeout,omitempty"`
}

// Usage is node time and what it cost.
type Usage struct {
	NodeSeconds     float64 `json:"node_seconds"`
	SpotNodeSeconds float64 `json:"spot_node_seconds"`
	Cost            float64 `json:"cost"`
}

// AutoscaleRun is one evaluation of a pool's formula: its inputs, and the
// result or the error.
type AutoscaleRun struct {
	Time            time.Time          `json:"time"`
	Vars            map[string]float64 `json:"vars,omitempty"`
	TargetNodes     int                `json:"target_nodes"`
	TargetSpotNodes int                `json:"target_spot_nodes"`
	Deallocation    string             `json:"deallocation,omitempty"`
	Error           string             `json:"error,omitempty"`
	// DryRun marks an evaluation asked for with autoscale eval, not applied.
	DryRun bool `json:"dry_run,omitempty"`
}

// ResizeError is a failed attempt to change a pool's size.
type ResizeError struct {
	Time    time.Time `json:"time"`
	Message string    `json:"message"`
}

// AutoscaleChange is the body of POST /v1/pools/{id}/autoscale/enable and
// .../eval: a formula (enable: empty keeps the pool's) and an interval.
type AutoscaleChange struct {
	Formula  string   `json:"formula,omitempty"`
	Interval Duration `json:"interval,omitempty"`
}

// PoolCreate is the body of POST /v1/pools.
type PoolCreate struct {
	ID           string            `json:"id"`
	Provider     string            `json:"provider,omitempty"`
	SlotsPerNode int               `json:"slots_per_node,omitempty"`
	FillPolicy   string            `json:"fill_policy,omitempty"`
	Prefill      *int              `json:"prefill,omitempty"`
	TargetNodes  int               `json:"target_nodes,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	AllowRoot    bool              `json:"allow_root,omitempty"`
	StartTask    *StartTask        `json:"start_task,omitempty"`
	// Apps are application packages every task of the pool gets, NAME or
	// NAME@VERSION; a bare NAME is pinned to the newest version at creation.
	Apps []string `json:"apps,omitempty"`
	Scaling
}

// StartTask runs on every node of a pool as it joins. While it runs the
// node is waiting_for_start_task and, with wait_for_success (the default),
// takes no task; when it fails after max_retries retries the node is
// start_task_failed and takes none.
type StartTask struct {
	Command        []string          `json:"command"`
	Shell          bool              `json:"shell,omitempty"`
	Env            map[string]string `json:"env,omitempty"`
	MaxRetries     int               `json:"max_retries,omitempty"`
	WaitForSuccess *bool             `json:"wait_for_success,omitempty"`
	// Inputs are resource files staged into its working directory before
	// each attempt, through the node's cache. Placeholders: none in a start
	// task; {job} in a job's preparation and release tasks.
	Inputs []InputFile `json:"inputs,omitempty"`
}

// Node is one agent that joined a pool.
type Node struct {
	ID            string            `json:"id"`
	PoolID        string            `json:"pool_id"`
	State         string            `json:"state"`
	Hostname      string            `json:"hostname"`
	Slots         int               `json:"slots"`
	Cores         int               `json:"cores"`
	MemoryBytes   int64             `json:"memory_bytes"`
	Labels        map[string]string `json:"labels,omitempty"`
	Drained       bool              `json:"drained"`
	Spot          bool              `json:"spot,omitempty"`
	Connected     bool              `json:"connected"`
	RunningTasks  int               `json:"running_tasks"`
	AssignedTasks int               `json:"assigned_tasks"`
	JoinedAt      time.Time         `json:"joined_at"`
	LastSeenAt    time.Time         `json:"last_seen_at"`
}

// TaskCounts counts a job's tasks by state; completed = succeeded + failed.
type TaskCounts struct {
	Active    int `json:"active"`
	Assigned  int `json:"assigned"`
	Preparing int `json:"preparing"`
	Running   int `json:"running"`
	Completed int `json:"completed"`
	Succeeded int `json:"succeeded"`
	Failed    int `json:"failed"`
}

// Total is the number of tasks the counts cover.
func (c TaskCounts) Total() int {
	return c.Active + c.Assigned + c.Preparing + c.Running + c.Completed
}

// Job is a container of tasks bound to a pool.
type Job struct {
	ID                 string            `json:"id"`
	PoolID             string            `json:"pool_id"`
	State              string            `json:"state"`
	Priority           int               `json:"priority"`
	MaxRetries         int               `json:"max_retries"`
	MaxWallClock       Duration          `json:"max_wall_clock"`
	OnAllTasksComplete string            `json:"on_all_tasks_complete"`
	Owner              string            `json:"owner"`
	Tags               map[string]string `json:"tags,omitempty"`
	Env                map[string]string `json:"env,omitempty"`
	TaskCounts         TaskCounts        `json:"task_counts"`
	TaskGroups         int               `json:"task_groups"`
	PendingReason      string            `json:"pending_reason,omitempty"`
	Done               bool              `json:"done,omitempty"`
	// BurstPoolIDs are pools the job's tasks go to, in order, once the
	// pools before them are full.
	BurstPoolIDs []string `json:"burst_pool_ids,omitempty"`
	// SlotSeconds is its ended attempts' run time × slots; NodeSeconds that
	// over the slots of a node; Cost at the pools' prices.
	SlotSeconds float64    `json:"slot_seconds"`
	NodeSeconds float64    `json:"node_seconds"`
	Cost        float64    `json:"cost"`
	CreatedAt   time.Time  `json:"created_at"`
	CompletedAt *time.Time `json:"completed_at,omitempty"`
}

// JobCreate is the body of POST /v1/jobs.
type JobCreate struct {
	ID                 string            `json:"id,omitempty"`
	PoolID             string            `json:"pool_id"`
	BurstPoolIDs       []string          `json:"burst_pool_ids,omitempty"`
	Priority           int               `json:"priority,omitempty"`
	MaxRetries         *int              `json:"max_retries,omitempty"`
	MaxWallClock       Duration          `json:"max_wall_clock,omitempty"`
	OnAllTasksComplete string            `json:"on_all_tasks_complete,omitempty"`
	Tags               map[string]string `json:"tags,omitempty"`
	Env                map[string]string `json:"env,omitempty"`
	// PrepTask runs once on a node before the job's first task there; if it
	// still fails after its retries the node is barred from the job.
	// ReleaseTask runs on the nodes that ran the job's tasks when it ends.
	PrepTask    *StartTask `json:"prep_task,omitempty"`
	ReleaseTask *StartTask `json:"release_task,omitempty"`
}

// Requirements are what a task needs from a node.
type Requirements struct {
	Slots       int               `json:"slots,omitempty"`
	Cores       int               `json:"cores,omitempty"`
	MemoryBytes int64             `json:"memory_bytes,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// TaskSpec describes one task, or the template of an array.
type TaskSpec struct {
	ID           string            `json:"id,omitempty"`
	Command      []string          `json:"command"`
	Shell        bool              `json:"shell,omitempty"`
	Env          map[string]string `json:"env,omitempty"`
	Requirements Requirements      `json:"requirements,omitempty"`
	MaxRetries   *int              `json:"max_retries,omitempty"`
	MaxWallClock Duration          `json:"max_wall_clock,omitempty"`
	Cwd          string            `json:"cwd,omitempty"`
	Inputs       []InputFile       `json:"inputs,omitempty"`
	Outputs      []OutputFile      `json:"outputs,omitempty"`
	// Apps are application packages, NAME or NAME@VERSION; a bare NAME is
	// pinned to the newest uploaded version when the task is submitted.
	Apps []string `json:"apps,omitempty"`
}

// TaskAdd is the body of POST /v1/jobs/{id}/tasks: explicit tasks, an array
// over a Slurm-style index spec, or one task per line. Exactly one is set.
type TaskAdd struct {
	Tasks    []TaskSpec `json:"tasks,omitempty"`
	Array    string     `json:"array,omitempty"`
	Lines    []string   `json:"lines,omitempty"`
	Template *TaskSpec  `json:"template,omitempty"`
	IDPrefix string     `json:"id_prefix,omitempty"`
}

// TaskAddResult reports what a TaskAdd created.
type TaskAddResult struct {
	Version string `json:"version"`
	JobID   string `json:"job_id"`
	Added   int    `json:"added"`
	FirstID string `json:"first_id,omitempty"`
	LastID  string `json:"last_id,omitempty"`
}

// Submit is the body of POST /v1/submit: a job (new, or existing when
// Job.ID names one and Existing is set) and its tasks, applied atomically.
type Submit struct {
	Job      JobCreate `json:"job"`
	Existing bool      `json:"existing,omitempty"`
	Tasks    TaskAdd   `json:"tasks"`
}

// Attempt is one execution of a task.
type Attempt struct {
	Number          int        `json:"number"`
	NodeID          string     `json:"node_id"`
	AssignedAt      time.Time  `json:"assigned_at"`
	PreparingAt     *time.Time `json:"preparing_at,omitempty"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	EndedAt         *time.Time `json:"ended_at,omitempty"`
	Result          string     `json:"result,omitempty"`
	FailureCategory string     `json:"failure_category,omitempty"`
	ExitCode        *int       `json:"exit_code,omitempty"`
	Signal          int        `json:"signal,omitempty"`
	UserCPU         Duration   `json:"user_cpu"`
	SysCPU          Duration   `json:"sys_cpu"`
	MaxRSSBytes     int64      `json:"max_rss_bytes"`
	Message         string     `json:"message,omitempty"`
}

// Task is one command line in a job.
type Task struct {
	JobID           string     `json:"job_id"`
	ID              string     `json:"id"`
	Index           *int       `json:"index,omitempty"`
	State           string     `json:"state"`
	PendingReason   string     `json:"pending_reason,omitempty"`
	Result          string     `json:"result,omitempty"`
	FailureCategory string     `json:"failure_category,omitempty"`
	ExitCode        *int       `json:"exit_code,omitempty"`
	Signal          int        `json:"signal,omitempty"`
	Attempt         int        `json:"attempt"`
	Retries         int        `json:"retries"`
	Requeues        int        `json:"requeues"`
	NodeID          string     `json:"node_id,omitempty"`
	Command         []string   `json:"command"`
	Shell           bool       `json:"shell,omitempty"`
	Attempts        []Attempt  `json:"attempts,omitempty"`
	StartedAt       *time.Time `json:"started_at,omitempty"`
	EndedAt         *time.Time `json:"ended_at,omitempty"`
}

// TaskList is one page of a job's tasks; Next is the cursor of the next page.
type TaskList struct {
	Version string `json:"version"`
	Tasks   []Task `json:"tasks"`
	Next    string `json:"next,omitempty"`
}

// Error is the body of every error response.
type Error struct {
	Err ErrorBody `json:"error"`
}

// ErrorBody says what went wrong and, for invalid input, which field.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

// Error codes carried in ErrorBody.Code.
const (
	CodeInvalid      = "invalid"
	CodeUnauthorized = "unauthorized"
	CodeNotFound     = "not_found"
	CodeConflict     = "conflict"
	CodeTooLarge     = "too_large"
	CodeUnavailable  = "unavailable"
	CodeRateLimited  = "rate_limited"
	CodeQuota        = "quota_exceeded"
	CodeInternal     = "internal"
)

// ClientConfig is the content of client.json written by `lote up` and
// `lote server`: how the CLI finds and trusts the server.
type ClientConfig struct {
	Server string `json:"server"`
	Token  string `json:"token"`
	CAFile string `json:"ca_file"`
}

// JobUpdate is the body of PATCH /v1/jobs/{id}.
type JobUpdate struct {
	Priority *int `json:"priority,omitempty"`
}

// PoolResize is the body of POST /v1/pools/{id}/resize.
type PoolResize struct {
	TargetNodes     int    `json:"target_nodes"`
	TargetSpotNodes int    `json:"target_spot_nodes,omitempty"`
	Deallocation    string `json:"deallocation,omitempty"`
}

// RetryResult says how many tasks a retry reactivated.
type RetryResult struct {
	Version string `json:"version"`
	JobID   string `json:"job_id"`
	Retried int    `json:"retried"`
}

// JobList is GET /v1/jobs.
type JobList struct {
	Version string `json:"version"`
	Jobs    []Job  `json:"jobs"`
}

// TokenCreate is the body of POST /v1/tokens.
type TokenCreate struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

// Token describes an API token; Token is set only in the answer that
// created it (the server keeps only a hash).
type Token struct {
	Version   string     `json:"version,omitempty"`
	Name      string     `json:"name"`
	Role      string     `json:"role"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Token     string     `json:"token,omitempty"`
}

// TokenList is GET /v1/tokens.
type TokenList struct {
	Version string  `json:"version"`
	Tokens  []Token `json:"tokens"`
}
