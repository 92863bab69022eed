package server

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/core"
)

// Handlers for operations on existing objects: terminate, delete, retry,
// cancel, priority, resize.

// tagFilter reads repeated ?tag=K=V parameters; a job matches when it has
// every one.
func tagFilter(r *http.Request) (map[string]string, error) {
	tags := map[string]string{}
	for _, t := range r.URL.Query()["tag"] {
		k, v, ok := strings.Cut(t, "=")
		if !ok || !validKey(k) {
			return nil, invalid("tag", "want KEY=VALUE with a tag name of letters, digits and . _ - / :, got %q", clip(t))
		}
		tags[k] = v
	}
	return tags, nil
}

func hasTags(j *core.Job, tags map[string]string) bool {
	for k, v := range tags {
		if got, ok := j.Tags[k]; !ok || got != v {
			return false
		}
	}
	return true
}

func (s *Server) terminateJob(w http.ResponseWriter, r *http.Request) error {
	var out api.Job
	err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
		j, err := s.job(c, r)
		if err != nil {
			return err
		}
		c.TerminateJob(j, "job terminated", now)
		out = jobOut(j)
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// terminateByTag ends every active job carrying all the given tags, in one
// call (what workflow engines need to cancel a run).
func (s *Server) terminateByTag(w http.ResponseWriter, r *http.Request) error {
	tags, err := tagFilter(r)
	if err != nil {
		return err
	}
	if len(tags) == 0 {
		return invalid("tag", "at least one tag is required")
	}
	out := api.JobList{Version: api.Version, Jobs: []api.Job{}}
	err = s.change(r.Context(), func(c *core.Core, now time.Time) error {
		for _, j := range c.Jobs() {
			if hasTags(j, tags) && visible(callerOf(r.Context()), j) {
				c.TerminateJob(j, "job terminated", now)
				out.Jobs = append(out.Jobs, jobOut(j))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteJob(w http.ResponseWriter, r *http.Request) error {
	err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
		j, err := s.job(c, r)
		if err != nil {
			return err
		}
		c.DeleteJob(j, now)
		return nil
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) updateJob(w http.ResponseWriter, r *http.Request) error {
	var in api.JobUpdate
	if err := decode(r, &in); err != nil {
		return err
	}
	var out api.Job
	err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
		j, err := s.job(c, r)
		if err != nil {
			return err
		}
		if in.Priority != nil {
			if err := c.SetJobPriority(j, *in.Priority); err != nil {
				return err
			}
		}
		out = jobOut(j)
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// retryJob reactivates the job's failed tasks (?failed=true, the only kind
// for now).
func (s *Server) retryJob(w http.ResponseWriter, r *http.Request) error {
	if r.URL.Query().Get("failed") != "true" {
		return invalid("failed", "say which tasks to retry: failed=true")
	}
	res := api.RetryResult{Version: api.Version}
	err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
		j, err := s.job(c, r)
		if err != nil {
			return err
		}
		res.JobID = j.ID
		res.Retried, err = c.RetryFailed(j, now)
		return err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, res)
}

func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) error {
	return s.taskOp(w, r, func(c *core.Core, j *core.Job, id string, now time.Time) (*core.Task, error) {
		return c.CancelTask(j, id, now)
	})
}

func (s *Server) retryTask(w http.ResponseWriter, r *http.Request) error {
	return s.taskOp(w, r, func(c *core.Core, j *core.Job, id string, now time.Time) (*core.Task, error) {
		t, _, _, ok := c.FindTask(j, id)
		if !ok {
			return nil, notFound("no task %q in job %q", id, j.ID)
		}
		if t == nil {
			return nil, &httpError{http.StatusConflict, api.CodeConflict, fmt.Sprintf("task %q has not run yet", id), ""}
		}
		return t, c.RetryTask(t, now)
	})
}

// taskOp applies op to the task named in the path and answers the task.
func (s *Server) taskOp(w http.ResponseWriter, r *http.Request,
	op func(c *core.Core, j *core.Job, id string, now time.Time) (*core.Task, error)) error {
	var out api.Task
	err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
		j, err := s.job(c, r)
		if err != nil {
			return err
		}
		t, err := op(c, j, r.PathValue("tid"), now)
		if err != nil {
			return err
		}
		out = taskOut(t, true)
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) resizePool(w http.ResponseWriter, r *http.Request) error {
	var in api.PoolResize
	if err := decode(r, &in); err != nil {
		return err
	}
	// Empty keeps the pool's option.
	dealloc := core.Deallocation(in.Deallocation)
	if _, ok := core.ParseDeallocation(in.Deallocation); !ok {
		return invalid("deallocation", "must be requeue, terminate or task_completion")
	}
	return s.changePool(w, r, false, func(c *core.Core, p *core.Pool) error {
		return c.SetPoolTarget(p, in.TargetNodes, in.TargetSpotNodes, dealloc)
	})
}

func (s *Server) rotateToken(w http.ResponseWriter, r *http.Request) error {
	return s.changePool(w, r, true, func(c *core.Core, p *core.Pool) error {
		c.RotateJoinToken(p, "join_"+newSecret())
		return nil
	})
}

// changePool runs fn on the pool the path names, durably, and answers with
// the pool as it is then (its join token when withToken).
func (s *Server) changePool(w http.ResponseWriter, r *http.Request, withToken bool, fn func(*core.Core, *core.Pool) error) error {
	var out api.Pool
	err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
		p := c.Pool(r.PathValue("id"))
		if p == nil {
			return notFound("no pool %q", r.PathValue("id"))
		}
		if err := fn(c, p); err != nil {
			return err
		}
		out = s.poolOut(p, withToken, now)
		return nil
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) deletePool(w http.ResponseWriter, r *http.Request) error {
	var removed []*core.Node
	var pool *core.Pool
	err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
		if pool = c.Pool(r.PathValue("id")); pool == nil {
			return notFound("no pool %q", r.PathValue("id"))
		}
		var err error
		removed, err = c.DeletePool(pool)
		return err
	})
	if err != nil {
		return err
	}
	s.scaler.deleteMachines(r.Context(), pool, removed)
	s.dropSessions(removed)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deleteNode(w http.ResponseWriter, r *http.Request) error {
	var n *core.Node
	err := s.change(r.Context(), func(c *core.Core, now time.Time) error {
		if n = c.Node(r.PathValue("id")); n == nil {
			return notFound("no node %q", r.PathValue("id"))
		}
		return c.RemoveNode(n)
	})
	if err != nil {
		return err
	}
	s.dropSessions([]*core.Node{n})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// dropSessions closes the streams of nodes the core forgot; their agents'
// next connection is refused.
func (s *Server) dropSessions(nodes []*core.Node) {
	for _, n := range nodes {
		if sess := s.eng.session(n.ID); sess != nil {
			sess.cancel()
		}
	}
}
