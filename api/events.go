package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Event is one durable change, as GET /v1/events streams it: a task, node,
// job or pool that changed state, published after the change committed. IDs
// grow by one per event across the server, so a stream resumes after the
// last ID it saw.
type Event struct {
	ID              uint64    `json:"id"`
	Time            time.Time `json:"time"`
	Kind            string    `json:"kind"` // task | node | job | pool
	PoolID          string    `json:"pool_id,omitempty"`
	JobID           string    `json:"job_id,omitempty"`
	TaskID          string    `json:"task_id,omitempty"`
	NodeID          string    `json:"node_id,omitempty"`
	State           string    `json:"state,omitempty"`
	Attempt         int       `json:"attempt,omitempty"`
	Result          string    `json:"result,omitempty"`
	FailureCategory string    `json:"failure_category,omitempty"`
	ExitCode        *int      `json:"exit_code,omitempty"`
}

// EventFilter selects what GET /v1/events sends. Job, Pool and Node keep
// events naming that object; Kinds keeps events of those kinds.
type EventFilter struct {
	Job, Pool, Node string
	Kinds           []string
	// After resumes after this event ID; with FromStart the stream begins
	// at the oldest event the server still keeps, and otherwise, with After
	// 0, at the next new event.
	After     uint64
	FromStart bool
	// Tail, without After or FromStart, starts with the last Tail events
	// the server keeps that pass the filters.
	Tail int
	// Follow keeps the stream open for new events; without it the server
	// sends what it has and ends the stream.
	Follow bool
}

// ErrEventGap is wrapped by what an EventHandler receives as a gap: the
// events after the last one seen were dropped from the server's buffer
// before the stream reached them. The state they described must be fetched
// again.
var ErrEventGap = errors.New("events were missed")

// EventHandler receives each event of a stream. gap is non-nil when events
// were missed before this point (ev is then the zero Event); a non-nil
// return ends the stream with that error.
type EventHandler func(ev Event, gap error) error

// Events streams events to fn until ctx ends, fn fails or, without Follow,
// the server has sent what it had. A dropped connection while following is
// resumed after the last event seen, so fn sees each event once. It returns
// nil when the stream ended normally or ctx ended.
func (c *Client) Events(ctx context.Context, f EventFilter, fn EventHandler) error {
	last, resumed := f.After, false
	var backoff time.Duration
	for {
		q := url.Values{}
		if f.Job != "" {
			q.Set("job", f.Job)
		}
		if f.Pool != "" {
			q.Set("pool", f.Pool)
		}
		if f.Node != "" {
			q.Set("node", f.Node)
		}
		if len(f.Kinds) > 0 {
			q.Set("kind", strings.Join(f.Kinds, ","))
		}
		switch {
		case resumed || last > 0:
			q.Set("after", strconv.FormatUint(last, 10))
		case f.FromStart:
			q.Set("after", "0")
		case f.Tail > 0:
			q.Set("tail", strconv.Itoa(f.Tail))
		}
		if !f.Follow {
			q.Set("follow", "false")
		}
		before := last
		err := c.eventStream(ctx, "/v1/events?"+q.Encode(), &last, fn)
		var se *StatusError
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil && !f.Follow:
			return nil
		case errors.As(err, &se), errors.Is(err, errHandler):
			return errors.Unwrap(err)
		}
		// The server went away or the connection broke: resume after the
		// last ID seen, at once if this connection got somewhere, else
		// after a pause that grows while connections keep failing.
		resumed = true
		if last != before {
			backoff = 0
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
	}
}

// errHandler marks an error returned by an EventHandler.
var errHandler = errors.New("event handler")

type handlerError struct{ err error }

func (e *handlerError) Error() string        { return e.err.Error() }
func (e *handlerError) Unwrap() error        { return e.err }
func (e *handlerError) Is(target error) bool { return target == errHandler }

// eventStream reads one SSE response, keeping *last at the newest ID the
// stream confirmed (through events or id-only keep-alives).
func (c *Client) eventStream(ctx context.Context, path string, last *uint64, fn EventHandler) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		se := &StatusError{Status: resp.StatusCode}
		var e Error
		if b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20)); json.Unmarshal(b, &e) == nil && e.Err.Message != "" {
			se.Body = e.Err
		} else {
			se.Body = ErrorBody{Code: "http", Message: strings.TrimSpace(string(b))}
		}
		return &handlerError{se}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var name, id string
	var data bytes.Buffer
	for sc.Scan() {
		line := sc.Text()
		if line != "" {
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "event":
				name = value
			case "data":
				data.WriteString(value)
			case "id":
				id = value
			}
			continue
		}
		if err := dispatch(name, id, data.Bytes(), last, fn); err != nil {
			return err
		}
		name, id = "", ""
		data.Reset()
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return nil
}

// dispatch handles one complete SSE message.
func dispatch(name, id string, data []byte, last *uint64, fn EventHandler) error {
	if id != "" {
		n, err := strconv.ParseUint(id, 10, 64)
		if err != nil {
			return fmt.Errorf("event stream: bad id %q", id)
		}
		defer func() { *last = n }()
	}
	switch name {
	case "", "message":
		if len(data) == 0 {
			return nil // an id-only keep-alive
		}
		var ev Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return fmt.Errorf("event stream: %w", err)
		}
		if err := fn(ev, nil); err != nil {
			return &handlerError{err}
		}
	case "gap":
		var g struct {
			After   uint64 `json:"after"`
			Resumed uint64 `json:"resumed_after"`
		}
		json.Unmarshal(data, &g)
		err := fmt.Errorf("events after %d were dropped before the stream reached them (it goes on after %d): %w",
			g.After, g.Resumed, ErrEventGap)
		if err := fn(Event{}, err); err != nil {
			return &handlerError{err}
		}
	}
	return nil
}
