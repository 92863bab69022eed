// Package invariant checks, through the public API, the promises a Lote
// server must keep whatever happened to it: counts add up, no task has two
// successful attempts or runs again after completing, no node holds more
// tasks than its slots allow. End-to-end tests run it when they finish.
package invariant

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
)

// Check verifies every job, task and node the client can see. The state is
// read with several calls, so while tasks still move it retries until two
// readings agree or the context ends.
func Check(ctx context.Context, cl *api.Client) error {
	var last error
	for {
		err := checkOnce(ctx, cl)
		if err == nil {
			return nil
		}
		if errors.Is(err, errMoving) || api.IsStatus(err, http.StatusTooManyRequests) {
			last = err // moving, or rate limited: read again shortly
		} else {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("invariants: state kept changing: %w", last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

var errMoving = errors.New("state changed while being read")

func checkOnce(ctx context.Context, cl *api.Client) error {
	var jobs []api.Job
	if err := patiently(ctx, func() (err error) { jobs, err = cl.Jobs(ctx, "", nil); return err }); err != nil {
		return err
	}
	var problems []string
	for _, j := range jobs {
		tasks, err := allTasks(ctx, cl, j.ID)
		if err != nil {
			return err
		}
		var again api.Job
		if err := patiently(ctx, func() (err error) { again, err = cl.Job(ctx, j.ID); return err }); err != nil {
			return err
		}
		if again.TaskCounts != j.TaskCounts {
			return errMoving
		}
		problems = append(problems, checkJob(j, tasks)...)
		for _, t := range tasks {
			// Only a task with several attempts can have run again.
			if t.State != api.TaskCompleted || t.Attempt < 2 || len(problems) > 20 {
				continue
			}
			var full api.Task
			if err := patiently(ctx, func() error { full, err = cl.Task(ctx, j.ID, t.ID); return err }); err != nil {
				return err
			}
			problems = append(problems, checkAttempts(full)...)
		}
	}
	pools, err := cl.Pools(ctx)
	if err != nil {
		return err
	}
	for _, p := range pools {
		nodes, err := cl.PoolNodes(ctx, p.ID)
		if err != nil {
			return err
		}
		for _, n := range nodes {
			if n.RunningTasks > n.Slots {
				problems = append(problems, fmt.Sprintf("node %s runs %d tasks on %d slots", n.ID, n.RunningTasks, n.Slots))
			}
			if limit := n.Slots + prefill(p, n); n.RunningTasks+n.AssignedTasks > limit {
				problems = append(problems, fmt.Sprintf("node %s holds %d tasks, more than slots+prefill %d",
					n.ID, n.RunningTasks+n.AssignedTasks, limit))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invariants broken:\n  %s", strings.Join(problems, "\n  "))
	}
	return nil
}

// patiently retries a call the server rate-limited.
func patiently(ctx context.Context, call func() error) error {
	for {
		err := call()
		if !api.IsStatus(err, http.StatusTooManyRequests) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
	}
}

func prefill(p api.Pool, n api.Node) int {
	if p.Prefill >= 0 {
		return p.Prefill
	}
	return max(2*n.Slots, 4)
}

func allTasks(ctx context.Context, cl *api.Client, job string) ([]api.Task, error) {
	var out []api.Task
	next := ""
	for {
		var page api.TaskList
		if err := patiently(ctx, func() (err error) { page, err = cl.Tasks(ctx, job, "", 10000, next); return err }); err != nil {
			return nil, err
		}
		out = append(out, page.Tasks...)
		if page.Next == "" {
			return out, nil
		}
		next = page.Next
	}
}

// checkJob compares a job's counts with its tasks.
func checkJob(j api.Job, tasks []api.Task) []string {
	var got api.TaskCounts
	seen := map[string]bool{}
	var problems []string
	for _, t := range tasks {
		id := strings.ToLower(t.ID)
		if seen[id] {
			problems = append(problems, fmt.Sprintf("job %s lists task %s twice", j.ID, t.ID))
		}
		seen[id] = true
		switch t.State {
		case api.TaskActive:
			got.Active++
		case api.TaskAssigned:
			got.Assigned++
		case api.TaskPreparing:
			got.Preparing++
		case api.TaskRunning:
			got.Running++
		case api.TaskCompleted:
			got.Completed++
			if t.Result == api.ResultSuccess {
				got.Succeeded++
			} else {
				got.Failed++
			}
		default:
			problems = append(problems, fmt.Sprintf("task %s/%s has unknown state %q", j.ID, t.ID, t.State))
		}
	}
	if got != j.TaskCounts {
		problems = append(problems, fmt.Sprintf("job %s: task_counts %+v, but its tasks count %+v", j.ID, j.TaskCounts, got))
	}
	return problems
}

// checkAttempts checks one completed task's history: attempt numbers grow,
// at most one attempt succeeded and it was the last, and the task's result
// is its last attempt's.
func checkAttempts(t api.Task) []string {
	var problems []string
	prev := 0
	for i, a := range t.Attempts {
		if a.Number <= prev {
			problems = append(problems, fmt.Sprintf("task %s/%s: attempt %d follows attempt %d", t.JobID, t.ID, a.Number, prev))
		}
		prev = a.Number
		if a.Result == api.ResultSuccess && i != len(t.Attempts)-1 {
			problems = append(problems, fmt.Sprintf("task %s/%s ran again after attempt %d succeeded", t.JobID, t.ID, a.Number))
		}
	}
	if n := len(t.Attempts); n > 0 && t.Attempts[n-1].Result != t.Result && t.FailureCategory != "cancelled" {
		problems = append(problems, fmt.Sprintf("task %s/%s: result %q but its last attempt's is %q",
			t.JobID, t.ID, t.Result, t.Attempts[n-1].Result))
	}
	if prev > t.Attempt {
		problems = append(problems, fmt.Sprintf("task %s/%s: attempt %d recorded beyond its attempt number %d", t.JobID, t.ID, prev, t.Attempt))
	}
	return problems
}
