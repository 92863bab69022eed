package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/core"
)

// GET /v1/events streams the event hub as Server-Sent Events.
//
// A stream starts after the event named by Last-Event-ID (what a browser's
// EventSource sends when it reconnects), else by ?after=N (0: the oldest
// event kept), else with the last ?tail=N kept events that pass the
// filters, else after the newest event (only new events). Filters: ?job=,
// ?pool=, ?node=, ?kind=task,node,job,pool. Its first message is `event: open` with
// the newest event ID at that moment. Each event is a message with the
// event's ID as its SSE id, so a reconnect resumes exactly after the last
// event the client saw: nothing lost, nothing twice. When the events the
// client asked for were already dropped from the hub's ring, an `event:
// gap` says so (the client must fetch state again) and the stream goes on
// from the oldest event kept. Keep-alives are a comment plus an id-only
// message with the position the stream scanned to, so a filtered stream
// that matched nothing for a while still resumes where it was. The stream
// ends when the client goes away or the server stops; with ?follow=false,
// once the events that existed when it started were sent, and soon after
// its token is revoked (at the next event or keep-alive after a second). A
// user token sees the task and job events of its own jobs only.

// sseKeepAlive is how often an idle stream sends a keep-alive.
var sseKeepAlive = 15 * time.Second

// sseBatch bounds the events read from the hub at once.
const sseBatch = 512

// maxTail bounds ?tail=N.
const maxTail = 10000

// eventFilter is what a stream keeps.
type eventFilter struct {
	job, pool, node string
	kinds           map[string]bool
}

func (f *eventFilter) match(ev *Event) bool {
	return (f.job == "" || strings.EqualFold(ev.JobID, f.job)) &&
		(f.pool == "" || strings.EqualFold(ev.PoolID, f.pool)) &&
		(f.node == "" || strings.EqualFold(ev.NodeID, f.node)) &&
		(f.kinds == nil || f.kinds[ev.Kind])
}

// parseEventQuery reads a stream's filter and start; given says whether the
// client named a start (after=0 asks for the oldest event kept).
func parseEventQuery(r *http.Request) (f eventFilter, after uint64, given bool, tail int, follow bool, err error) {
	q := r.URL.Query()
	for _, p := range []struct {
		name string
		dst  *string
	}{{"job", &f.job}, {"pool", &f.pool}, {"node", &f.node}} {
		v := q.Get(p.name)
		if v != "" && !core.ValidID(v) {
			return f, 0, false, 0, false, badID(p.name)
		}
		*p.dst = v
	}
	if v := q.Get("kind"); v != "" {
		f.kinds = map[string]bool{}
		for _, k := range strings.Split(v, ",") {
			switch k {
			case "task", "node", "job", "pool":
				f.kinds[k] = true
			default:
				return f, 0, false, 0, false, invalid("kind", "must be a comma-separated list of task, node, job, pool")
			}
		}
	}
	if v := q.Get("after"); v != "" {
		given = true
		if after, err = strconv.ParseUint(v, 10, 64); err != nil {
			return f, 0, false, 0, false, invalid("after", "must be an event ID (a non-negative integer)")
		}
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		given = true
		if after, err = strconv.ParseUint(strings.TrimSpace(v), 10, 64); err != nil {
			return f, 0, false, 0, false, invalid("Last-Event-ID", "must be an event ID (a non-negative integer)")
		}
	}
	if v := q.Get("tail"); v != "" {
		if tail, err = strconv.Atoi(v); err != nil || tail < 1 || tail > maxTail {
			return f, 0, false, 0, false, invalid("tail", "must be between 1 and %d", maxTail)
		}
	}
	switch q.Get("follow") {
	case "", "true":
		follow = true
	case "false":
	default:
		return f, 0, false, 0, false, invalid("follow", "must be true or false")
	}
	return f, after, given, tail, follow, nil
}

func (s *Server) streamEvents(w http.ResponseWriter, r *http.Request) error {
	f, after, given, tail, follow, err := parseEventQuery(r)
	if err != nil {
		return err
	}
	caller := callerOf(r.Context())
	h := s.eng.events
	oldest, newest := h.oldest(), h.last()
	pos, lost := newest, false
	switch {
	case !given && tail > 0:
		pos = h.tailStart(&f, tail)
	case !given:
	case after == 0:
		pos = oldest - 1
	case after > newest:
		// An ID this server never gave: from before a restart whose clock
		// went back, or made up. What it missed is unknown.
		lost = true
	default:
		pos = after // since reports a gap if these were dropped
	}
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	flush := func() error {
		if err := bw.Flush(); err != nil {
			return err
		}
		return rc.Flush()
	}
	// A browser retries after this many milliseconds when the stream drops.
	bw.WriteString("retry: 2000\n")
	writeSSE(bw, "open", pos, map[string]uint64{"last_id": newest})
	if lost {
		writeSSE(bw, "gap", pos, map[string]uint64{"after": after, "resumed_after": pos})
	}
	if err := flush(); err != nil {
		return nil
	}
	keep := time.NewTicker(sseKeepAlive)
	defer keep.Stop()
	sent := pos // the last position the client was told about
	checked := time.Now()
	for {
		// The stream ends when its token is revoked.
		if time.Since(checked) > time.Second {
			if !s.valid(r) {
				return nil
			}
			checked = time.Now()
		}
		evs, wake, gap := h.since(pos, sseBatch)
		if gap && len(evs) > 0 {
			resumed := evs[0].ID - 1
			writeSSE(bw, "gap", resumed, map[string]uint64{"after": pos, "resumed_after": resumed})
			pos, sent = resumed, resumed
		}
		vis := s.visibleJobs(caller, evs)
		for i := range evs {
			pos = evs[i].ID
			if f.match(&evs[i]) && (vis == nil || evs[i].JobID == "" || vis[lower(evs[i].JobID)]) {
				writeSSE(bw, "", pos, eventOut(&evs[i]))
				sent = pos
			}
		}
		if bw.Buffered() > 0 {
			if err := flush(); err != nil {
				return nil
			}
		}
		if len(evs) == sseBatch {
			continue
		}
		if !follow && pos >= newest {
			if sent != pos {
				writeSSE(bw, "", pos, nil)
			}
			flush()
			return nil
		}
		select {
		case <-wake:
		case <-keep.C:
			bw.WriteString(": keep-alive\n")
			writeSSE(bw, "", pos, nil)
			sent = pos
			if err := flush(); err != nil {
				return nil
			}
		case <-r.Context().Done():
			return nil
		case <-s.stopping:
			return nil
		}
	}
}

// visibleJobs says which jobs of evs the caller may see, reading owners
// under the engine lock once per batch; nil means all (an admin). Pool and
// node events are for everyone, as pools and their nodes are.
func (s *Server) visibleJobs(caller identity, evs []Event) map[string]bool {
	if caller.admin() || len(evs) == 0 {
		return nil
	}
	vis := map[string]bool{}
	s.read(func(c *core.Core) {
		for i := range evs {
			k := lower(evs[i].JobID)
			if _, done := vis[k]; done || k == "" {
				continue
			}
			j := c.Job(k)
			vis[k] = j != nil && visible(caller, j)
		}
	})
	return vis
}

// tailStart is where a stream starts to replay the last n kept events
// that pass f.
func (h *hub) tailStart(f *eventFilter, n int) uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	oldest := h.oldestLocked()
	for id := h.next; id > oldest; id-- {
		if f.match(&h.ring[(id-1)%eventRing]) {
			if n--; n == 0 {
				return id - 2
			}
		}
	}
	return oldest - 1
}

// writeSSE writes one message: an event name (none for plain events), an
// id, and data as one line of JSON (none for an id-only message).
func writeSSE(w *bufio.Writer, name string, id uint64, data any) {
	if name != "" {
		w.WriteString("event: " + name + "\n")
	}
	w.WriteString("id: " + strconv.FormatUint(id, 10) + "\n")
	if data != nil {
		b, _ := json.Marshal(data)
		w.WriteString("data: ")
		w.Write(b)
		w.WriteString("\n")
	}
	w.WriteString("\n")
}

func eventOut(ev *Event) api.Event {
	out := *ev
	out.Time = ev.Time.UTC()
	return out
}
