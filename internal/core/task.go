package core

// What happens to a task when its node reports on it: started, finished, retried, requeued, revoked.

import (
	"slices"
	"strconv"
	"time"
)

// liveTask finds a task a node reports on, or nil when the report is stale:
// another attempt, another node, or already completed.
func (c *Core) liveTask(n *Node, jobID, taskID string, attempt int) *Task {
	j := c.jobs[key(jobID)]
	if j == nil {
		return nil
	}
	t := j.Tasks[key(taskID)]
	if t == nil || t.Node != n || t.Attempt != attempt || t.State == TaskCompleted || t.State == TaskActive {
		return nil
	}
	return t
}

// TaskStarted records that an agent started a task's process.
func (c *Core) TaskStarted(n *Node, jobID, taskID string, attempt int, at time.Time) {
	t := c.liveTask(n, jobID, taskID, attempt)
	if t == nil || t.State == TaskRunning {
		return
	}
	t.revoking = false
	c.markRunning(t, at.UnixNano())
	c.fx.SaveTask(t)
}

// TaskPreparing records that an agent is staging a task's inputs: only
// tasks with something to stage pass through preparing.
func (c *Core) TaskPreparing(n *Node, jobID, taskID string, attempt int, at time.Time) {
	t := c.liveTask(n, jobID, taskID, attempt)
	if t == nil || t.State != TaskAssigned {
		return
	}
	t.revoking = false
	c.setState(t, TaskPreparing)
	t.Cur.PreparingAt = at.UnixNano()
	c.fx.SaveTask(t)
}

func (c *Core) markRunning(t *Task, at int64) {
	c.setState(t, TaskRunning)
	t.Cur.StartedAt = at
	t.Node.running++
}

// Finish is an agent's report that an attempt ended.
type Finish struct {
	JobID, TaskID string
	Attempt       int
	ExitCode      int
	Signal        int
	TimedOut      bool
	Lost          bool // the process was lost with the agent's spawner: infrastructure, not the user
	StartErr      string
	StartedAt     int64
	EndedAt       int64
	UserCPU       int64
	SysCPU        int64
	MaxRSS        int64
	Stdout        []byte
	Stderr        []byte
	// StagingErr says staging inputs or outputs failed: the task fails with
	// category staging (keeping the exit code) and is not retried, as in
	// Azure Batch, where only non-zero exits use retries.
	StagingErr string
	// PrepFailed says the job's preparation task failed on the node (after
	// its retries) before this attempt could start: the node is barred from
	// the job and the task goes back to active for another node, using no
	// retry, as in Azure Batch.
	PrepFailed bool
}

// LogRecord is a finished attempt's captured output, stored packed.
type LogRecord struct {
	JobID, TaskID string
	Attempt       int
	Stdout        []byte
	Stderr        []byte
}

// TaskFinished records an attempt's end and decides what follows: success,
// a retry, or failure. Reports on stale attempts are ignored.
func (c *Core) TaskFinished(n *Node, f Finish, now time.Time) {
	t := c.liveTask(n, f.JobID, f.TaskID, f.Attempt)
	if t == nil {
		return
	}
	if len(f.Stdout) > 0 || len(f.Stderr) > 0 {
		c.fx.SaveLog(LogRecord{JobID: t.Job.ID, TaskID: t.ID, Attempt: t.Attempt, Stdout: f.Stdout, Stderr: f.Stderr})
	}
	a := &t.Cur
	if f.StartedAt != 0 {
		a.StartedAt = f.StartedAt
	}
	a.EndedAt, a.ExitCode, a.Signal = f.EndedAt, f.ExitCode, f.Signal
	a.UserCPU, a.SysCPU, a.MaxRSS = f.UserCPU, f.SysCPU, f.MaxRSS
	n.noteRun(a.StartedAt, a.EndedAt)
	if f.Lost {
		c.requeue(t, "the task's process was lost with the node's spawner", now)
		return
	}
	if n.Preempted {
		c.requeueFree(t, "node "+n.ID+" was preempted", now)
		return
	}
	if f.PrepFailed {
		if t.Job.barred == nil {
			t.Job.barred = map[string]bool{}
		}
		if k := key(n.ID); !t.Job.barred[k] {
			t.Job.barred[k] = true
			c.fx.SaveJob(t.Job)
		}
		a.Result, a.Category = ResultFailure, CategoryStaging
		a.Message = "job preparation task failed on node " + n.ID + ": " + f.StagingErr
		c.release(t)
		c.toReady(t)
		return
	}
	switch {
	case f.StagingErr != "":
		a.Result, a.Category, a.Message = ResultFailure, CategoryStaging, f.StagingErr
		c.release(t)
		c.complete(t, now)
		return
	case f.StartErr != "":
		a.Result, a.Category, a.Message = ResultFailure, CategoryUser, f.StartErr
	case f.TimedOut:
		a.Result, a.Category = ResultFailure, CategoryTimeout
		a.Message = "killed after max wall clock " + time.Duration(t.Template().MaxWallClock).String()
	case f.ExitCode != 0 || f.Signal != 0:
		a.Result, a.Category = ResultFailure, CategoryUser
		if f.Signal != 0 {
			a.Message = "killed by signal " + strconv.Itoa(f.Signal)
		} else {
			a.Message = "exit code " + strconv.Itoa(f.ExitCode)
		}
	default:
		a.Result, a.Category = ResultSuccess, CategoryNone
	}
	c.release(t)
	if a.Result == ResultFailure && c.retriesLeft(t) {
		t.Retries++
		c.toReady(t)
		return
	}
	c.complete(t, now)
}
func (c *Core) retriesLeft(t *Task) bool {
	mr := t.Template().MaxRetries
	return mr < 0 || t.Retries < mr
}

// requeue returns a task lost to infrastructure to the queue without using a
// retry, until the crash limit.
func (c *Core) requeue(t *Task, why string, now time.Time) {
	c.endInfra(t, why, now)
	if t.Requeues < c.cfg.CrashLimit {
		t.Requeues++
		c.toReady(t)
		return
	}
	t.Cur.Message = why + " (crash limit " + strconv.Itoa(c.cfg.CrashLimit) + " reached)"
	c.complete(t, now)
}

// endInfra ends a task's attempt as an infrastructure failure and takes it
// off its node.
func (c *Core) endInfra(t *Task, why string, now time.Time) {
	a := &t.Cur
	a.Result, a.Category, a.Message = ResultFailure, CategoryInfra, why
	if a.EndedAt == 0 {
		a.EndedAt = now.UnixNano()
	}
	c.release(t)
}

// release detaches a task from its node.
func (c *Core) release(t *Task) {
	n := t.Node
	if n == nil {
		return
	}
	last := n.tasks[len(n.tasks)-1]
	n.tasks[t.nodeSlot] = last
	last.nodeSlot = t.nodeSlot
	n.tasks = n.tasks[:len(n.tasks)-1]
	req := &t.Template().Req
	n.usedSlots -= max(req.Slots, 1)
	n.usedCores -= req.Cores
	n.usedMem -= req.Memory
	if t.State == TaskRunning {
		n.running--
	}
	t.Group.live--
	t.revoking = false
	n.Pool.dirty = true
}

// toReady puts a task back in its job's queue for another attempt.
func (c *Core) toReady(t *Task) {
	c.account(t)
	if t.Cur.Number != 0 {
		t.History = append(t.History, t.Cur)
	}
	t.Cur = AttemptRecord{}
	c.setState(t, TaskActive)
	t.Node = nil
	t.Job.ready = append(t.Job.ready, t)
	c.fx.SaveTask(t)
	c.wake(t.Job)
}
func (c *Core) complete(t *Task, now time.Time) {
	c.account(t)
	c.setState(t, TaskCompleted)
	t.Node = nil
	t.Group.done++
	j := t.Job
	if t.Cur.Result == ResultSuccess {
		j.Succeeded++
	} else {
		j.Failed++
	}
	c.fx.SaveTask(t)
	if j.TerminateWhenDone && j.State == JobActive && j.Counts[TaskCompleted] == j.total() {
		j.State = JobCompleted
		j.CompletedAt = now.UnixNano()
		c.fx.SaveJob(j)
		c.releaseJob(j)
	}
}

// releaseJob asks every node that ran an attempt of the job to run its
// release task, in node ID order. Nodes gone since are skipped.
func (c *Core) releaseJob(j *Job) {
	if j.ReleaseTask == nil {
		return
	}
	ran := map[string]bool{}
	for _, t := range j.Tasks {
		for _, a := range append([]AttemptRecord{t.Cur}, t.History...) {
			if a.NodeID != "" && a.StartedAt != 0 {
				ran[key(a.NodeID)] = true
			}
		}
	}
	ids := make([]string, 0, len(ran))
	for id := range ran {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		if n := c.nodes[id]; n != nil {
			c.fx.ReleaseJob(n, j)
		}
	}
}
func (j *Job) total() int {
	n := 0
	for _, v := range j.Counts {
		n += v
	}
	return n
}
func (c *Core) setState(t *Task, s TaskState) {
	t.Job.Counts[t.State]--
	t.Job.Counts[s]++
	t.State = s
}

// RevokeAnswered records an agent's answer to a revoke: a task it had not
// started goes back to the queue with its attempt number unused.
func (c *Core) RevokeAnswered(n *Node, jobID, taskID string, attempt int, revoked bool) {
	t := c.liveTask(n, jobID, taskID, attempt)
	if t == nil || !t.revoking {
		return
	}
	if !revoked || t.State != TaskAssigned {
		t.revoking = false
		return
	}
	c.unassign(t)
}

// unassign takes back an assigned task that never started: it goes to the
// front of its job's queue and its attempt number is not used up.
func (c *Core) unassign(t *Task) {
	c.release(t)
	t.Attempt--
	t.Cur = AttemptRecord{}
	c.setState(t, TaskActive)
	t.Node = nil
	j := t.Job
	j.ready = append([]*Task{t}, j.ready...)
	c.fx.SaveTask(t)
	c.wake(j)
}
