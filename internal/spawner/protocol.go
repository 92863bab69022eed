package spawner

import (
	"bufio"
	"encoding/json"
	"io"
	"sync"
	"time"
)

// The protocol is one JSON object per line in each direction. A client opens
// with a hello frame; the spawner answers hello once the connection has become
// its client (replacing any earlier one), naming the features it has, and
// then re-sends every unacknowledged exit. After that the client sends spawn, kill, ack and list
// frames, and the spawner sends exit and running frames. Frames are handled in
// order, so a list reply also confirms everything sent before it.
const protocolVersion = 1

// featureAfter is a spawner's support for SpawnRequest.After. A client sets
// After only when the spawner's hello names it: a spawner started by an
// older agent outlives the agent's upgrade, and would start such a task at
// once, beside the one it should follow.
const featureAfter = "after"

// featureBase is a spawner's support for SpawnRequest.Base and base frames.
const featureBase = "base"

// featureExited is a spawner's list reply naming the unacknowledged exits
// (runningReply.Exited). A client needs no flag to tell: an older
// spawner's reply decodes with Exited nil, a newer one's never does.
const featureExited = "exited"

// maxFrame bounds one line, so garbage on the socket cannot make either side
// buffer without limit.
const maxFrame = 16 << 20

// frame is one protocol message; exactly one field is set.
type frame struct {
	Hello    int           `json:"hello,omitempty"`
	Features []string      `json:"features,omitempty"` // with the spawner's hello
	Base     []string      `json:"base,omitempty"`     // the connection's base environment
	Spawn    *SpawnRequest `json:"spawn,omitempty"`
	Kill     *killRequest  `json:"kill,omitempty"`
	Ack      []string      `json:"ack,omitempty"`
	List     uint64        `json:"list,omitempty"` // request number, echoed in the reply
	Exit     *Exit         `json:"exit,omitempty"`
	Running  *runningReply `json:"running,omitempty"`
}

type killRequest struct {
	ID    string
	Grace time.Duration
}

type runningReply struct {
	Seq   uint64
	Tasks []Running
	// Exited lists the IDs whose exits await acknowledgement, so that a
	// client can tell a spawn the spawner never recorded (it died between
	// the fork and the journal) from one that ran. Never nil from a
	// spawner that has the feature.
	Exited []string
}

func newFrameScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxFrame)
	return sc
}

// outbox coalesces outgoing frames: senders encode into a pending buffer and
// one writer goroutine writes whatever has accumulated in a single call, so a
// burst of frames costs one syscall, and nobody waits for the socket.
type outbox struct {
	mu      sync.Mutex
	pending []byte
	enc     *json.Encoder // encodes into pending through Write; guarded by mu
	err     error         // the first write error; later puts fail with it
	ready   chan struct{} // capacity 1: pending is non-empty
	done    chan struct{}
	once    sync.Once
}

func newOutbox() *outbox {
	o := &outbox{ready: make(chan struct{}, 1), done: make(chan struct{})}
	o.enc = json.NewEncoder(o)
	o.enc.SetEscapeHTML(false)
	return o
}

// Write appends to pending; only enc calls it, with mu held.
func (o *outbox) Write(p []byte) (int, error) {
	o.pending = append(o.pending, p...)
	return len(p), nil
}

func (o *outbox) put(f *frame) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.err != nil {
		return o.err
	}
	if b, ok := appendFrame(o.pending, f); ok {
		o.pending = b
	} else if err := o.enc.Encode(f); err != nil {
		return err
	}
	select {
	case o.ready <- struct{}{}:
	default:
	}
	return nil
}

// run writes batches to w until close or a write error.
func (o *outbox) run(w io.Writer) {
	var batch []byte
	for {
		select {
		case <-o.ready:
		case <-o.done:
			return
		}
		o.mu.Lock()
		batch, o.pending = o.pending, batch[:0]
		o.mu.Unlock()
		if _, err := w.Write(batch); err != nil {
			o.mu.Lock()
			o.err = err
			o.mu.Unlock()
			return
		}
	}
}

// close stops run and makes later puts fail; frames not yet written are dropped.
func (o *outbox) close() {
	o.once.Do(func() {
		o.mu.Lock()
		if o.err == nil {
			o.err = ErrClosed
		}
		o.mu.Unlock()
		close(o.done)
	})
}
