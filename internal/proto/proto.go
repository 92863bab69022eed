// Package proto is the agent protocol: the frames an agent and the server
// exchange over one long-lived WebSocket (see docs/protocol.md). Frames are
// CBOR in binary WebSocket messages; hot records are encoded as arrays, so a
// dispatch of one array task is a few dozen bytes. Every frame may carry
// many records: the protocol is batched in both directions.
package proto

import (
	"fmt"

	"github.com/fxamacker/cbor/v2"
)

// Version is the protocol version. The server refuses an agent that speaks
// another one, with an error frame saying both versions.
const Version = 1

// Path is where agents open their stream on the API port.
const Path = "/v1/agent/stream"

// Agent phases of a task in Known.
const (
	PhaseQueued   = 0
	PhaseRunning  = 1
	PhaseFinished = 2
)

// Ref names one attempt of one task.
type Ref struct {
	_       struct{} `cbor:",toarray"`
	Job     string
	Task    string
	Attempt int
}

// Known is a task an agent holds when it (re)connects.
type Known struct {
	_     struct{} `cbor:",toarray"`
	Ref   Ref
	Phase int
}

// Hello is the first frame of a stream.
type Hello struct {
	Version  int
	NodeID   string // empty on first join
	Name     string // proposed node ID on first join
	Pool     string
	Hostname string
	Slots    int
	Cores    int
	Memory   int64
	Labels   map[string]string
	Known    []Known
}

// Keep is a task the server confirms the agent should go on with.
type Keep struct {
	_     struct{} `cbor:",toarray"`
	Ref   Ref
	Slots int
}

// Welcome answers Hello.
type Welcome struct {
	NodeID            string
	NodeToken         string // only on first join: the node's own credential
	HeartbeatInterval int64  // nanoseconds
	Drop              []Ref  // tasks to kill and forget
	Keep              []Keep
	// AllowRoot is the pool's allow_root: without it an agent running as
	// root runs tasks as its unprivileged run-as user.
	AllowRoot bool
	// StartTask is the pool's start task when this node has yet to run it;
	// the agent answers with ToServer.StartTaskDone.
	StartTask *StartTask
}

// StartTask prepares a node as it joins; the agent retries it up to
// MaxRetries times before reporting.
type StartTask struct {
	Command    []string
	Shell      bool
	Env        map[string]string
	MaxRetries int
	// Inputs are staged before each attempt; only {job} has a value, in a
	// job's preparation and release tasks.
	Inputs []Input
}

// StartTaskDone reports a start task's end after its retries.
type StartTaskDone struct {
	OK       bool
	ExitCode int
	Attempts int
	Err      string // could not be started, or a signal
}

// Template is what an array's tasks run; sent once per stream, then named
// by Key in assignments.
type Template struct {
	Key          string
	Job          string
	Pool         string
	Command      []string
	Shell        bool
	Env          map[string]string
	MaxWallClock int64 // nanoseconds, 0 = none
	Cwd          string
	Slots        int
	Inputs       []Input
	Outputs      []Output
	Apps         []string // application packages, NAME@VERSION, installed before the task runs
	// JobPrep is the job's preparation task, run once on the node before
	// the job's first task there.
	JobPrep *StartTask
}

// Input is a resource file to stage before the process starts.
type Input struct {
	_      struct{} `cbor:",toarray"`
	Source string
	Path   string
	Mode   uint32
}

// Output is a glob to upload after the process ended; When is 0 success,
// 1 failure, 2 always.
type Output struct {
	_       struct{} `cbor:",toarray"`
	Pattern string
	Dest    string
	When    uint8
}

// Assign hands a task's attempt to the agent.
type Assign struct {
	_        struct{} `cbor:",toarray"`
	Ref      Ref
	Template string // Template.Key
	Index    int    // array index, -1 when none
	Line     string
	HasLine  bool
}

// LogReq asks for bytes of a running task's stdout or stderr.
type LogReq struct {
	ID     uint64
	Ref    Ref
	Stream string // "stdout" | "stderr"
	Offset int64
	Max    int
}

// ToAgent is a server → agent frame.
type ToAgent struct {
	Seq        uint64
	AckReports uint64 // every ToServer frame up to this Seq is durable
	Welcome    *Welcome
	Error      string // fatal: the agent should log it and stop or retry
	Templates  []Template
	Assign     []Assign
	Revoke     []Ref
	Kill       []Ref
	LogReqs    []LogReq
	// Release asks the node to run ended jobs' release tasks.
	Release []JobRelease
}

// JobRelease is an ended job's release task for a node that ran its tasks.
type JobRelease struct {
	Job  string
	Task StartTask
}

// Started says an attempt's process was started.
type Started struct {
	_   struct{} `cbor:",toarray"`
	Ref Ref
	At  int64
}

// Finished says an attempt ended.
type Finished struct {
	_         struct{} `cbor:",toarray"`
	Ref       Ref
	ExitCode  int
	Signal    int
	TimedOut  bool
	Lost      bool
	StartErr  string
	StartedAt int64
	EndedAt   int64
	UserCPU   int64
	SysCPU    int64
	MaxRSS    int64
	Stdout    []byte
	Stderr    []byte
	// StagingErr: inputs or outputs failed to transfer (category staging).
	StagingErr string
	// LogBlobs: stdout/stderr were over the inline limit and were uploaded
	// whole to the data store; Stdout/Stderr then hold only their start.
	LogBlobs bool
	// PrepFailed: the job's preparation task failed on this node, so the
	// attempt never started (StagingErr says how).
	PrepFailed bool
}

// RevokeAnswer says whether a revoked task was taken back before it started.
type RevokeAnswer struct {
	_       struct{} `cbor:",toarray"`
	Ref     Ref
	Revoked bool
}

// LogChunk answers a LogReq.
type LogChunk struct {
	ID   uint64
	Data []byte
	Size int64 // the file's size when read
	Err  string
}

// ToServer is an agent → server frame. Finished reports are kept by the agent
// until a ToAgent.AckReports covers the frame's Seq, and sent again after a
// reconnect; the server applies them idempotently.
type ToServer struct {
	Seq     uint64
	Hello   *Hello
	Started []Started
	// Preparing names attempts whose inputs are being staged.
	Preparing []Started
	Finished  []Finished
	Revoked   []RevokeAnswer
	Logs      []LogChunk
	// StartTaskDone ends the node's start task (sent again on reconnect
	// while the server still asks for it).
	StartTaskDone *StartTaskDone
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = (cbor.EncOptions{}).EncMode(); err != nil {
		panic(err)
	}
	// Bounds keep a hostile peer from making the decoder allocate without limit.
	if decMode, err = (cbor.DecOptions{MaxArrayElements: 1 << 24, MaxMapPairs: 1 << 20, MaxNestedLevels: 16}).DecMode(); err != nil {
		panic(err)
	}
}

// Marshal encodes a frame.
func Marshal(v any) ([]byte, error) { return encMode.Marshal(v) }

// Unmarshal decodes a frame.
func Unmarshal(b []byte, v any) error {
	if decodeFast(b, v) {
		return nil
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decoding frame: %w", err)
	}
	return nil
}
