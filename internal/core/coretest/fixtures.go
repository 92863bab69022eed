package coretest

import (
	"fmt"
	"strconv"
	"time"

	"github.com/lotehq/lote/internal/arrayspec"
	"github.com/lotehq/lote/internal/core"
)

// T0 is the time every fixture happens at unless told otherwise.
var T0 = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

// NewCore returns an empty core wired to a fresh recorder.
func NewCore(cfg core.Config) (*core.Core, *Effects) {
	fx := NewEffects()
	return core.New(cfg, fx), fx
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(fmt.Sprintf("coretest: %v", err))
	}
	return v
}

// PoolOpt changes a pool fixture.
type PoolOpt func(*core.PoolSpec)

// Pack makes the pool fill nodes one by one instead of spreading.
func Pack() PoolOpt { return func(s *core.PoolSpec) { s.Fill = core.FillPack } }

// Prefill sets how many tasks a node may hold beyond its slots; -1 is the
// core's default. Pool fixtures have no prefill unless told.
func Prefill(n int) PoolOpt { return func(s *core.PoolSpec) { s.Prefill = n } }

// Pool creates a pool with the given slots per node and no prefill.
func Pool(c *core.Core, id string, slots int, opts ...PoolOpt) *core.Pool {
	s := core.PoolSpec{ID: id, Provider: "static", SlotsPerNode: slots}
	for _, o := range opts {
		o(&s)
	}
	return must(c.CreatePool(s, T0))
}

type nodeFixture struct {
	join core.Join
	at   time.Time
}

// NodeOpt changes a node fixture.
type NodeOpt func(*nodeFixture)

// Cores states the node's cores.
func Cores(n int) NodeOpt { return func(f *nodeFixture) { f.join.Cores = n } }

// Mem states the node's memory in bytes.
func Mem(b int64) NodeOpt { return func(f *nodeFixture) { f.join.Memory = b } }

// Labeled gives the node labels, as key, value pairs.
func Labeled(kv ...string) NodeOpt { return func(f *nodeFixture) { f.join.Labels = Labels(kv...) } }

// JoinedAt makes the node join (and so last be seen) at t instead of T0.
func JoinedAt(t time.Time) NodeOpt { return func(f *nodeFixture) { f.at = t } }

// Node joins a new node called id with the given slots to pool p.
func Node(c *core.Core, p *core.Pool, id string, slots int, opts ...NodeOpt) *core.Node {
	f := nodeFixture{join: core.Join{Name: id, Pool: p, Hostname: id, Slots: slots}, at: T0}
	for _, o := range opts {
		o(&f)
	}
	n, _, err := c.NodeJoin(f.join, f.at)
	if err != nil {
		panic(fmt.Sprintf("coretest: node %s: %v", id, err))
	}
	if n.ID != id {
		panic(fmt.Sprintf("coretest: node %s joined as %s", id, n.ID))
	}
	return n
}

// Nodes joins count nodes named prefix0, prefix1, … with the given slots.
func Nodes(c *core.Core, p *core.Pool, prefix string, count, slots int, opts ...NodeOpt) []*core.Node {
	out := make([]*core.Node, count)
	for i := range out {
		out[i] = Node(c, p, prefix+strconv.Itoa(i), slots, opts...)
	}
	return out
}

// JobOpt changes a job fixture.
type JobOpt func(*core.JobSpec)

// Priority sets the job's priority.
func Priority(n int) JobOpt { return func(s *core.JobSpec) { s.Priority = n } }

// Owner sets the job's owner (default "test").
func Owner(name string) JobOpt { return func(s *core.JobSpec) { s.Owner = name } }

// TerminateWhenDone completes the job once all its tasks have completed.
func TerminateWhenDone() JobOpt { return func(s *core.JobSpec) { s.TerminateWhenDone = true } }

// JobSpec is the spec Job would create.
func JobSpec(p *core.Pool, id string, opts ...JobOpt) core.JobSpec {
	s := core.JobSpec{ID: id, PoolID: p.ID, Owner: "test"}
	for _, o := range opts {
		o(&s)
	}
	return s
}

// Job creates an empty job in pool p.
func Job(c *core.Core, p *core.Pool, id string, opts ...JobOpt) *core.Job {
	return must(c.CreateJob(JobSpec(p, id, opts...), T0))
}

type taskFixture struct {
	tmpl   core.Template
	prefix string
}

// TaskOpt changes the template of a task fixture.
type TaskOpt func(*taskFixture)

// NeedSlots makes each task take n slots.
func NeedSlots(n int) TaskOpt { return func(f *taskFixture) { f.tmpl.Req.Slots = n } }

// NeedCores makes each task need n cores.
func NeedCores(n int) TaskOpt { return func(f *taskFixture) { f.tmpl.Req.Cores = n } }

// NeedMem makes each task need b bytes of memory.
func NeedMem(b int64) TaskOpt { return func(f *taskFixture) { f.tmpl.Req.Memory = b } }

// NeedLabels makes each task run only on nodes with these labels.
func NeedLabels(kv ...string) TaskOpt {
	return func(f *taskFixture) { f.tmpl.Req.Labels = Labels(kv...) }
}

// Retries sets each task's retry budget (-1: unlimited).
func Retries(n int) TaskOpt { return func(f *taskFixture) { f.tmpl.MaxRetries = n } }

// WallClock sets each task's max wall clock.
func WallClock(d time.Duration) TaskOpt { return func(f *taskFixture) { f.tmpl.MaxWallClock = d } }

// Prefix sets an array's task ID prefix.
func Prefix(s string) TaskOpt { return func(f *taskFixture) { f.prefix = s } }

func taskFixtureOf(opts []TaskOpt) taskFixture {
	f := taskFixture{tmpl: core.Template{Command: []string{"true"}}}
	for _, o := range opts {
		o(&f)
	}
	return f
}

// Template is the template the task options describe.
func Template(opts ...TaskOpt) *core.Template {
	f := taskFixtureOf(opts)
	return &f.tmpl
}

// ArrayAdd is a task array over spec ("1-100%3"), not yet added to a job.
func ArrayAdd(spec string, opts ...TaskOpt) core.TaskAdd {
	f := taskFixtureOf(opts)
	return core.TaskAdd{Kind: core.GroupArray, Template: &f.tmpl, Spec: must(arrayspec.Parse(spec)), IDPrefix: f.prefix}
}

// ItemsAdd is a group of explicitly named tasks, not yet added to a job.
func ItemsAdd(ids []string, opts ...TaskOpt) core.TaskAdd {
	f := taskFixtureOf(opts)
	items := make([]core.Item, len(ids))
	for i, id := range ids {
		items[i] = core.Item{ID: id, Template: f.tmpl}
	}
	return core.TaskAdd{Kind: core.GroupExplicit, Items: items}
}

// Array adds a task array over spec to job j.
func Array(c *core.Core, j *core.Job, spec string, opts ...TaskOpt) *core.Group {
	return must(c.AddTasks(j, ArrayAdd(spec, opts...), T0))
}

// Items adds explicitly named tasks to job j.
func Items(c *core.Core, j *core.Job, ids []string, opts ...TaskOpt) *core.Group {
	return must(c.AddTasks(j, ItemsAdd(ids, opts...), T0))
}

// Labels builds a label map from key, value pairs.
func Labels(kv ...string) map[string]string {
	if len(kv)%2 != 0 {
		panic("coretest: Labels needs key, value pairs")
	}
	m := make(map[string]string, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// Exit is the report that t's current attempt exited with code.
func Exit(t *core.Task, code int) core.Finish {
	return core.Finish{JobID: t.Job.ID, TaskID: t.ID, Attempt: t.Attempt, ExitCode: code}
}

// Known is what an agent reports about t when it reconnects: the current
// attempt in the given phase.
func Known(t *core.Task, phase core.AgentPhase) core.AgentTask {
	return core.AgentTask{JobID: t.Job.ID, TaskID: t.ID, Attempt: t.Attempt, Phase: phase}
}
