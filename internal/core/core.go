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
	"time"
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
	// ReleaseJob asks a node that ran the job's tasks to run its release task.
	ReleaseJob(*Node, *Job)
}

// Config holds the core's policy knobs.
type Config struct {
	// CrashLimit is how many infrastructure requeues a task survives before it
	// fails with category infra.
	CrashLimit int
	// HeartbeatTimeout is how long a node may stay silent before it is
	// unreachable and its tasks are requeued.
	HeartbeatTimeout time.Duration
	// MaxQueuedTasksPerUser bounds the tasks one owner may have waiting; a
	// submission that would pass it is refused whole. 0 means no bound.
	MaxQueuedTasksPerUser int
	// MaxRunningTasksPerUser bounds the tasks one owner may have assigned,
	// preparing or running; past it their jobs wait with pending reason
	// quota. 0 means no bound.
	MaxRunningTasksPerUser int
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
