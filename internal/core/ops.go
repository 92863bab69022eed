package core

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Operations users ask for on jobs, tasks and pools: cancel, terminate,
// delete, retry, resize. Like every handler they change memory and say what
// to persist and which agents to tell through Effects.

// CancelTask completes a task that has not completed yet as a failure of
// category cancelled. A running attempt is killed on its node; its late
// report is then stale and ignored.
func (c *Core) CancelTask(j *Job, id string, now time.Time) (*Task, error) {
	t, g, pos, ok := c.FindTask(j, id)
	if !ok {
		return nil, fmt.Errorf("task %q in job %q: %w", id, j.ID, ErrNotFound)
	}
	if t == nil {
		t = c.materialize(g, pos)
	}
	if t.State == TaskCompleted {
		return t, fmt.Errorf("task %q already completed: %w", t.ID, ErrConflict)
	}
	c.cancel(t, "cancelled", now)
	return t, nil
}

// materialize makes a Task of a position that never left active, ahead of
// its group's cursor (the scheduler then skips it).
func (c *Core) materialize(g *Group, pos int) *Task {
	t := &Task{Job: g.Job, Group: g, Pos: pos, ID: g.IDAt(pos), Num: c.nextTaskNum()}
	g.Job.Tasks[key(t.ID)] = t
	g.ahead++
	return t
}

func (c *Core) cancel(t *Task, why string, now time.Time) {
	switch t.State {
	case TaskActive:
		j := t.Job
		if i := slices.Index(j.ready, t); i >= 0 {
			j.ready = slices.Delete(j.ready, i, i+1)
		}
	case TaskAssigned, TaskPreparing, TaskRunning:
		c.fx.Kill(t.Node, t.Job.ID, t.ID, t.Attempt)
		c.release(t)
	}
	t.Cur.Result, t.Cur.Category, t.Cur.Message = ResultFailure, CategoryCancelled, why
	if t.Cur.Number != 0 && t.Cur.EndedAt == 0 {
		t.Cur.EndedAt = now.UnixNano()
	}
	c.complete(t, now)
}

// TerminateJob ends a job: every task that has not completed is cancelled
// (running ones are killed) and the job completes. Tasks that never left
// active are closed in bulk, without materializing them.
func (c *Core) TerminateJob(j *Job, why string, now time.Time) {
	if j.State != JobActive {
		return
	}
	j.State = JobTerminating
	for _, t := range c.liveTasks(j) {
		c.cancel(t, why, now)
	}
	for _, g := range j.Groups {
		if g.closed {
			continue
		}
		n := g.count - g.cursor - g.ahead
		g.closed = true
		j.Counts[TaskActive] -= n
		j.Counts[TaskCompleted] += n
		j.Failed += n
		g.done += n
		c.fx.SaveGroup(g)
	}
	j.ready = nil
	j.State = JobCompleted
	j.CompletedAt = now.UnixNano()
	j.markPoolsDirty()
	c.fx.SaveJob(j)
	c.releaseJob(j)
}

// liveTasks lists a job's materialized tasks that have not completed, in a
// stable order.
func (c *Core) liveTasks(j *Job) []*Task {
	var out []*Task
	for _, t := range j.Tasks {
		if t.State != TaskCompleted {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *Task) int {
		if a.Group.Seq != b.Group.Seq {
			return a.Group.Seq - b.Group.Seq
		}
		return a.Pos - b.Pos
	})
	return out
}

// DeleteJob terminates a job if needed and forgets it with its records and
// logs.
func (c *Core) DeleteJob(j *Job, now time.Time) {
	c.TerminateJob(j, "job deleted", now)
	delete(c.jobs, key(j.ID))
	if i := slices.Index(c.jobList, j); i >= 0 {
		c.jobList = slices.Delete(c.jobList, i, i+1)
	}
	for _, p := range j.Pools {
		if i := slices.Index(p.jobs, j); i >= 0 {
			p.jobs = slices.Delete(p.jobs, i, i+1)
		}
	}
	j.deleted = true
	c.fx.DeleteJob(j)
}

// RetryTask reactivates a completed task with its retry and requeue counts
// reset, as Azure Batch's reactivate does; its earlier attempts stay in its
// history.
func (c *Core) RetryTask(t *Task, now time.Time) error {
	j := t.Job
	if j.State != JobActive {
		return fmt.Errorf("job %q is %s: %w", j.ID, j.State, ErrConflict)
	}
	if t.State != TaskCompleted {
		return fmt.Errorf("task %q is %s, not completed: %w", t.ID, t.State, ErrConflict)
	}
	if t.Cur.Result == ResultSuccess {
		j.Succeeded--
	} else {
		j.Failed--
	}
	t.Group.done--
	t.Retries, t.Requeues = 0, 0
	c.toReady(t)
	return nil
}

// RetryFailed reactivates every failed task of a job and reports how many.
func (c *Core) RetryFailed(j *Job, now time.Time) (int, error) {
	if j.State != JobActive {
		return 0, fmt.Errorf("job %q is %s: %w", j.ID, j.State, ErrConflict)
	}
	var failed []*Task
	for _, t := range j.Tasks {
		if t.State == TaskCompleted && t.Cur.Result == ResultFailure {
			failed = append(failed, t)
		}
	}
	slices.SortFunc(failed, func(a, b *Task) int {
		if a.Group.Seq != b.Group.Seq {
			return a.Group.Seq - b.Group.Seq
		}
		return a.Pos - b.Pos
	})
	for _, t := range failed {
		if err := c.RetryTask(t, now); err != nil {
			return 0, err
		}
	}
	return len(failed), nil
}

// SetJobPriority changes a job's priority; queued tasks follow at once and
// prefilled ones may be revoked for a job that now ranks higher.
func (c *Core) SetJobPriority(j *Job, prio int) error {
	if prio < -MaxPriority || prio > MaxPriority {
		return fieldErr("priority", "must be between -1000 and 1000")
	}
	j.Priority = prio
	j.markPoolsDirty()
	c.fx.SaveJob(j)
	return nil
}

// SetPoolTarget records the node counts a pool should have and how its
// scale-downs treat running tasks. A pool whose formula is enabled refuses:
// the formula owns its size.
func (c *Core) SetPoolTarget(p *Pool, nodes, spot int, d Deallocation) error {
	if a := p.Scaling.Autoscale; a != nil && a.Enabled {
		return fmt.Errorf("pool %q autoscales (disable autoscale to resize it by hand): %w", p.ID, ErrConflict)
	}
	switch {
	case nodes < 0 || nodes > MaxPoolNodes:
		return fieldErr("target_nodes", "must be between 0 and %d", MaxPoolNodes)
	case spot < 0 || spot > MaxPoolNodes:
		return fieldErr("target_spot_nodes", "must be between 0 and %d", MaxPoolNodes)
	}
	c.SetTargets(p, nodes, spot)
	if d != "" {
		p.Scaling.Deallocation = d
	}
	return nil
}

// SetTargets records the sizes the autoscaler decided.
func (c *Core) SetTargets(p *Pool, nodes, spot int) {
	if p.TargetNodes == nodes && p.Scaling.TargetSpotNodes == spot {
		return
	}
	p.TargetNodes, p.Scaling.TargetSpotNodes = nodes, spot
	c.fx.SavePool(p)
}

// RotateJoinToken replaces a pool's join token; joined nodes keep their own
// credentials.
func (c *Core) RotateJoinToken(p *Pool, token string) {
	p.JoinToken = token
	c.fx.SavePool(p)
}

// DeletePool removes a pool with no jobs left and forgets its nodes; it
// returns the removed nodes so the shell can close their streams.
func (c *Core) DeletePool(p *Pool) ([]*Node, error) {
	for _, j := range c.jobList {
		if slices.Contains(j.Pools, p) {
			return nil, fmt.Errorf("pool %q still has job %q (delete it first): %w", p.ID, j.ID, ErrConflict)
		}
	}
	nodes := p.SortedNodes()
	for _, n := range nodes {
		delete(c.nodes, key(n.ID))
		c.fx.DeleteNode(n)
	}
	delete(c.pools, key(p.ID))
	c.fx.DeletePool(p)
	return nodes, nil
}

// RemoveNode forgets a node that has no tasks (a drained node whose agent
// is gone, for instance).
func (c *Core) RemoveNode(n *Node) error {
	if len(n.tasks) > 0 {
		return fmt.Errorf("node %q still has %d task(s): %w", n.ID, len(n.tasks), ErrConflict)
	}
	delete(c.nodes, key(n.ID))
	n.Pool.removeNode(n)
	c.fx.DeleteNode(n)
	return nil
}

// Purge deletes completed jobs, oldest first, that are past maxAge (when
// maxAge > 0) or that keep the completed jobs' tasks above maxTasks (when
// maxTasks > 0), as Slurm's MinJobAge and MaxJobCount do: memory for
// finished work stays bounded however long the server runs. Active jobs are
// never purged. It returns the IDs it deleted.
func (c *Core) Purge(now time.Time, maxAge time.Duration, maxTasks int) []string {
	if maxAge <= 0 && maxTasks <= 0 {
		return nil
	}
	var done []*Job
	total := 0
	for _, j := range c.jobList {
		if j.State == JobCompleted {
			done = append(done, j)
			total += j.total()
		}
	}
	slices.SortStableFunc(done, func(a, b *Job) int { return cmp.Compare(a.CompletedAt, b.CompletedAt) })
	var purged []string
	for _, j := range done {
		old := maxAge > 0 && now.Sub(time.Unix(0, j.CompletedAt)) > maxAge
		over := maxTasks > 0 && total > maxTasks
		if !old && !over {
			break
		}
		total -= j.total()
		c.DeleteJob(j, now)
		purged = append(purged, j.ID)
	}
	return purged
}
