package core

// Jobs and the groups of tasks submitted to them.

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lotehq/lote/internal/arrayspec"
)

// JobSpec describes a job to create.
type JobSpec struct {
	ID     string
	PoolID string
	// BurstPoolIDs are pools, in order, the job's tasks may go to once the
	// pools before them have no free slot.
	BurstPoolIDs      []string
	Priority          int
	MaxRetries        int
	MaxWallClock      time.Duration
	TerminateWhenDone bool
	Owner             string
	Tags              map[string]string
	Env               map[string]string
	PrepTask          *StartTask
	ReleaseTask       *StartTask
}

// CreateJob adds a job. An empty ID gets the next free "job-N".
func (c *Core) CreateJob(s JobSpec, now time.Time) (*Job, error) {
	j, err := c.newJob(s, now)
	if err != nil {
		return nil, err
	}
	c.registerJob(j)
	return j, nil
}

// newJob validates a job spec and builds the job without registering it.
func (c *Core) newJob(s JobSpec, now time.Time) (*Job, error) {
	if s.ID != "" && !ValidID(s.ID) {
		return nil, fieldErr("id", "must be 1-64 characters of letters, digits, '_' and '-'")
	}
	p := c.pools[key(s.PoolID)]
	if p == nil {
		return nil, fieldErr("pool_id", "no pool %q", s.PoolID)
	}
	pools := []*Pool{p}
	if len(s.BurstPoolIDs) >= MaxPoolsPerJob {
		return nil, fieldErr("burst_pool_ids", "at most %d pools per job", MaxPoolsPerJob)
	}
	for i, id := range s.BurstPoolIDs {
		bp := c.pools[key(id)]
		if bp == nil {
			return nil, fieldErr(fmt.Sprintf("burst_pool_ids[%d]", i), "no pool %q", id)
		}
		if slices.Contains(pools, bp) {
			return nil, fieldErr(fmt.Sprintf("burst_pool_ids[%d]", i), "pool %q is listed twice", id)
		}
		pools = append(pools, bp)
	}
	if s.Priority < -MaxPriority || s.Priority > MaxPriority {
		return nil, fieldErr("priority", "must be between -1000 and 1000")
	}
	if s.MaxRetries < -1 {
		return nil, fieldErr("max_retries", "must be -1 (unlimited) or more")
	}
	if s.ID == "" {
		for n := c.jobSeq + 1; ; n++ {
			id := "job-" + strconv.FormatInt(n, 10)
			if c.jobs[key(id)] == nil {
				s.ID = id
				break
			}
		}
	}
	if c.jobs[key(s.ID)] != nil {
		return nil, fmt.Errorf("job %q: %w", s.ID, ErrConflict)
	}
	return &Job{
		ID: s.ID, Pool: p, Pools: pools, Priority: s.Priority, MaxRetries: s.MaxRetries,
		MaxWallClock: s.MaxWallClock, TerminateWhenDone: s.TerminateWhenDone,
		Owner: s.Owner, Tags: s.Tags, Env: s.Env, CreatedAt: now.UnixNano(),
		PrepTask: s.PrepTask, ReleaseTask: s.ReleaseTask,
		Seq: c.jobSeq + 1, Tasks: map[string]*Task{},
	}, nil
}
func (c *Core) registerJob(j *Job) {
	c.jobSeq = j.Seq
	c.addJob(j)
	c.fx.SaveJob(j)
}
func (c *Core) addJob(j *Job) {
	c.jobs[key(j.ID)] = j
	c.jobList = append(c.jobList, j)
}

// Job finds a job by ID.
func (c *Core) Job(id string) *Job { return c.jobs[key(id)] }

// Jobs lists jobs in creation order.
func (c *Core) Jobs() []*Job { return c.jobList }

// TaskAdd is a batch of tasks for one job: explicit items, or one template
// over an array spec or over lines.
type TaskAdd struct {
	Kind     GroupKind
	Items    []Item
	Template *Template
	Spec     arrayspec.Spec
	Lines    []string
	IDPrefix string
}

// AddTasks adds a group of tasks to a job, all or nothing.
func (c *Core) AddTasks(j *Job, a TaskAdd, now time.Time) (*Group, error) {
	g, err := c.prepareGroup(j, a, now)
	if err != nil {
		return nil, err
	}
	c.addGroup(g)
	return g, nil
}

// CreateJobWithTasks creates a job and its first group atomically: when the
// tasks are refused, the job is not created either.
func (c *Core) CreateJobWithTasks(s JobSpec, a TaskAdd, now time.Time) (*Job, *Group, error) {
	j, err := c.newJob(s, now)
	if err != nil {
		return nil, nil, err
	}
	g, err := c.prepareGroup(j, a, now)
	if err != nil {
		return nil, nil, err
	}
	c.registerJob(j)
	c.addGroup(g)
	return j, g, nil
}

// prepareGroup validates a task batch against a job without changing either.
func (c *Core) prepareGroup(j *Job, a TaskAdd, now time.Time) (*Group, error) {
	if j.State != JobActive {
		return nil, fmt.Errorf("job %q is %s: %w", j.ID, j.State, ErrConflict)
	}
	g := &Group{
		Job: j, Seq: len(j.Groups), Kind: a.Kind, Template: a.Template, Spec: a.Spec,
		Lines: a.Lines, Items: a.Items, IDPrefix: a.IDPrefix, SubmittedAt: now.UnixNano(),
	}
	switch a.Kind {
	case GroupExplicit:
		g.count = len(a.Items)
		seen := make(map[string]struct{}, len(a.Items))
		for i, it := range a.Items {
			k := key(it.ID)
			if _, dup := seen[k]; dup {
				return nil, fieldErr(fmt.Sprintf("tasks[%d].id", i), "duplicate task ID %q", it.ID)
			}
			seen[k] = struct{}{}
			if c.taskIDTaken(j, it.ID) {
				return nil, fmt.Errorf("task %q already exists in job %q: %w", it.ID, j.ID, ErrConflict)
			}
		}
	case GroupArray:
		g.count = a.Spec.Count()
		for _, o := range j.Groups {
			if o.Kind == GroupArray && strings.EqualFold(o.IDPrefix, g.IDPrefix) && o.Spec.Overlaps(g.Spec) {
				return nil, fmt.Errorf("array %s overlaps array %s of job %q (use an ID prefix): %w",
					g.Spec.String(), o.Spec.String(), j.ID, ErrConflict)
			}
		}
		if err := c.checkPrefixClash(j, g); err != nil {
			return nil, err
		}
	case GroupLines:
		g.count = len(a.Lines)
		if err := c.checkPrefixClash(j, g); err != nil {
			return nil, err
		}
	}
	if g.count == 0 {
		return nil, fieldErr("tasks", "no tasks to add")
	}
	if err := c.checkQueuedQuota(j.Owner, g.count); err != nil {
		return nil, err
	}
	return g, nil
}
func (c *Core) addGroup(g *Group) {
	j := g.Job
	j.Groups = append(j.Groups, g)
	j.Counts[TaskActive] += g.count
	c.fx.SaveGroup(g)
	c.wake(j)
}

// checkPrefixClash rejects an array or line group whose generated IDs could
// collide with tasks already in the job.
func (c *Core) checkPrefixClash(j *Job, g *Group) error {
	for _, o := range j.Groups {
		if o == g {
			continue
		}
		switch o.Kind {
		case GroupExplicit:
			for _, it := range o.Items {
				if pos, ok := g.PosOf(it.ID); ok && pos < g.count {
					return fmt.Errorf("task %q already exists in job %q: %w", it.ID, j.ID, ErrConflict)
				}
			}
		case GroupLines, GroupArray:
			if (o.Kind == GroupLines || g.Kind == GroupLines) && strings.EqualFold(o.IDPrefix, g.IDPrefix) {
				return fmt.Errorf("tasks with ID prefix %q already exist in job %q (use an ID prefix): %w",
					g.IDPrefix, j.ID, ErrConflict)
			}
		}
	}
	return nil
}
func (c *Core) taskIDTaken(j *Job, id string) bool {
	if _, ok := j.Tasks[key(id)]; ok {
		return true
	}
	for _, g := range j.Groups {
		if _, ok := g.PosOf(id); ok {
			return true
		}
	}
	return false
}

// FindTask finds a task by ID: a materialized Task, or else the group and
// position of a task that never left active.
func (c *Core) FindTask(j *Job, id string) (*Task, *Group, int, bool) {
	if t, ok := j.Tasks[key(id)]; ok {
		return t, t.Group, t.Pos, true
	}
	for _, g := range j.Groups {
		if pos, ok := g.PosOf(id); ok && pos >= g.cursor {
			return nil, g, pos, true
		}
	}
	return nil, nil, 0, false
}

// wake puts a job with waiting tasks into its pools' scheduling lists.
func (c *Core) wake(j *Job) {
	for i, p := range j.Pools {
		p.dirty = true
		if j.inPool&(1<<i) == 0 {
			j.inPool |= 1 << i
			p.jobs = append(p.jobs, j)
		}
	}
}

func (j *Job) markPoolsDirty() {
	for _, p := range j.Pools {
		p.dirty = true
	}
}
