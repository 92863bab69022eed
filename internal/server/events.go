package server

import (
	"sync"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/core"
)

// Event is one durable change, published after the batch holding it
// committed; its wire form is the event itself.
type Event = api.Event

// eventRing is how many recent events are kept for streams to resume from.
const eventRing = 1 << 16

// hub keeps the recent events and wakes streams when new ones arrive.
type hub struct {
	mu    sync.Mutex
	ring  []Event
	first uint64        // ID of the first event this hub numbered
	next  uint64        // ID of the next event
	wakec chan struct{} // closed and replaced on every publish
}

// newHub numbers events from the start time in microseconds, so IDs keep
// growing across a server restart (the hub is not durable) and a stream
// resuming with an ID from before the restart is told of a gap.
func newHub() *hub {
	start := uint64(time.Now().UnixMicro())
	return &hub{ring: make([]Event, eventRing), first: start, next: start, wakec: make(chan struct{})}
}

// publish numbers and stores events (called by the committer, in commit
// order).
func (h *hub) publish(evs []Event) {
	if len(evs) == 0 {
		return
	}
	h.mu.Lock()
	for i := range evs {
		evs[i].ID = h.next
		h.ring[h.next%eventRing] = evs[i]
		h.next++
	}
	close(h.wakec)
	h.wakec = make(chan struct{})
	h.mu.Unlock()
}

// since returns the events after id (at most max), a channel that closes
// when more arrive, and whether events after id were already overwritten.
func (h *hub) since(id uint64, max int) (evs []Event, wake <-chan struct{}, gap bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	first := id + 1
	if oldest := h.oldestLocked(); first < oldest {
		gap = true
		first = oldest
	}
	for i := first; i < h.next && len(evs) < max; i++ {
		evs = append(evs, h.ring[i%eventRing])
	}
	return evs, h.wakec, gap
}

// last is the ID of the newest event.
func (h *hub) last() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.next - 1
}

// oldest is the ID of the oldest event kept (or of the next one, when
// none was published yet).
func (h *hub) oldest() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.oldestLocked()
}

func (h *hub) oldestLocked() uint64 {
	if h.next-h.first > eventRing {
		return h.next - eventRing
	}
	return h.first
}

// taskEvent describes a task record as an event.
func taskEvent(t *core.Task, now time.Time) Event {
	ev := Event{
		Time: now, Kind: "task", PoolID: t.Job.Pool.ID, JobID: t.Job.ID, TaskID: t.ID,
		State: t.State.String(), Attempt: t.Attempt, NodeID: t.Cur.NodeID,
	}
	if t.State == core.TaskCompleted {
		a := attemptOut(&t.Cur)
		ev.Result, ev.FailureCategory, ev.ExitCode = a.Result, a.FailureCategory, a.ExitCode
	}
	return ev
}

func nodeEvent(n *core.Node, now time.Time) Event {
	return Event{Time: now, Kind: "node", PoolID: n.Pool.ID, NodeID: n.ID, State: n.State().String()}
}

func jobEvent(j *core.Job, now time.Time) Event {
	return Event{Time: now, Kind: "job", PoolID: j.Pool.ID, JobID: j.ID, State: j.State.String()}
}
