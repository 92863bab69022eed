package core

// Per-user quotas (Config.MaxQueuedTasksPerUser, MaxRunningTasksPerUser), so
// one user cannot take a whole shared cluster.

import (
	"errors"
	"fmt"
)

// ErrQuota is wrapped by every QuotaError.
var ErrQuota = errors.New("quota exceeded")

// QuotaError is a submission refused because it would take its owner past
// a quota; nothing of it was created.
type QuotaError struct {
	Quota string // the server flag that sets it
	Limit int
	Have  int // tasks the owner has now
	Asked int // tasks the submission adds
}

func (e *QuotaError) Error() string {
	return fmt.Sprintf("quota exceeded: %s is %d; you have %d queued tasks and asked for %d more",
		e.Quota, e.Limit, e.Have, e.Asked)
}

func (e *QuotaError) Unwrap() error { return ErrQuota }

// checkQueuedQuota refuses adding n waiting tasks for owner past
// MaxQueuedTasksPerUser.
func (c *Core) checkQueuedQuota(owner string, n int) error {
	limit := c.cfg.MaxQueuedTasksPerUser
	if limit <= 0 {
		return nil
	}
	have := 0
	for _, j := range c.jobList {
		if j.Owner == owner && j.State == JobActive {
			have += j.Counts[TaskActive]
		}
	}
	if have+n > limit {
		return &QuotaError{Quota: "max-queued-tasks-per-user", Limit: limit, Have: have, Asked: n}
	}
	return nil
}

// liveByOwner counts tasks holding slots by job owner, for the running
// quota of one scheduling pass; nil when there is no such quota, so the
// pass costs nothing more then.
func (c *Core) liveByOwner() map[string]int {
	if c.cfg.MaxRunningTasksPerUser <= 0 {
		return nil
	}
	live := map[string]int{}
	for _, j := range c.jobList {
		if n := j.live(); n > 0 {
			live[j.Owner] += n
		}
	}
	return live
}

// markQuotaHeld makes pools whose jobs wait on the running quota take part
// in a scheduling pass whenever any pool does: the owner's task that ends
// may have been in another pool.
func (c *Core) markQuotaHeld() {
	if c.cfg.MaxRunningTasksPerUser <= 0 {
		return
	}
	changed := false
	for _, p := range c.pools {
		changed = changed || p.dirty
	}
	if !changed {
		return
	}
	for _, p := range c.pools {
		for _, j := range p.jobs {
			if j.PendingReason == "quota" {
				p.dirty = true
				break
			}
		}
	}
}
