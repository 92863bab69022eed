package agent

// A job's preparation task runs once on a node before the job's first task
// there, in workitems/JOB/jobpreparation (its inputs staged into wd first,
// like a start task's). Tasks of the job that arrive while it runs wait
// for it; its result is kept in result.json, so it runs once per node even
// across agent restarts. When it failed after its retries, every task of
// the job on this node reports PrepFailed without starting: the server bars
// the node from the job and runs those tasks elsewhere (Azure Batch's
// semantics).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/lotehq/lote/internal/proto"
)

// errPrepFailed marks a staging error caused by a failed job preparation task.
var errPrepFailed = errors.New("job preparation task failed")

// jobPrepState is the agent's job preparation bookkeeping; its zero value
// is ready to use.
type jobPrepState struct {
	mu    sync.Mutex
	done  map[string]*proto.StartTaskDone // by job, once known
	locks map[string]*sync.Mutex
	// released are jobs whose release task this agent ran or runs.
	released map[string]bool
}

func (a *Agent) jobPrepDir(job string) string {
	return filepath.Join(a.cfg.Dir, "workitems", job, "jobpreparation")
}

// prepReady reports whether the task's job needs no preparation on this
// node any more (none, or it already succeeded here).
func (a *Agent) prepReady(t *task) bool {
	if t.tpl == nil || t.tpl.JobPrep == nil {
		return true
	}
	a.prep.mu.Lock()
	defer a.prep.mu.Unlock()
	d := a.prep.done[t.ref.Job]
	return d != nil && d.OK
}

// ensureJobPrep runs the job's preparation task on this node unless it ran
// already, and returns an error wrapping errPrepFailed when it failed.
func (a *Agent) ensureJobPrep(ctx context.Context, t *task) error {
	st := t.tpl.JobPrep
	if st == nil {
		return nil
	}
	job := t.ref.Job
	a.prep.mu.Lock()
	if a.prep.locks == nil {
		a.prep.locks, a.prep.done = map[string]*sync.Mutex{}, map[string]*proto.StartTaskDone{}
	}
	l := a.prep.locks[job]
	if l == nil {
		l = &sync.Mutex{}
		a.prep.locks[job] = l
	}
	a.prep.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	a.prep.mu.Lock()
	done := a.prep.done[job]
	a.prep.mu.Unlock()
	dir := a.jobPrepDir(job)
	result := filepath.Join(dir, "result.json")
	if done == nil {
		if b, err := os.ReadFile(result); err == nil {
			var d proto.StartTaskDone
			if json.Unmarshal(b, &d) == nil {
				done = &d
			}
		}
	}
	if done == nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("job preparation: %w", err)
		}
		d := a.runNodeTask(ctx, "jobpreparation", dir, job, *st)
		if ctx.Err() != nil && !d.OK {
			return ctx.Err() // stopped, not failed: run it again next time
		}
		saveResult(result, d)
		done = &d
	}
	a.prep.mu.Lock()
	a.prep.done[job] = done
	a.prep.mu.Unlock()
	if !done.OK {
		msg := fmt.Sprintf("exit code %d after %d attempt(s)", done.ExitCode, done.Attempts)
		if done.Err != "" {
			msg += ": " + done.Err
		}
		return fmt.Errorf("%w: %s", errPrepFailed, msg)
	}
	return nil
}

// runJobRelease runs an ended job's release task in
// workitems/JOB/jobrelease, once per node (a resent request finds its
// result.json). Its outcome is only logged: the job has ended already.
func (a *Agent) runJobRelease(r proto.JobRelease) {
	if strings.ContainsAny(r.Job, `/\`) || r.Job == "" || r.Job == "." || r.Job == ".." {
		return
	}
	dir := filepath.Join(a.cfg.Dir, "workitems", r.Job, "jobrelease")
	a.prep.mu.Lock()
	if a.prep.released == nil {
		a.prep.released = map[string]bool{}
	}
	seen := a.prep.released[r.Job]
	a.prep.released[r.Job] = true
	a.prep.mu.Unlock()
	result := filepath.Join(dir, "result.json")
	if _, err := os.Stat(result); seen || err == nil {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		a.log.Error("job release task", "job", r.Job, "err", err)
		return
	}
	d := a.runNodeTask(context.Background(), "jobrelease", dir, r.Job, r.Task)
	saveResult(result, d)
	a.log.Info("job release task ended", "job", r.Job, "ok", d.OK, "exit_code", d.ExitCode, "err", d.Err)
}
