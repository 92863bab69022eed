package server

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/proto"
)

// maxBody bounds a request body: enough for a bulk add of tens of
// thousands of tasks, small enough that a client cannot exhaust memory.
const maxBody = 64 << 20

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if s.eng.failed.Load() != nil {
			writeErr(w, http.StatusServiceUnavailable, api.CodeUnavailable, "store failed", "")
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET "+proto.Path, s.handleAgent)
	auth := func(pattern string, h func(w http.ResponseWriter, r *http.Request) error) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			if !s.authorized(r) {
				writeErr(w, http.StatusUnauthorized, api.CodeUnauthorized, "missing or invalid bearer token", "")
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			if err := h(w, r); err != nil {
				s.writeError(w, err)
			}
		})
	}
	auth("GET /v1/pools", s.listPools)
	auth("POST /v1/pools", s.createPool)
	auth("GET /v1/pools/{id}", s.showPool)
	auth("GET /v1/pools/{id}/nodes", s.poolNodes)
	auth("GET /v1/nodes/{id}", s.showNode)
	auth("POST /v1/nodes/{id}/drain", s.drainNode(true))
	auth("POST /v1/nodes/{id}/undrain", s.drainNode(false))
	auth("GET /v1/jobs", s.listJobs)
	auth("POST /v1/jobs", s.createJob)
	auth("GET /v1/jobs/{id}", s.showJob)
	auth("GET /v1/jobs/{id}/wait", s.waitJob)
	auth("POST /v1/jobs/{id}/tasks", s.addTasks)
	auth("GET /v1/jobs/{id}/tasks", s.listTasks)
	auth("GET /v1/jobs/{id}/tasks/{tid}", s.showTask)
	auth("GET /v1/jobs/{id}/tasks/{tid}/files/{name}", s.taskFile)
	auth("POST /v1/submit", s.submit)
	auth("POST /v1/pools/{id}/resize", s.resizePool)
	auth("POST /v1/pools/{id}/rotate-token", s.rotateToken)
	auth("DELETE /v1/pools/{id}", s.deletePool)
	auth("DELETE /v1/nodes/{id}", s.deleteNode)
	auth("PATCH /v1/jobs/{id}", s.updateJob)
	auth("DELETE /v1/jobs/{id}", s.deleteJob)
	auth("POST /v1/jobs/{id}/terminate", s.terminateJob)
	auth("POST /v1/jobs/terminate", s.terminateByTag)
	auth("POST /v1/jobs/{id}/retry", s.retryJob)
	auth("POST /v1/jobs/{id}/tasks/{tid}/cancel", s.taskOp(cancelTask))
	auth("POST /v1/jobs/{id}/tasks/{tid}/retry", s.taskOp(retryTask))
	return mux
}

func bearer(r *http.Request) (string, bool) {
	return strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := bearer(r)
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(s.adminTok)) == 1
}

// httpError carries a status and code for writeError.
type httpError struct {
	status int
	code   string
	msg    string
	field  string
}

func (e *httpError) Error() string { return e.msg }

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, api.CodeNotFound, fmt.Sprintf(format, args...), ""}
}

func invalid(field, format string, args ...any) error {
	return &httpError{http.StatusBadRequest, api.CodeInvalid, fmt.Sprintf(format, args...), field}
}

func (s *Server) writeError(w http.ResponseWriter, err error) {
	var he *httpError
	var fe *core.FieldError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		writeErr(w, he.status, he.code, he.msg, he.field)
	case errors.As(err, &fe):
		writeErr(w, http.StatusBadRequest, api.CodeInvalid, fe.Error(), fe.Field)
	case errors.As(err, &mbe):
		writeErr(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, fmt.Sprintf("request body over %d bytes", maxBody), "")
	case errors.Is(err, core.ErrNotFound):
		writeErr(w, http.StatusNotFound, api.CodeNotFound, err.Error(), "")
	case errors.Is(err, core.ErrConflict):
		writeErr(w, http.StatusConflict, api.CodeConflict, err.Error(), "")
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeErr(w, http.StatusServiceUnavailable, api.CodeUnavailable, err.Error(), "")
	default:
		s.log.Error("request failed", "err", err)
		writeErr(w, http.StatusInternalServerError, api.CodeInternal, err.Error(), "")
	}
}

func writeErr(w http.ResponseWriter, status int, code, msg, field string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(api.Error{Err: api.ErrorBody{Code: code, Message: msg, Field: field}})
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// decode reads a JSON body strictly: unknown fields and trailing data are
// errors naming what is wrong.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.As(err, &te):
			return invalid(te.Field, "must be %s", te.Type)
		case errors.Is(err, io.EOF):
			return invalid("", "empty request body")
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			f := strings.Trim(name, `"`)
			return invalid(f, "unknown field %q", f)
		}
		return invalid("", "malformed JSON: %v", err)
	}
	if dec.More() {
		return invalid("", "trailing data after the JSON document")
	}
	return nil
}

// read runs fn under the core lock for a consistent view.
func (s *Server) read(fn func(c *core.Core)) {
	s.eng.mu.Lock()
	defer s.eng.mu.Unlock()
	fn(s.eng.core)
}

// change runs fn under the core lock and waits until its changes are
// durable. fn's error aborts before anything is written.
func (s *Server) change(ctx context.Context, fn func(c *core.Core, now time.Time) error) error {
	var err error
	seq := s.eng.do(func(c *core.Core, now time.Time) { err = fn(c, now) })
	if err != nil {
		return err
	}
	return s.eng.wait(ctx, seq)
}

func (s *Server) listPools(w http.ResponseWriter, r *http.Request) error {
	var out []api.Pool
	s.read(func(c *core.Core) {
		for _, p := range c.Pools() {
			out = append(out, poolOut(p, false))
		}
	})
	return writeJSON(w, http.StatusOK, map[string]any{"version": api.Version, "pools": orEmpty(out)})
}

func (s *Server) createPool(w http.ResponseWriter, r *http.Request) error {
	var in api.PoolCreate
	if err := decode(r, &in); err != nil {
		return err
	}
	fill, ok := core.ParseFillPolicy(in.FillPolicy)
	if !ok {
		return invalid("fill_policy", "must be spread or pack")
	}
	switch in.Provider {
	case "", "static", "local":
	default:
		return invalid("provider", "must be static or local")
	}
	prefill := -1
	if in.Prefill != nil {
		prefill = *in.Prefill
	}
	spec := core.PoolSpec{
		ID: in.ID, Provider: orDefault(in.Provider, "static"), SlotsPerNode: in.SlotsPerNode, Fill: fill,
		Prefill: prefill, TargetNodes: in.TargetNodes, Labels: in.Labels, JoinToken: "join_" + newSecret(),
	}
	var out api.Pool
	err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
		p, err := c.CreatePool(spec, now)
		if err == nil {
			out = poolOut(p, true)
		}
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, out)
}

func (s *Server) showPool(w http.ResponseWriter, r *http.Request) error {
	var out api.Pool
	var found bool
	s.read(func(c *core.Core) {
		if p := c.Pool(r.PathValue("id")); p != nil {
			out, found = poolOut(p, r.URL.Query().Get("reveal_token") == "true"), true
		}
	})
	if !found {
		return notFound("no pool %q", r.PathValue("id"))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) poolNodes(w http.ResponseWriter, r *http.Request) error {
	var out []api.Node
	var found bool
	s.read(func(c *core.Core) {
		p := c.Pool(r.PathValue("id"))
		if p == nil {
			return
		}
		found = true
		for _, n := range p.SortedNodes() {
			out = append(out, nodeOut(n))
		}
	})
	if !found {
		return notFound("no pool %q", r.PathValue("id"))
	}
	return writeJSON(w, http.StatusOK, map[string]any{"version": api.Version, "nodes": orEmpty(out)})
}

func (s *Server) showNode(w http.ResponseWriter, r *http.Request) error {
	var out api.Node
	var found bool
	s.read(func(c *core.Core) {
		if n := c.Node(r.PathValue("id")); n != nil {
			out, found = nodeOut(n), true
		}
	})
	if !found {
		return notFound("no node %q", r.PathValue("id"))
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) drainNode(drain bool) func(w http.ResponseWriter, r *http.Request) error {
	return func(w http.ResponseWriter, r *http.Request) error {
		var out api.Node
		err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
			n := c.Node(r.PathValue("id"))
			if n == nil {
				return notFound("no node %q", r.PathValue("id"))
			}
			c.SetDrained(n, drain)
			out = nodeOut(n)
			return nil
		})
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, out)
	}
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) error {
	out := api.JobList{Version: api.Version, Jobs: []api.Job{}}
	state := r.URL.Query().Get("state")
	switch state {
	case "", "active", "terminating", "completed":
	default:
		return invalid("state", "must be active, terminating or completed")
	}
	tags, err := tagFilter(r)
	if err != nil {
		return err
	}
	s.read(func(c *core.Core) {
		for _, j := range c.Jobs() {
			if (state == "" || j.State.String() == state) && hasTags(j, tags) {
				out.Jobs = append(out.Jobs, jobOut(j))
			}
		}
	})
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) error {
	var in api.JobCreate
	if err := decode(r, &in); err != nil {
		return err
	}
	spec, err := jobSpec(in, "admin")
	if err != nil {
		return err
	}
	return s.changeOnce(w, r, in, http.StatusCreated, func(c *core.Core, now time.Time) (any, error) {
		j, err := c.CreateJob(spec, now)
		if err != nil {
			return nil, err
		}
		return jobOut(j), nil
	})
}

func (s *Server) job(c *core.Core, r *http.Request) (*core.Job, error) {
	j := c.Job(r.PathValue("id"))
	if j == nil {
		return nil, notFound("no job %q", r.PathValue("id"))
	}
	return j, nil
}

func (s *Server) showJob(w http.ResponseWriter, r *http.Request) error {
	var out api.Job
	var err error
	s.read(func(c *core.Core) {
		var j *core.Job
		if j, err = s.job(c, r); err == nil {
			out = jobOut(j)
		}
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// waitJob long-polls until the job's first `groups` task groups (the tasks
// it had when the caller started waiting) have all completed, or `timeout`
// passes; it answers the job either way.
func (s *Server) waitJob(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	groups, err := strconv.Atoi(q.Get("groups"))
	if err != nil || groups < 0 {
		return invalid("groups", "must be a non-negative integer")
	}
	timeout, err := time.ParseDuration(orDefault(q.Get("timeout"), "30s"))
	if err != nil || timeout < 0 || timeout > 5*time.Minute {
		return invalid("timeout", "must be a duration up to 5m")
	}
	deadline := time.Now().Add(timeout)
	for {
		s.eng.waitMu.Lock()
		ch := s.eng.waitc
		s.eng.waitMu.Unlock()
		var out api.Job
		var done bool
		s.read(func(c *core.Core) {
			var j *core.Job
			if j, err = s.job(c, r); err != nil {
				return
			}
			out = jobOut(j)
			done = true
			for i, g := range j.Groups {
				if i >= groups {
					break
				}
				if g.Done() < g.Count() {
					done = false
					break
				}
			}
		})
		if err != nil {
			return err
		}
		left := time.Until(deadline)
		if done || left <= 0 {
			out.Done = done
			return writeJSON(w, http.StatusOK, out)
		}
		t := time.NewTimer(left)
		select {
		case <-ch:
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return r.Context().Err()
		}
		t.Stop()
	}
}

func (s *Server) addTasks(w http.ResponseWriter, r *http.Request) error {
	var in api.TaskAdd
	if err := decode(r, &in); err != nil {
		return err
	}
	return s.changeOnce(w, r, in, http.StatusCreated, func(c *core.Core, now time.Time) (any, error) {
		j, err := s.job(c, r)
		if err != nil {
			return nil, err
		}
		add, err := taskAdd(in, j.MaxRetries)
		if err != nil {
			return nil, err
		}
		g, err := c.AddTasks(j, add, now)
		if err != nil {
			return nil, err
		}
		return addResult(g), nil
	})
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) error {
	var in api.Submit
	if err := decode(r, &in); err != nil {
		return err
	}
	return s.changeOnce(w, r, in, http.StatusCreated, func(c *core.Core, now time.Time) (any, error) {
		if in.Existing {
			j := c.Job(in.Job.ID)
			if j == nil {
				return nil, notFound("no job %q", in.Job.ID)
			}
			add, err := taskAdd(in.Tasks, j.MaxRetries)
			if err != nil {
				return nil, prefixField("tasks.", err)
			}
			g, err := c.AddTasks(j, add, now)
			if err != nil {
				return nil, err
			}
			return addResult(g), nil
		}
		spec, err := jobSpec(in.Job, "admin")
		if err != nil {
			return nil, prefixField("job.", err)
		}
		add, err := taskAdd(in.Tasks, spec.MaxRetries)
		if err != nil {
			return nil, prefixField("tasks.", err)
		}
		_, g, err := c.CreateJobWithTasks(spec, add, now)
		if err != nil {
			return nil, err
		}
		return addResult(g), nil
	})
}

func prefixField(prefix string, err error) error {
	var he *httpError
	var fe *core.FieldError
	switch {
	case errors.As(err, &he) && he.field != "":
		he.field = prefix + he.field
	case errors.As(err, &fe):
		fe.Field = prefix + fe.Field
	}
	return err
}

func addResult(g *core.Group) api.TaskAddResult {
	return api.TaskAddResult{
		Version: api.Version, JobID: g.Job.ID, Added: g.Count(), FirstID: g.IDAt(0), LastID: g.IDAt(g.Count() - 1),
	}
}

// listTasks pages through a job's tasks in submission order. The cursor is
// "GROUP:POS"; tasks that never left active are synthesized from their group.
func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit := 1000
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			return invalid("limit", "must be between 1 and 100000")
		}
		limit = n
	}
	var state core.TaskState
	filter := q.Get("state") != ""
	if filter {
		var ok bool
		if state, ok = core.ParseTaskState(q.Get("state")); !ok {
			return invalid("state", "must be one of active, assigned, preparing, running, completed")
		}
	}
	gi, pos := 0, 0
	if v := q.Get("next"); v != "" {
		a, b, ok := strings.Cut(v, ":")
		var err1, err2 error
		gi, err1 = strconv.Atoi(a)
		pos, err2 = strconv.Atoi(b)
		if !ok || err1 != nil || err2 != nil || gi < 0 || pos < 0 {
			return invalid("next", "malformed page cursor")
		}
	}
	out := api.TaskList{Version: api.Version, Tasks: []api.Task{}}
	var err error
	s.read(func(c *core.Core) {
		var j *core.Job
		if j, err = s.job(c, r); err != nil {
			return
		}
		for ; gi < len(j.Groups); gi, pos = gi+1, 0 {
			g := j.Groups[gi]
			for ; pos < g.Count(); pos++ {
				if len(out.Tasks) == limit {
					out.Next = strconv.Itoa(gi) + ":" + strconv.Itoa(pos)
					return
				}
				t := j.Tasks[strings.ToLower(g.IDAt(pos))]
				if t == nil || t.Group != g {
					if !filter || state == core.TaskActive {
						out.Tasks = append(out.Tasks, pendingTaskOut(g, pos))
					}
					continue
				}
				if !filter || t.State == state {
					out.Tasks = append(out.Tasks, taskOut(t, false))
				}
			}
		}
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) showTask(w http.ResponseWriter, r *http.Request) error {
	var out api.Task
	var err error
	s.read(func(c *core.Core) {
		var j *core.Job
		if j, err = s.job(c, r); err != nil {
			return
		}
		t, g, pos, ok := c.FindTask(j, r.PathValue("tid"))
		switch {
		case !ok:
			err = notFound("no task %q in job %q", r.PathValue("tid"), j.ID)
		case t == nil:
			out = pendingTaskOut(g, pos)
		default:
			out = taskOut(t, true)
		}
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// taskFile serves stdout.txt or stderr.txt of an attempt from `offset`: from
// the node while the attempt runs, from the store once it ended. The
// Lote-Log-Final header says whether more can come.
func (s *Server) taskFile(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	stream, ok := map[string]string{"stdout.txt": "stdout", "stderr.txt": "stderr"}[name]
	if !ok {
		return notFound("no file %q (stdout.txt and stderr.txt exist)", name)
	}
	q := r.URL.Query()
	offset, err := strconv.ParseInt(orDefault(q.Get("offset"), "0"), 10, 64)
	if err != nil || offset < 0 {
		return invalid("offset", "must be a non-negative integer")
	}
	attempt := 0
	if v := q.Get("attempt"); v != "" {
		if attempt, err = strconv.Atoi(v); err != nil || attempt < 1 {
			return invalid("attempt", "must be a positive integer")
		}
	}
	var jobID, taskID, nodeID, state string
	var live bool
	s.read(func(c *core.Core) {
		var j *core.Job
		if j, err = s.job(c, r); err != nil {
			return
		}
		t, _, _, found := c.FindTask(j, r.PathValue("tid"))
		if !found {
			err = notFound("no task %q in job %q", r.PathValue("tid"), j.ID)
			return
		}
		state = core.TaskActive.String()
		if t == nil {
			return
		}
		jobID, taskID, state = j.ID, t.ID, t.State.String()
		if attempt == 0 {
			attempt = t.Attempt
		}
		if t.Node != nil && attempt == t.Attempt && t.State != core.TaskActive {
			live, nodeID = true, t.Node.ID
		}
	})
	if err != nil {
		return err
	}
	w.Header().Set("Lote-Task-State", state)
	w.Header().Set("Lote-Attempt", strconv.Itoa(attempt))
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if attempt == 0 {
		w.Header().Set("Lote-Log-Final", "false")
		return nil
	}
	if live {
		sess := s.eng.session(nodeID)
		if sess == nil {
			w.Header().Set("Lote-Log-Final", "false")
			return nil
		}
		chunk, err := sess.requestLog(r.Context(), proto.LogReq{
			Ref: proto.Ref{Job: jobID, Task: taskID, Attempt: attempt}, Stream: stream, Offset: offset, Max: 1 << 20,
		})
		if err != nil {
			return &httpError{http.StatusBadGateway, api.CodeUnavailable, err.Error(), ""}
		}
		w.Header().Set("Lote-Log-Final", "false")
		_, err = w.Write(chunk.Data)
		return err
	}
	// The attempt ended: its output is in the batch that recorded the end.
	seq := s.eng.do(func(*core.Core, time.Time) {})
	if err := s.eng.wait(r.Context(), seq); err != nil {
		return err
	}
	out, errb, err := s.st.Logs(r.Context(), jobID, taskID, attempt)
	if err != nil {
		return err
	}
	data := out
	if stream == "stderr" {
		data = errb
	}
	w.Header().Set("Lote-Log-Final", "true")
	if offset < int64(len(data)) {
		_, err = w.Write(data[offset:])
	}
	return err
}

func orDefault(v, d string) string {
	if v == "" {
		return d
	}
	return v
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
