package agent

import (
	"slices"
	"time"

	"github.com/lotehq/lote/internal/spawner"
)

// Chaining keeps a node's slots full when its tasks are short. Without it,
// a slot freed by an exit stays empty while the spawner tells the agent,
// the agent picks the next task and the spawner forks it: on a busy 2-core
// node that round trip was a third of a millisecond-long task's slot time.
// So once slots are full, the agent hands the spawner the next queued tasks
// in advance, each to start the moment a given task ends
// (spawner.SpawnRequest.After), up to chainDepth deep per slot; the exit of
// the task it waited on says whether it started (Exit.Next).
//
// A chained task has left the queue: it can no longer be revoked for
// another node. So only tasks whose recent run time is below chainBelow are
// chained; for longer ones the round trip is noise and revocability is
// worth more. Tasks that run for milliseconds are chained chainDepthShort
// deep: two behind each slot left a tenth of the slot time idle on a busy
// 2-core node, where the agent's next request came a millisecond or two
// after the chain had run dry (slot utilisation 91 % two deep, 93-94 %
// three, 94-95 % four; end-to-start gap p90 450-630 µs against 70-90 µs
// four deep).
const (
	chainDepth      = 2
	chainDepthShort = 4
	shortRun        = 10 * time.Millisecond
	chainBelow      = time.Second
)

// chainDepthLocked is how many tasks deep each slot is chained now.
func (a *Agent) chainDepthLocked() int {
	if a.runAvg < shortRun {
		return chainDepthShort
	}
	return chainDepth
}

// offerLocked makes t a task the next queued one may be chained on, when it
// can be: it has no follower, is not too deep, and has no output files. A
// task with output files holds its slots while they upload, after its
// process ended. (One whose large logs turn out to need uploading lets its
// follower start meanwhile.)
func (a *Agent) offerLocked(t *task) {
	if t.follower == nil && !t.ended && t.depth < a.chainDepthLocked() && t.tpl != nil && len(t.tpl.Outputs) == 0 && !slices.Contains(a.bare, t) {
		a.bare = append(a.bare, t)
	}
}

func (a *Agent) unofferLocked(t *task) {
	if i := slices.Index(a.bare, t); i >= 0 {
		a.bare = slices.Delete(a.bare, i, i+1)
	}
}

// noteRunLocked updates the moving average of run times (weight 1/8) with
// a task that ran.
func (a *Agent) noteRunLocked(ex spawner.Exit) {
	if ex.StartedAt.IsZero() || ex.EndedAt.Before(ex.StartedAt) {
		return
	}
	run := ex.EndedAt.Sub(ex.StartedAt)
	if a.runAvg == 0 {
		a.runAvg = run
		return
	}
	a.runAvg += (run - a.runAvg) / 8
}

// chainLocked chains queued tasks that need no staging on the tasks
// offered, while the node's tasks are short. It is called when the slots
// are full.
func (a *Agent) chainLocked() {
	if a.runAvg == 0 || a.runAvg >= chainBelow || !a.spawner().Chains() {
		return
	}
	for len(a.queue) > 0 {
		t := a.queue[0]
		if needsStaging(t) || !a.appsReady(t) || !a.prepReady(t) {
			return
		}
		i := slices.IndexFunc(a.bare, func(p *task) bool { return p.slots == t.slots })
		if i < 0 {
			return
		}
		p := a.bare[i]
		a.bare = slices.Delete(a.bare, i, i+1)
		a.queue[0] = nil
		a.queue = a.queue[1:]
		t.running, t.after, t.depth, p.follower = true, p.id, p.depth+1, t
		if err := a.spawn(t); err != nil {
			p.follower = nil
			a.offerLocked(p)
			if a.spawnFailedLocked(t, err) {
				return
			}
			continue
		}
		a.offerLocked(t)
	}
}

// chainEndedLocked settles the chain around a task that ended. Its follower
// took its slots when the exit names it in Next, and moved up its chain;
// when not, the spawner dropped it and all chained after it, and they are
// queued again.
//
// Exits can arrive out of chain order: the spawner reports an exit once the
// task's output is copied, which may take longer than the whole run of the
// task that started in its place. So a chained task may end before the
// agent hears that the one it waited on did. If it ran (it has a pid), that
// one has ended and the slots are now its own; if it never started (killed
// while waiting, or its start failed), it held no slots.
func (a *Agent) chainEndedLocked(t *task, ex spawner.Exit) {
	a.unofferLocked(t)
	if p := a.tasks[t.after]; t.after != "" && p != nil && p.follower == t {
		p.follower = nil
		if ex.PID != 0 {
			t.held, p.held, p.ended = p.held, 0, true
		} else {
			a.offerLocked(p)
		}
	}
	t.ended, t.after = true, ""
	f := t.follower
	if f == nil {
		return
	}
	t.follower = nil
	if ex.Next != f.id {
		a.requeueLocked(f)
		return
	}
	f.after, f.held, t.held = "", t.held, 0
	tail, depth := f, 0
	for x := f; x != nil; x = x.follower {
		x.depth, tail = depth, x
		depth++
	}
	a.spawnedLocked(f, ex.EndedAt)
	a.offerLocked(tail)
}

// requeueLocked returns a task that did not start, and the tasks chained
// after it, to the front of the queue in their order, or forgets them when
// the agent is stopping.
func (a *Agent) requeueLocked(t *task) {
	var back []*task
	for t != nil {
		next := t.follower
		a.unofferLocked(t)
		t.after, t.follower, t.depth, t.running = "", nil, 0, false
		if a.stopping {
			delete(a.tasks, t.id)
		} else {
			back = append(back, t)
		}
		t = next
	}
	a.queue = slices.Insert(a.queue, 0, back...)
}
