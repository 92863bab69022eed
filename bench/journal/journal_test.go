package journal_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
	"github.com/lotehq/lote/internal/store"
	"github.com/lotehq/lote/internal/store/sqlite"
)

// recorder is a core.Effects that seals batches as the server's engine does:
// save calls mark objects dirty, seal turns each into its record once.
type recorder struct {
	pools   map[*core.Pool]struct{}
	nodes   map[*core.Node]struct{}
	jobs    map[*core.Job]struct{}
	groups  map[*core.Group]struct{}
	cursors map[*core.Group]struct{}
	tasks   map[*core.Task]struct{}
	logs    []core.LogRecord
}

func newRecorder() *recorder {
	r := &recorder{}
	r.reset()
	return r
}

func (r *recorder) reset() {
	r.pools = map[*core.Pool]struct{}{}
	r.nodes = map[*core.Node]struct{}{}
	r.jobs = map[*core.Job]struct{}{}
	r.groups = map[*core.Group]struct{}{}
	r.cursors = map[*core.Group]struct{}{}
	r.tasks = map[*core.Task]struct{}{}
	r.logs = nil
}

func (r *recorder) SavePool(p *core.Pool)                { r.pools[p] = struct{}{} }
func (r *recorder) SaveNode(n *core.Node)                { r.nodes[n] = struct{}{} }
func (r *recorder) SaveJob(j *core.Job)                  { r.jobs[j] = struct{}{} }
func (r *recorder) SaveGroup(g *core.Group)              { r.groups[g] = struct{}{} }
func (r *recorder) SaveCursor(g *core.Group)             { r.cursors[g] = struct{}{} }
func (r *recorder) SaveTask(t *core.Task)                { r.tasks[t] = struct{}{} }
func (r *recorder) SaveLog(l core.LogRecord)             { r.logs = append(r.logs, l) }
func (r *recorder) Dispatch(*core.Node, *core.Task)      {}
func (r *recorder) Revoke(*core.Node, *core.Task)        {}
func (r *recorder) Kill(*core.Node, string, string, int) {}
func (r *recorder) DeleteJob(*core.Job)                  {}
func (r *recorder) DeletePool(*core.Pool)                {}
func (r *recorder) DeleteNode(*core.Node)                {}
func (r *recorder) ReleaseJob(*core.Node, *core.Job)     {}

// seal returns the open batch as the store receives it and opens a new one.
func (r *recorder) seal() *store.Batch {
	b := &store.Batch{Logs: r.logs}
	for p := range r.pools {
		b.Pools = append(b.Pools, p.Record())
	}
	for n := range r.nodes {
		b.Nodes = append(b.Nodes, n.Record())
	}
	for j := range r.jobs {
		b.Jobs = append(b.Jobs, j.Record())
	}
	for g := range r.groups {
		b.Groups = append(b.Groups, g.Record())
		delete(r.cursors, g)
	}
	for g := range r.cursors {
		b.Cursors = append(b.Cursors, store.Cursor{JobID: g.Job.ID, Seq: g.Seq, Cursor: g.Cursor()})
	}
	b.Tasks = make([]core.TaskRecord, 0, len(r.tasks))
	for t := range r.tasks {
		b.Tasks = append(b.Tasks, t.Record())
	}
	r.reset()
	return b
}

// cluster is the stubbed bench's shape in process: a pool of 1,000 nodes of
// 4 slots (default prefill) and a job with a 1,000,000-task array, wired to
// a recorder and a fresh store whose first commit holds the setup.
type cluster struct {
	c     *core.Core
	rec   *recorder
	st    *sqlite.Store
	nodes []*core.Node
	job   *core.Job
	next  int // round-robin position over nodes
	more  int // arrays added to keep the job busy
}

func newCluster(tb testing.TB, path string) *cluster {
	rec := newRecorder()
	c := core.New(core.Config{}, rec)
	p := coretest.Pool(c, "p", 4, coretest.Prefill(-1))
	cl := &cluster{c: c, rec: rec, nodes: coretest.Nodes(c, p, "n", 1000, 4), job: coretest.Job(c, p, "j")}
	coretest.Array(c, cl.job, "0-999999")
	c.Schedule(coretest.T0)
	st, err := sqlite.Open(context.Background(), path, sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	cl.st = st
	cl.commit(tb)
	return cl
}

func (cl *cluster) commit(tb testing.TB) int {
	b := cl.rec.seal()
	if err := cl.st.Apply(context.Background(), b); err != nil {
		tb.Fatal(err)
	}
	return len(b.Tasks)
}

// finish completes n tasks, one per node in turn, and runs the scheduling
// pass that replaces them, as one batch of the server's loop does.
func (cl *cluster) finish(n int) {
	if cl.job.Counts[core.TaskActive] < n {
		cl.more++
		coretest.Array(cl.c, cl.job, "0-999999", coretest.Prefix(fmt.Sprint("more", cl.more, "-")))
	}
	for range n {
		node := cl.nodes[cl.next%len(cl.nodes)]
		cl.next++
		t := node.Tasks()[0]
		cl.c.TaskFinished(node, coretest.Exit(t, 0), coretest.T0)
	}
	cl.c.Schedule(coretest.T0)
}

// BenchmarkCommit is the task path's group commit: each op finishes `per
// commit` tasks, schedules their replacements, seals the batch the core
// produced (2 task rows per finished task, plus the job and a cursor) and
// applies it to SQLite with synchronous=full. tasks/s counts finished tasks;
// store-% is the share of the time spent in Store.Apply.
func BenchmarkCommit(b *testing.B) {
	for _, per := range []int{1, 64, 1024, 4000} {
		b.Run(fmt.Sprintf("per commit=%d", per), func(b *testing.B) {
			cl := newCluster(b, filepath.Join(b.TempDir(), "lote.db"))
			defer cl.st.Close()
			var rows int
			var inStore time.Duration
			for b.Loop() {
				cl.finish(per)
				bt := cl.rec.seal()
				t := time.Now()
				if err := cl.st.Apply(context.Background(), bt); err != nil {
					b.Fatal(err)
				}
				inStore += time.Since(t)
				rows += len(bt.Tasks)
			}
			b.ReportMetric(float64(per*b.N)/b.Elapsed().Seconds(), "tasks/s")
			b.ReportMetric(float64(rows)/float64(b.N), "rows/commit")
			b.ReportMetric(100*inStore.Seconds()/b.Elapsed().Seconds(), "store-%")
		})
	}
}

// BenchmarkRestart is the start-up path after a crash, as the server takes
// it: open the database, load every record (each task row is decoded and
// checked) and rebuild the core from them while they are read, with a
// 1,000,000-task array queued and `finished` tasks already run (a row each).
func BenchmarkRestart(b *testing.B) {
	for _, finished := range []int{0, 100_000} {
		b.Run(fmt.Sprintf("finished=%d", finished), func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "lote.db")
			cl := newCluster(b, path)
			for done := 0; done < finished; done += 4000 {
				cl.finish(min(4000, finished-done))
				cl.commit(b)
			}
			// Queue a fresh 1,000,000-task array behind them.
			coretest.Array(cl.c, cl.job, "0-999999", coretest.Prefix("queued-"))
			cl.commit(b)
			cl.st.Close()

			ctx := context.Background()
			var rows int
			for b.Loop() {
				st, err := sqlite.Open(ctx, path, sqlite.Options{})
				if err != nil {
					b.Fatal(err)
				}
				snap, err := st.Load(ctx)
				if err != nil {
					b.Fatal(err)
				}
				rs, err := core.NewRestorer(core.Config{}, newRecorder(), snap, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				rows = 0
				err = st.LoadTasks(ctx, func(recs []core.TaskRecord) error {
					rows += len(recs)
					return rs.AddTasks(recs)
				})
				if err != nil {
					b.Fatal(err)
				}
				rs.Core()
				st.Close()
			}
			b.ReportMetric(float64(rows), "task-rows")
		})
	}
}
