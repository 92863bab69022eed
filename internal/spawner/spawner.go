// Package spawner owns the starting and reaping of task processes on a node.
//
// The node agent must start thousands of short task processes per second, and
// running tasks must outlive an agent restart without ever leaving two live
// copies of one attempt. So tasks are not children of the agent but of one
// small, long-lived, detached spawner process per node (Serve, run as
// `lote _spawner`). It forks each task into its own process group, reaps it
// with wait4 for its exit status and resource usage, enforces wall-clock
// limits, and keeps a record per task in a state directory, so that a spawner
// started after a crash of its predecessor can kill and report what was left
// behind. Keeping fork here also keeps Go's process-wide fork lock out of the
// busy agent.
//
// The agent talks to its spawner through a Client over a unix socket, using
// newline-delimited JSON frames that both sides coalesce into few writes. A
// restarted agent connects again, lists the running tasks to adopt them, and
// receives every exit it has not yet acknowledged. Two features keep short
// tasks cheap: a spawn may wait on a running task and start the moment that
// task is reaped (SpawnRequest.After), and its environment may add to a base
// sent once per connection (SpawnRequest.Base).
package spawner

import (
	"errors"
	"syscall"
	"time"
)

// SpawnRequest asks the spawner to start one task process.
type SpawnRequest struct {
	// ID is the agent's unique key for the attempt ("job/task/attempt"). A
	// spawn whose ID is running or has an unacknowledged Exit is ignored:
	// that task's Exit answers it, so a restarted agent can never start a
	// second live copy.
	ID   string
	Argv []string // executed directly, no shell; Argv[0] is looked up in Env's PATH when it has no slash
	Env  []string // full environment, "K=V", or with Base what it adds
	// Base makes Env an addition to the base environment the client set
	// with Client.SetBase: a variable in Env replaces the base's of the
	// same name. An agent's environment is most of every task's, and was
	// most of each request's bytes to encode and decode.
	Base         bool   `json:",omitempty"`
	Dir          string // working directory
	Stdout       string // file created (truncated) with mode 0644; empty means /dev/null
	Stderr       string // as Stdout
	MaxWallClock time.Duration
	Grace        time.Duration // between SIGTERM and SIGKILL when the spawner stops the task; 0 means 5 s
	Credential   *syscall.Credential
	// After, when set, is the ID of a task whose slot this one takes: it
	// starts the moment that task is reaped, without waiting for the client
	// to hear of the exit and ask, and that task's Exit names it in Next.
	// After may itself be waiting, which makes a chain. The spawn is
	// dropped without an Exit when After neither runs nor waits (already
	// reaped, or unknown), when another spawn already waits on After, when
	// After ends without starting it (After never started, or was killed
	// while waiting), and when its client goes away before After ends; the
	// client learns that it did not start from After's Exit, whose Next is
	// empty. Dropping a spawn drops the one waiting on it. Kill drops it with
	// an Exit that has Killed set and no PID. A spawner supports After when
	// Client.Chains says so.
	After string `json:",omitempty"`
}

// Exit reports how a task ended. Every spawn yields exactly one Exit, which is
// re-delivered to each new client until acknowledged.
type Exit struct {
	ID       string
	PID      int
	ExitCode int  // -1 when killed by a signal or never started
	Signal   int  // the signal that ended the main process, 0 if it exited normally
	TimedOut bool // stopped because MaxWallClock passed
	Killed   bool // stopped because a client asked (Client.Kill)
	// Lost is set when the task was ended because its supervision broke down:
	// it was found orphaned after a spawner crash, or the spawner stopped it
	// when shutting down or when no client came back within Orphaned.
	Lost      bool
	StartErr  string // why the process could not be started; ExitCode is -1
	StartedAt time.Time
	EndedAt   time.Time
	UserCPU   time.Duration
	SysCPU    time.Duration
	MaxRSS    int64 // bytes, the largest of the task and the descendants it waited for
	// Written is the bytes the task wrote to stdout and stderr, all of
	// them in their files; nil when not known (output still open when the
	// exit was reported, or an exit recovered after a spawner restart).
	Written *[2]int64 `json:",omitempty"`
	// Next is the ID of the spawn that waited on this task (its After) and
	// was started when this task was reaped.
	Next string `json:",omitempty"`
}

// Running is a task alive now, as reported by Client.List.
type Running struct {
	ID        string
	PID       int
	StartedAt time.Time
}

const defaultGrace = 5 * time.Second

// ErrBusy is returned by Serve when another spawner already owns the socket or
// the state directory.
var ErrBusy = errors.New("another spawner is running")

// ErrClosed is returned by Client methods once the connection is gone.
var ErrClosed = errors.New("spawner connection closed")

func checkID(id string) error {
	if id == "" {
		return errors.New("empty task id")
	}
	return nil
}
