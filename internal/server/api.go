package server

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/blob"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/proto"
)

// maxBody bounds a request body: enough for a bulk add of tens of
// thousands of tasks, small enough that a client cannot exhaust memory.
const maxBody = 64 << 20

// route is one endpoint of the API. routeTable is the single list the mux
// is built from; the OpenAPI test reads it too, so the served routes and
// api/openapi.json cannot drift apart.
type route struct {
	pattern string // "METHOD /path", as http.ServeMux takes it
	access  access
	handle  func(s *Server, w http.ResponseWriter, r *http.Request) error
}

// access says how a route is authenticated.
type access int

const (
	admin  access = iota // an admin token; body bounded by maxBody
	user                 // any valid token; jobs are filtered by owner
	public               // no token (health checks)
	agent                // the handler authenticates the agent itself
	data                 // any valid token or a node's own token; containers checked by owner; bodies streamed without limit
)

var routeTable = []route{
	{"GET /healthz", public, (*Server).healthz},
	{"GET " + proto.Path, agent, (*Server).agentStream},
	{"GET /v1/openapi.json", user, (*Server).openAPI},
	{"GET /v1/pools", user, (*Server).listPools},
	{"POST /v1/pools", admin, (*Server).createPool},
	{"GET /v1/pools/{id}", user, (*Server).showPool},
	{"DELETE /v1/pools/{id}", admin, (*Server).deletePool},
	{"GET /v1/pools/{id}/nodes", user, (*Server).poolNodes},
	{"POST /v1/pools/{id}/resize", admin, (*Server).resizePool},
	{"POST /v1/pools/{id}/rotate-token", admin, (*Server).rotateToken},
	{"POST /v1/pools/{id}/autoscale/enable", admin, (*Server).enableAutoscale},
	{"POST /v1/pools/{id}/autoscale/disable", admin, (*Server).disableAutoscale},
	{"POST /v1/pools/{id}/autoscale/eval", admin, (*Server).evalAutoscale},
	{"GET /v1/nodes/{id}", admin, (*Server).showNode},
	{"DELETE /v1/nodes/{id}", admin, (*Server).deleteNode},
	{"POST /v1/nodes/{id}/drain", admin, (*Server).drain},
	{"POST /v1/nodes/{id}/undrain", admin, (*Server).undrain},
	{"POST /v1/nodes/{id}/preempt", admin, (*Server).preemptNode},
	{"GET /v1/jobs", user, (*Server).listJobs},
	{"POST /v1/jobs", user, (*Server).createJob},
	{"POST /v1/jobs/terminate", user, (*Server).terminateByTag},
	{"GET /v1/jobs/{id}", user, (*Server).showJob},
	{"PATCH /v1/jobs/{id}", user, (*Server).updateJob},
	{"DELETE /v1/jobs/{id}", user, (*Server).deleteJob},
	{"GET /v1/jobs/{id}/wait", user, (*Server).waitJob},
	{"POST /v1/jobs/{id}/terminate", user, (*Server).terminateJob},
	{"POST /v1/jobs/{id}/retry", user, (*Server).retryJob},
	{"GET /v1/jobs/{id}/tasks", user, (*Server).listTasks},
	{"POST /v1/jobs/{id}/tasks", user, (*Server).addTasks},
	{"GET /v1/jobs/{id}/tasks/{tid}", user, (*Server).showTask},
	{"POST /v1/jobs/{id}/tasks/{tid}/cancel", user, (*Server).cancelTask},
	{"POST /v1/jobs/{id}/tasks/{tid}/retry", user, (*Server).retryTask},
	{"GET /v1/jobs/{id}/tasks/{tid}/files/{name}", user, (*Server).taskFile},
	{"POST /v1/submit", user, (*Server).submit},
	{"GET /v1/tokens", admin, (*Server).listTokens},
	{"POST /v1/tokens", admin, (*Server).createToken},
	{"DELETE /v1/tokens/{name}", admin, (*Server).revokeToken},
	{"GET /v1/events", user, (*Server).streamEvents},
	{"GET /v1/data", data, (*Server).listContainers},
	{"GET /v1/data/{container}", data, (*Server).listData},
	{"GET /v1/data/{container}/{path...}", data, (*Server).getData},
	{"PUT /v1/data/{container}/{path...}", data, (*Server).putData},
	{"DELETE /v1/data/{container}/{path...}", data, (*Server).deleteData},
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routeTable {
		mux.HandleFunc(rt.pattern, s.serve(rt))
	}
	for _, rt := range webRoutes {
		mux.HandleFunc(rt.pattern, s.serve(rt))
	}
	if s.cfg.Pprof {
		for _, rt := range pprofRoutes {
			mux.HandleFunc(rt.pattern, s.serve(rt))
		}
	}
	return mux
}

// serve wraps a route's handler with its authentication, the body limit and
// the error answer.
func (s *Server) serve(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if rt.access == admin || rt.access == user {
			id, ok := s.who(r)
			if !ok {
				writeErr(w, http.StatusUnauthorized, api.CodeUnauthorized, "missing or invalid bearer token", "")
				return
			}
			if rt.access == admin && !id.admin() {
				writeErr(w, http.StatusForbidden, "forbidden", "needs an admin token", "")
				return
			}
			if !s.allow(w, id) {
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
			r.Body = http.MaxBytesReader(w, r.Body, maxBody)
			// While the store refuses commits, changes are refused before
			// they reach the core: they could not be made durable.
			if errp := s.eng.failed.Load(); errp != nil && r.Method != http.MethodGet && r.Method != http.MethodHead {
				w.Header().Set("Retry-After", "5")
				writeErr(w, http.StatusServiceUnavailable, api.CodeUnavailable, "the store cannot commit changes (is its disk full?): "+(*errp).Error(), "")
				return
			}
		}
		if rt.access == data {
			id, ok := s.who(r)
			if !ok && s.nodeAuthorized(r) {
				id, ok = identity{name: roleNode, role: roleNode}, true
			}
			if !ok {
				writeErr(w, http.StatusUnauthorized, api.CodeUnauthorized, "missing or invalid bearer token", "")
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), identityKey{}, id))
		}
		if err := rt.handle(s, w, r); err != nil {
			s.writeError(w, err)
		}
	}
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	if s.eng.failed.Load() != nil {
		return &httpError{http.StatusServiceUnavailable, api.CodeUnavailable, "store failed", ""}
	}
	_, err := w.Write([]byte("ok\n"))
	return err
}

func (s *Server) agentStream(w http.ResponseWriter, r *http.Request) error {
	s.handleAgent(w, r)
	return nil
}

// openAPI serves the API's description. It needs the bearer token like
// every other /v1 call (DESIGN §6: only /healthz is open).
func (s *Server) openAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(api.OpenAPI)
	return err
}

func bearer(r *http.Request) (string, bool) {
	return strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// nodeAuthorized reports whether the request carries a node's own token
// ("NODE.SECRET"): agents stage files through the data API with it, so
// they need no storage credentials.
func (s *Server) nodeAuthorized(r *http.Request) bool {
	tok, ok := bearer(r)
	id, _, cut := strings.Cut(tok, ".")
	if !ok || !cut {
		return false
	}
	if s.cfg.AgentMTLS && !certNames(agentCert(r), id) {
		return false
	}
	var hash string
	s.read(func(c *core.Core) {
		if n := c.Node(id); n != nil {
			hash = n.TokenHash
		}
	})
	return hash != "" && subtle.ConstantTimeCompare([]byte(hash), []byte(hashToken(tok))) == 1
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
		writeErr(w, http.StatusRequestEntityTooLarge, api.CodeTooLarge, fmt.Sprintf("request body over %d bytes", maxBody), "body")
	case errors.Is(err, core.ErrNotFound):
		writeErr(w, http.StatusNotFound, api.CodeNotFound, err.Error(), "")
	case errors.Is(err, core.ErrConflict):
		writeErr(w, http.StatusConflict, api.CodeConflict, err.Error(), "")
	case errors.Is(err, errStoreUnavailable):
		w.Header().Set("Retry-After", "5")
		writeErr(w, http.StatusServiceUnavailable, api.CodeUnavailable,
			"the store cannot commit changes (is its disk full?); the outcome of this request is unknown, retry it with the same idempotency key: "+err.Error(), "")
	case errors.Is(err, core.ErrQuota):
		// No Retry-After: the quota frees only as the user's tasks end.
		writeErr(w, http.StatusTooManyRequests, api.CodeQuota, err.Error(), "")
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

// decode reads a JSON body strictly: unknown fields, members named twice
// and trailing data are errors naming what is wrong. Errors that belong to
// no field (malformed JSON, an empty body, nesting over encoding/json's
// 10,000 levels) name the field "body".
func decode(r *http.Request, v any) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.As(err, &te):
			field := te.Field
			if field == "" {
				field = "body"
			}
			return invalid(field, "must be %s (got %s)", wireType(te.Type), te.Value)
		case errors.Is(err, io.EOF):
			return invalid("body", "empty request body")
		case errors.As(err, &se):
			return invalid("body", "malformed JSON at byte %d: %v", se.Offset, err)
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			f := strings.Trim(name, `"`)
			return invalid(f, "unknown field %q", f)
		}
		return invalid("body", "malformed JSON: %v", err)
	}
	if dec.More() {
		return invalid("body", "trailing data after the JSON document")
	}
	if path, key, dup := duplicateKey(body, reflect.TypeOf(v)); dup {
		return invalid(path, "member %q appears twice in one object", key)
	}
	return nil
}

// wireType says in JSON's words what a Go type accepts.
func wireType(t reflect.Type) string {
	if t == reflect.TypeFor[api.Duration]() {
		return `a duration string like "30s" or "1h30m", not negative`
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprintf("an integer that fits in %d bits", t.Bits())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a non-negative integer that fits in %d bits", t.Bits())
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return wireType(t.Elem())
	}
	return t.String()
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
		now := s.cfg.Now()
		for _, p := range c.Pools() {
			out = append(out, s.poolOut(p, false, now))
		}
	})
	return writeJSON(w, http.StatusOK, map[string]any{"version": api.Version, "pools": orEmpty(out)})
}

func (s *Server) createPool(w http.ResponseWriter, r *http.Request) error {
	var in api.PoolCreate
	if err := decode(r, &in); err != nil {
		return err
	}
	var err error
	if in.Apps, err = s.pinApps(r.Context(), in.Apps, "", map[string]string{}); err != nil {
		return err
	}
	spec, err := poolSpec(in)
	if err != nil {
		return err
	}
	spec.JoinToken = "join_" + newSecret()
	var out api.Pool
	err = s.change(r.Context(), func(c *core.Core, now time.Time) error {
		p, err := c.CreatePool(spec, now)
		if err != nil {
			return conflictAt(err, "id")
		}
		out = s.poolOut(p, true, now)
		return nil
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
			out, found = s.poolOut(p, r.URL.Query().Get("reveal_token") == "true", s.cfg.Now()), true
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

func (s *Server) drain(w http.ResponseWriter, r *http.Request) error { return s.setDrained(w, r, true) }

func (s *Server) undrain(w http.ResponseWriter, r *http.Request) error {
	return s.setDrained(w, r, false)
}

func (s *Server) setDrained(w http.ResponseWriter, r *http.Request, drain bool) error {
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
			if (state == "" || j.State.String() == state) && hasTags(j, tags) && visible(callerOf(r.Context()), j) {
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
	spec, err := jobSpec(in, callerOf(r.Context()).name)
	if err != nil {
		return err
	}
	return s.changeOnce(w, r, in, http.StatusCreated, func(c *core.Core, now time.Time) (any, error) {
		if err := s.eng.checkJobData(callerOf(r.Context()), spec, ""); err != nil {
			return nil, err
		}
		j, err := c.CreateJob(spec, now)
		if err != nil {
			return nil, conflictAt(err, "id")
		}
		return jobOut(j), nil
	})
}

// job finds the job a request names; another user's job is not found.
func (s *Server) job(c *core.Core, r *http.Request) (*core.Job, error) {
	j := c.Job(r.PathValue("id"))
	if j == nil || !visible(callerOf(r.Context()), j) {
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

// waitRecheck is the least time between two looks of a waiting job.
const waitRecheck = 10 * time.Millisecond

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
			// What was read may not be durable yet: answer once the batch
			// holding it has committed, so "done" never names a completion
			// a crash could still undo.
			if err := s.eng.wait(r.Context(), s.eng.do(func(*core.Core, time.Time) {})); err != nil {
				return err
			}
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
		// Commits come hundreds of times a second under load; looking at
		// the job after each one cost the server a sixth of its CPU with one
		// client waiting. A look every 10 ms is plenty.
		select {
		case <-time.After(waitRecheck):
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
}

func (s *Server) addTasks(w http.ResponseWriter, r *http.Request) error {
	var in api.TaskAdd
	if err := decode(r, &in); err != nil {
		return err
	}
	add, err := s.resolveApps(r.Context(), in, "")
	if err != nil {
		return err
	}
	return s.changeOnce(w, r, in, http.StatusCreated, func(c *core.Core, now time.Time) (any, error) {
		j, err := s.job(c, r)
		if err != nil {
			return nil, err
		}
		return s.addToJob(c, callerOf(r.Context()), j, add, "", now)
	})
}

// addToJob validates a task add against an existing job and applies it;
// field prefixes the wire path of the request's TaskAdd.
func (s *Server) addToJob(c *core.Core, id identity, j *core.Job, in api.TaskAdd, field string, now time.Time) (any, error) {
	add, err := taskAdd(in, j.MaxRetries)
	if err != nil {
		return nil, prefixField(field, err)
	}
	if j.State != core.JobActive {
		return nil, &httpError{http.StatusConflict, api.CodeConflict, fmt.Sprintf("job %q is %s", j.ID, j.State), ""}
	}
	claims, err := s.eng.checkTaskData(id, &add, field)
	if err != nil {
		return nil, err
	}
	nameTasks(j, &add)
	g, err := c.AddTasks(j, add, now)
	if err != nil {
		return nil, prefixField(field, conflictAt(existingTask(j, &add, err), groupField("", add)))
	}
	for _, container := range claims {
		s.eng.claimData(container, id.name, now)
	}
	return addResult(g), nil
}

func (s *Server) submit(w http.ResponseWriter, r *http.Request) error {
	var in api.Submit
	if err := decode(r, &in); err != nil {
		return err
	}
	tasks, err := s.resolveApps(r.Context(), in.Tasks, "tasks.")
	if err != nil {
		return err
	}
	return s.changeOnce(w, r, in, http.StatusCreated, func(c *core.Core, now time.Time) (any, error) {
		if in.Existing {
			j := c.Job(in.Job.ID)
			if j == nil || !visible(callerOf(r.Context()), j) {
				return nil, notFound("no job %q", in.Job.ID)
			}
			return s.addToJob(c, callerOf(r.Context()), j, tasks, "tasks.", now)
		}
		spec, err := jobSpec(in.Job, callerOf(r.Context()).name)
		if err != nil {
			return nil, prefixField("job.", err)
		}
		if c.Pool(spec.PoolID) == nil {
			return nil, invalid("job.pool_id", "no pool %q", spec.PoolID)
		}
		for i, id := range spec.BurstPoolIDs {
			if c.Pool(id) == nil {
				return nil, invalid(fmt.Sprintf("job.burst_pool_ids[%d]", i), "no pool %q", id)
			}
		}
		if spec.ID != "" && c.Job(spec.ID) != nil {
			return nil, &httpError{http.StatusConflict, api.CodeConflict, fmt.Sprintf("job %q already exists", spec.ID), "job.id"}
		}
		if err := s.eng.checkJobData(callerOf(r.Context()), spec, "job."); err != nil {
			return nil, err
		}
		add, err := taskAdd(tasks, spec.MaxRetries)
		if err != nil {
			return nil, prefixField("tasks.", err)
		}
		claims, err := s.eng.checkTaskData(callerOf(r.Context()), &add, "tasks.")
		if err != nil {
			return nil, err
		}
		nameTasks(nil, &add)
		_, g, err := c.CreateJobWithTasks(spec, add, now)
		if err != nil {
			return nil, prefixField("tasks.", conflictAt(err, groupField("", add)))
		}
		for _, container := range claims {
			s.eng.claimData(container, spec.Owner, now)
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
	var result core.Result // ResultNone: any
	switch q.Get("result") {
	case "":
	case "success":
		result = core.ResultSuccess
	case "failure":
		result = core.ResultFailure
	default:
		return invalid("result", "must be success or failure")
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
					// Never dispatched: waiting, or cancelled with a terminated job.
					pState, pResult := core.TaskActive, core.ResultNone
					if g.Closed() {
						pState, pResult = core.TaskCompleted, core.ResultFailure
					}
					if (!filter || state == pState) && (result == core.ResultNone || result == pResult) {
						out.Tasks = append(out.Tasks, pendingTaskOut(g, pos))
					}
					continue
				}
				if (!filter || t.State == state) && (result == core.ResultNone || t.State == core.TaskCompleted && t.Cur.Result == result) {
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
	if len(data) >= blob.MaxInlineLog {
		// Only the start is stored inline; the agent uploaded the whole log.
		if rc, err := s.blob.Get(r.Context(), blob.LogRef(jobID, taskID, attempt, stream+".txt")); err == nil {
			defer rc.Close()
			if _, err := io.CopyN(io.Discard, rc, offset); err != nil {
				return nil
			}
			_, err = io.Copy(w, rc)
			return err
		}
	}
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
