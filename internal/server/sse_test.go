package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// sseServer serves GET /v1/events over a bare hub (no store, no core) with
// the admin token "tok". cut, when set, wraps each response so the
// connection drops after that many bytes.
func sseServer(t *testing.T, h *hub, cut func() int) (*httptest.Server, *Server) {
	t.Helper()
	s := &Server{eng: &engine{events: h}, stopping: make(chan struct{}), adminTok: "tok", tokens: newTokens(nil, 0)}
	rt := route{"GET /v1/events", admin, (*Server).streamEvents}
	handler := s.serve(rt)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cut != nil {
			w = &cutWriter{ResponseWriter: w, left: cut()}
		}
		handler(w, r)
	}))
	t.Cleanup(func() {
		select {
		case <-s.stopping:
		default:
			close(s.stopping)
		}
		ts.Close()
	})
	return ts, s
}

// cutWriter fails every write after `left` bytes, as a dropped connection
// does; the handler then ends the response.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if len(p) > c.left {
		n, _ := c.ResponseWriter.Write(p[:c.left])
		c.left = 0
		return n, errors.New("cut")
	}
	c.left -= len(p)
	return c.ResponseWriter.Write(p)
}

func (c *cutWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func taskEv(job string, i int) Event {
	return Event{Time: time.Unix(0, 0), Kind: "task", PoolID: "p", JobID: job, TaskID: strconv.Itoa(i), State: "running"}
}

// TestEventsResumeAcrossDrops publishes a steady flow of events while the
// connection is cut every few kilobytes, mid-message included, and checks
// that the client's automatic resume delivers every event exactly once and
// in order, with the job filter applied.
func TestEventsResumeAcrossDrops(t *testing.T) {
	h := newHub()
	var cuts atomic.Int64
	ts, _ := sseServer(t, h, func() int { cuts.Add(1); return 1500 + int(cuts.Load()%7)*731 })
	cl, err := api.NewClient(ts.URL, "tok", "")
	if err != nil {
		t.Fatal(err)
	}
	const total = 3000
	first := h.last() + 1
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []uint64
	done := make(chan error, 1)
	go func() {
		done <- cl.Events(ctx, api.EventFilter{Job: "keep", After: first - 1, Follow: true}, func(ev api.Event, gap error) error {
			if gap != nil {
				return gap
			}
			if ev.JobID != "keep" {
				return fmt.Errorf("event %d of job %q passed the filter", ev.ID, ev.JobID)
			}
			mu.Lock()
			got = append(got, ev.ID)
			n := len(got)
			mu.Unlock()
			if n == total/2 {
				cancel()
			}
			return nil
		})
	}()
	for i := 0; i < total; i++ {
		// Every other event belongs to another job and is filtered out.
		h.publish([]Event{taskEv("keep", i), taskEv("other", i)})
		if i%50 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if cuts.Load() < 5 {
		t.Fatalf("the connection was cut %d times; the test needs several", cuts.Load())
	}
	if len(got) != total/2 {
		t.Fatalf("got %d events, want %d", len(got), total/2)
	}
	for i, id := range got {
		if want := first + uint64(2*i); id != want {
			t.Fatalf("event %d has ID %d, want %d (lost or repeated across a reconnect)", i, id, want)
		}
	}
	t.Logf("%d events over %d connections", len(got), cuts.Load())
}

// sseMessage is one message read from a raw stream.
type sseMessage struct {
	event, id, data string
}

// readSSE reads messages from a raw stream until n were read (comments and
// the open message included) or the stream ended.
func readSSE(t *testing.T, resp *http.Response, n int) []sseMessage {
	t.Helper()
	var out []sseMessage
	var m sseMessage
	sc := bufio.NewScanner(resp.Body)
	for len(out) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if m != (sseMessage{}) {
				out = append(out, m)
			}
			m = sseMessage{}
		case strings.HasPrefix(line, "event: "):
			m.event = line[len("event: "):]
		case strings.HasPrefix(line, "id: "):
			m.id = line[len("id: "):]
		case strings.HasPrefix(line, "data: "):
			m.data = line[len("data: "):]
		case strings.HasPrefix(line, ":"):
			m.event = "comment"
		}
	}
	return out
}

func getEvents(t *testing.T, ts *httptest.Server, query, lastID string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/events?"+query, nil)
	req.Header.Set("Authorization", "Bearer tok")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestEventsStartAndGap covers where a stream starts (new events only,
// after=, Last-Event-ID over after=, tail=) and the gap message when the
// events asked for are gone: dropped from the ring, or from before a
// restart (a new hub numbers past the old one).
func TestEventsStartAndGap(t *testing.T) {
	h := newHub()
	ts, _ := sseServer(t, h, nil)
	for i := 0; i < 10; i++ {
		h.publish([]Event{taskEv("j", i)})
	}
	base := h.last() - 9 // IDs base..base+9

	ids := func(ms []sseMessage) []string {
		var out []string
		for _, m := range ms {
			if m.event == "" && m.data != "" {
				out = append(out, m.id)
			}
		}
		return out
	}
	id := func(n uint64) string { return strconv.FormatUint(n, 10) }

	// after=N: the events after N; follow=false ends the stream.
	ms := readSSE(t, getEvents(t, ts, "follow=false&after="+id(base+6), ""), 100)
	if ms[0].event != "open" || ms[0].id != id(base+6) || !strings.Contains(ms[0].data, `"last_id":`+id(base+9)) {
		t.Errorf("first message %+v, want open with id %d and last_id %d", ms[0], base+6, base+9)
	}
	if got := strings.Join(ids(ms), ","); got != id(base+7)+","+id(base+8)+","+id(base+9) {
		t.Errorf("after=%d sent %s", base+6, got)
	}
	// Last-Event-ID wins over after=.
	if got := ids(readSSE(t, getEvents(t, ts, "follow=false&after="+id(base), id(base+8)), 100)); len(got) != 1 || got[0] != id(base+9) {
		t.Errorf("Last-Event-ID %d sent %v", base+8, got)
	}
	// after=0: everything kept.
	if got := ids(readSSE(t, getEvents(t, ts, "follow=false&after=0", ""), 100)); len(got) != 10 {
		t.Errorf("after=0 sent %d events, want 10", len(got))
	}
	// tail=3: the last three.
	if got := ids(readSSE(t, getEvents(t, ts, "follow=false&tail=3", ""), 100)); strings.Join(got, ",") != id(base+7)+","+id(base+8)+","+id(base+9) {
		t.Errorf("tail=3 sent %v", got)
	}
	// No start: only new events.
	resp := getEvents(t, ts, "", "")
	h.publish([]Event{taskEv("j", 99)})
	if ms := readSSE(t, resp, 2); len(ms) != 2 || ms[1].id != id(base+10) || !strings.Contains(ms[1].data, `"task_id":"99"`) {
		t.Errorf("a new stream got %+v, want the open message then event %d", ms, base+10)
	}

	// An ID from before a restart: the new hub's IDs are all larger.
	h2 := newHub()
	ts2, _ := sseServer(t, h2, nil)
	h2.publish([]Event{taskEv("j", 0)})
	ms = readSSE(t, getEvents(t, ts2, "follow=false", id(base+9)), 100)
	if len(ms) < 3 || ms[1].event != "gap" || ms[2].id != id(h2.last()) {
		t.Errorf("resuming from the previous run's ID %d got %+v, want open, gap, then the new run's event", base+9, ms)
	}
	// An ID the server never gave.
	ms = readSSE(t, getEvents(t, ts2, "follow=false", id(h2.last()+1000)), 100)
	if len(ms) < 2 || ms[1].event != "gap" {
		t.Errorf("resuming from a future ID got %+v, want a gap", ms)
	}

	// Overrun: more events than the ring keeps.
	old := h.last()
	batch := make([]Event, 1024)
	for i := 0; i < eventRing/len(batch)+1; i++ {
		for k := range batch {
			batch[k] = taskEv("j", k)
		}
		h.publish(batch)
	}
	ms = readSSE(t, getEvents(t, ts, "", id(old)), 3)
	if ms[1].event != "gap" || !strings.Contains(ms[1].data, `"after":`+id(old)) {
		t.Fatalf("resuming after %d, now overwritten, got %+v", old, ms[1])
	}
	resumed, _ := strconv.ParseUint(ms[1].id, 10, 64)
	if ms[2].id != id(resumed+1) || resumed+1 != h.oldest() {
		t.Errorf("after the gap the stream sent %s, want the oldest kept event %d", ms[2].id, h.oldest())
	}
}

// TestEventsKeepAliveAdvancesID checks that a filtered stream with nothing
// to send still tells the client how far it scanned (an id-only message),
// so a reconnect does not rescan, or fall off the ring.
func TestEventsKeepAliveAdvancesID(t *testing.T) {
	defer func(d time.Duration) { sseKeepAlive = d }(sseKeepAlive)
	sseKeepAlive = 20 * time.Millisecond
	h := newHub()
	ts, _ := sseServer(t, h, nil)
	resp := getEvents(t, ts, "job=none", "")
	h.publish([]Event{taskEv("other", 1), taskEv("other", 2)})
	want := strconv.FormatUint(h.last(), 10)
	for _, m := range readSSE(t, resp, 6) {
		if m.event == "" && m.data != "" {
			t.Fatalf("the filter let through %+v", m)
		}
		if m.event != "open" && m.data == "" && m.id == want {
			return
		}
	}
	t.Errorf("no keep-alive carried id %s", want)
}

// TestEventsEndWhenServerStops checks that an open stream ends when the
// server stops, so shutdown does not wait for clients.
func TestEventsEndWhenServerStops(t *testing.T) {
	h := newHub()
	ts, s := sseServer(t, h, nil)
	resp := getEvents(t, ts, "", "")
	readSSE(t, resp, 1)
	done := make(chan struct{})
	go func() {
		readSSE(t, resp, 100)
		close(done)
	}()
	close(s.stopping)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end when the server stopped")
	}
}

// TestEventsBadQuery checks the 400s and the 401.
func TestEventsBadQuery(t *testing.T) {
	ts, _ := sseServer(t, newHub(), nil)
	for _, q := range []string{"after=x", "after=-1", "kind=tasks", "job=a/b", "follow=maybe", "tail=0", "tail=100001"} {
		if resp := getEvents(t, ts, q, ""); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("?%s: %d, want 400", q, resp.StatusCode)
		}
	}
	if resp := getEvents(t, ts, "", "soon"); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("Last-Event-ID soon: %d, want 400", resp.StatusCode)
	}
	resp, err := http.Get(ts.URL + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", resp.StatusCode)
	}
}
