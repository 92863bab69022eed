// Package coretest is the fixture vocabulary for tests that drive the core:
// a recording Effects fake that commits in batches as the server's engine
// does, and short constructors for pools, nodes, jobs and task groups, in the
// manner of Nomad's mock and Armada's testfixtures. Fixtures panic on bad
// input: a fixture that cannot be built is a broken test, not a test failure.
package coretest

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/lotehq/lote/internal/core"
)

// Sent is one Dispatch or Revoke effect with the attempt number the task
// carried when it was sent.
type Sent struct {
	Node    *core.Node
	Task    *core.Task
	Attempt int
}

func (s Sent) String() string {
	return s.Node.ID + "<-" + s.Task.Job.ID + "/" + s.Task.ID + "#" + strconv.Itoa(s.Attempt)
}

// Killed is one Kill effect.
type Killed struct {
	Node          *core.Node
	JobID, TaskID string
	Attempt       int
}

type groupKey struct {
	job string
	seq int
}

type taskKey struct{ job, task string }

// Effects is a recording core.Effects. Save calls only mark an object dirty;
// Commit takes the Record of every dirty object, as the engine does when it
// seals a batch. A change the core made without saving it is therefore
// missing from Snapshot, exactly as it would be missing from the store.
type Effects struct {
	Dispatched []Sent
	Revoked    []Sent
	Killed     []Killed
	Logs       []core.LogRecord
	// Released lists ReleaseJob effects as "node<-job", in order.
	Released []string
	// Calls names every effect in order ("SaveJob j", "Dispatch n<-j/t#1"),
	// for asserting that a refused request had no effect at all.
	Calls []string

	dirtyPools  map[*core.Pool]struct{}
	dirtyNodes  map[*core.Node]struct{}
	dirtyJobs   map[*core.Job]struct{}
	dirtyGroups map[*core.Group]struct{}
	dirtyTasks  map[*core.Task]struct{}

	pools  map[string]core.PoolRecord
	nodes  map[string]core.NodeRecord
	jobs   map[string]core.JobRecord
	groups map[groupKey]core.GroupRecord
	tasks  map[taskKey]core.TaskRecord
}

// NewEffects returns an empty recorder.
func NewEffects() *Effects {
	return &Effects{
		dirtyPools:  map[*core.Pool]struct{}{},
		dirtyNodes:  map[*core.Node]struct{}{},
		dirtyJobs:   map[*core.Job]struct{}{},
		dirtyGroups: map[*core.Group]struct{}{},
		dirtyTasks:  map[*core.Task]struct{}{},
		pools:       map[string]core.PoolRecord{},
		nodes:       map[string]core.NodeRecord{},
		jobs:        map[string]core.JobRecord{},
		groups:      map[groupKey]core.GroupRecord{},
		tasks:       map[taskKey]core.TaskRecord{},
	}
}

func (e *Effects) call(format string, args ...any) {
	e.Calls = append(e.Calls, fmt.Sprintf(format, args...))
}

// SavePool implements core.Effects.
func (e *Effects) SavePool(p *core.Pool) {
	e.call("SavePool %s", p.ID)
	e.dirtyPools[p] = struct{}{}
}

// SaveNode implements core.Effects.
func (e *Effects) SaveNode(n *core.Node) {
	e.call("SaveNode %s", n.ID)
	e.dirtyNodes[n] = struct{}{}
}

// SaveJob implements core.Effects.
func (e *Effects) SaveJob(j *core.Job) {
	e.call("SaveJob %s", j.ID)
	e.dirtyJobs[j] = struct{}{}
}

// SaveGroup implements core.Effects.
func (e *Effects) SaveGroup(g *core.Group) {
	e.call("SaveGroup %s/%d", g.Job.ID, g.Seq)
	e.dirtyGroups[g] = struct{}{}
}

// SaveCursor implements core.Effects.
func (e *Effects) SaveCursor(g *core.Group) {
	e.call("SaveCursor %s/%d", g.Job.ID, g.Seq)
	e.dirtyGroups[g] = struct{}{}
}

// SaveTask implements core.Effects.
func (e *Effects) SaveTask(t *core.Task) {
	e.call("SaveTask %s/%s", t.Job.ID, t.ID)
	e.dirtyTasks[t] = struct{}{}
}

// SaveLog implements core.Effects.
func (e *Effects) SaveLog(l core.LogRecord) {
	e.call("SaveLog %s/%s#%d", l.JobID, l.TaskID, l.Attempt)
	e.Logs = append(e.Logs, l)
}

// Dispatch implements core.Effects.
func (e *Effects) Dispatch(n *core.Node, t *core.Task) {
	s := Sent{Node: n, Task: t, Attempt: t.Attempt}
	e.call("Dispatch %s", s)
	e.Dispatched = append(e.Dispatched, s)
}

// Revoke implements core.Effects.
func (e *Effects) Revoke(n *core.Node, t *core.Task) {
	s := Sent{Node: n, Task: t, Attempt: t.Attempt}
	e.call("Revoke %s", s)
	e.Revoked = append(e.Revoked, s)
}

// Kill implements core.Effects.
func (e *Effects) Kill(n *core.Node, jobID, taskID string, attempt int) {
	e.call("Kill %s<-%s/%s#%d", n.ID, jobID, taskID, attempt)
	e.Killed = append(e.Killed, Killed{Node: n, JobID: jobID, TaskID: taskID, Attempt: attempt})
}

// DeleteJob implements core.Effects: the job's records are forgotten.
func (e *Effects) DeleteJob(j *core.Job) {
	e.call("DeleteJob %s", j.ID)
	delete(e.dirtyJobs, j)
	delete(e.jobs, j.ID)
	for k := range e.groups {
		if k.job == j.ID {
			delete(e.groups, k)
		}
	}
	for g := range e.dirtyGroups {
		if g.Job == j {
			delete(e.dirtyGroups, g)
		}
	}
	for k := range e.tasks {
		if k.job == j.ID {
			delete(e.tasks, k)
		}
	}
	for t := range e.dirtyTasks {
		if t.Job == j {
			delete(e.dirtyTasks, t)
		}
	}
}

// DeletePool implements core.Effects.
func (e *Effects) DeletePool(p *core.Pool) {
	e.call("DeletePool %s", p.ID)
	delete(e.dirtyPools, p)
	delete(e.pools, p.ID)
}

// DeleteNode implements core.Effects.
func (e *Effects) DeleteNode(n *core.Node) {
	e.call("DeleteNode %s", n.ID)
	delete(e.dirtyNodes, n)
	delete(e.nodes, n.ID)
}

// ReleaseJob implements core.Effects.
func (e *Effects) ReleaseJob(n *core.Node, j *core.Job) {
	e.call("ReleaseJob %s<-%s", n.ID, j.ID)
	e.Released = append(e.Released, n.ID+"<-"+j.ID)
}

// TakeDispatched returns the dispatches since the last call and forgets them.
func (e *Effects) TakeDispatched() []Sent {
	out := e.Dispatched
	e.Dispatched = nil
	return out
}

// TakeRevoked returns the revokes since the last call and forgets them.
func (e *Effects) TakeRevoked() []Sent {
	out := e.Revoked
	e.Revoked = nil
	return out
}

// Commit seals the open batch: the Record of every object saved since the
// last Commit becomes its durable form.
func (e *Effects) Commit() {
	for p := range e.dirtyPools {
		e.pools[p.ID] = p.Record()
	}
	for n := range e.dirtyNodes {
		e.nodes[n.ID] = n.Record()
	}
	for j := range e.dirtyJobs {
		e.jobs[j.ID] = j.Record()
	}
	for g := range e.dirtyGroups {
		e.groups[groupKey{g.Job.ID, g.Seq}] = g.Record()
	}
	for t := range e.dirtyTasks {
		e.tasks[taskKey{t.Job.ID, t.ID}] = t.Record()
	}
	clear(e.dirtyPools)
	clear(e.dirtyNodes)
	clear(e.dirtyJobs)
	clear(e.dirtyGroups)
	clear(e.dirtyTasks)
}

// Snapshot commits the open batch and returns everything committed so far,
// in a stable order, as the store would load it for core.Restore.
func (e *Effects) Snapshot() core.Snapshot {
	e.Commit()
	return core.Snapshot{
		Pools: sortedValues(e.pools, func(a, b core.PoolRecord) int { return cmp.Compare(a.ID, b.ID) }),
		Nodes: sortedValues(e.nodes, func(a, b core.NodeRecord) int { return cmp.Compare(a.ID, b.ID) }),
		Jobs:  sortedValues(e.jobs, func(a, b core.JobRecord) int { return cmp.Compare(a.Seq, b.Seq) }),
		Groups: sortedValues(e.groups, func(a, b core.GroupRecord) int {
			return cmp.Or(cmp.Compare(a.JobID, b.JobID), cmp.Compare(a.Seq, b.Seq))
		}),
		Tasks: sortedValues(e.tasks, func(a, b core.TaskRecord) int {
			return cmp.Or(cmp.Compare(a.JobID, b.JobID), cmp.Compare(a.GroupSeq, b.GroupSeq), cmp.Compare(a.Pos, b.Pos))
		}),
	}
}

func sortedValues[K comparable, V any](m map[K]V, less func(a, b V) int) []V {
	return slices.SortedFunc(maps.Values(m), less)
}

// Nop is an Effects that drops everything, for benchmarks. Its methods
// implement core.Effects by doing nothing.
type Nop struct{}

func (Nop) SavePool(*core.Pool)                  {}
func (Nop) SaveNode(*core.Node)                  {}
func (Nop) SaveJob(*core.Job)                    {}
func (Nop) SaveGroup(*core.Group)                {}
func (Nop) SaveCursor(*core.Group)               {}
func (Nop) SaveTask(*core.Task)                  {}
func (Nop) SaveLog(core.LogRecord)               {}
func (Nop) Dispatch(*core.Node, *core.Task)      {}
func (Nop) Revoke(*core.Node, *core.Task)        {}
func (Nop) Kill(*core.Node, string, string, int) {}
func (Nop) DeleteJob(*core.Job)                  {}
func (Nop) DeletePool(*core.Pool)                {}
func (Nop) DeleteNode(*core.Node)                {}
func (Nop) ReleaseJob(*core.Node, *core.Job)     {}
