package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/store"
)

func open(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// loadAll reads every record, the tasks' included, as the server does.
func loadAll(t testing.TB, s *Store) core.Snapshot {
	t.Helper()
	ctx := context.Background()
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = s.LoadTasks(ctx, func(b []core.TaskRecord) error {
		snap.Tasks = append(snap.Tasks, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func sampleTask(num int64, id string, hist int) core.TaskRecord {
	t := core.TaskRecord{
		Num: num, JobID: "J", ID: id, GroupSeq: 1, Pos: int(num), State: core.TaskCompleted, Attempt: hist + 1,
		Retries: hist, Requeues: 1,
		Cur: core.AttemptRecord{Number: hist + 1, NodeID: "n-1", AssignedAt: 10, StartedAt: 11, EndedAt: 12,
			Result: core.ResultFailure, Category: core.CategoryUser, ExitCode: 3, Signal: 0, UserCPU: 5, SysCPU: 6,
			MaxRSS: 1 << 20, Message: "exit code 3"},
	}
	for i := 0; i < hist; i++ {
		t.History = append(t.History, core.AttemptRecord{Number: i + 1, NodeID: "n-2", ExitCode: -1, Signal: 9,
			Result: core.ResultFailure, Category: core.CategoryInfra})
	}
	return t
}

// TestRoundTrip writes every kind of record, reopens the database and reads
// back exactly what was written; later batches overwrite and delete.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lote.db")
	s := open(t, path)
	b := &store.Batch{
		Pools:       []core.PoolRecord{{ID: "p", Provider: "static", SlotsPerNode: 4, Prefill: -1, JoinToken: "j"}},
		Nodes:       []core.NodeRecord{{ID: "n-1", PoolID: "p", Slots: 4, Labels: map[string]string{"gpu": "a100"}}},
		Jobs:        []core.JobRecord{{ID: "J", PoolID: "p", Priority: 5, Seq: 1}, {ID: "K", PoolID: "p", Seq: 2}},
		Groups:      []core.GroupRecord{{JobID: "J", Seq: 0, Kind: core.GroupArray, Spec: "1-10", Cursor: 3}},
		Tasks:       []core.TaskRecord{sampleTask(1, "1", 0), sampleTask(2, "2", 2)},
		Logs:        []core.LogRecord{{JobID: "J", TaskID: "1", Attempt: 1, Stdout: []byte("out"), Stderr: []byte("err")}},
		Meta:        map[string]string{"k": "v"},
		Idempotency: []store.Idempotent{{Key: "admin/x", Fingerprint: "f", Status: 201, Body: []byte("{}"), CreatedAt: 100}},
		DataOwners:  []store.DataOwner{{Container: "inputs", Owner: "alice", CreatedAt: 7}},
	}
	if err := s.Apply(ctx, b); err != nil {
		t.Fatal(err)
	}
	// Cursor moves and a task is rewritten in a later batch.
	t2 := sampleTask(2, "2", 3)
	if err := s.Apply(ctx, &store.Batch{Cursors: []store.Cursor{{JobID: "J", Seq: 0, Cursor: 7}}, Tasks: []core.TaskRecord{t2}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = open(t, path) // migrations must be idempotent on reopen
	defer s.Close()
	snap := loadAll(t, s)
	if len(snap.Tasks) != 2 {
		t.Fatalf("tasks = %d, want 2", len(snap.Tasks))
	}
	byNum := map[int64]core.TaskRecord{}
	for _, tr := range snap.Tasks {
		byNum[tr.Num] = tr
	}
	if want := sampleTask(1, "1", 0); !reflect.DeepEqual(byNum[1], want) {
		t.Errorf("task 1 = %+v\nwant %+v", byNum[1], want)
	}
	if !reflect.DeepEqual(byNum[2], t2) {
		t.Errorf("task 2 = %+v\nwant %+v", byNum[2], t2)
	}
	if len(snap.Groups) != 1 || snap.Groups[0].Cursor != 7 || snap.Groups[0].Spec != "1-10" {
		t.Errorf("groups = %+v", snap.Groups)
	}
	if len(snap.Nodes) != 1 || snap.Nodes[0].Labels["gpu"] != "a100" {
		t.Errorf("nodes = %+v", snap.Nodes)
	}
	out, errb, err := s.Logs(ctx, "J", "1", 1)
	if err != nil || string(out) != "out" || string(errb) != "err" {
		t.Errorf("logs = %q %q %v", out, errb, err)
	}
	if v, err := s.Meta(ctx, "k"); err != nil || v != "v" {
		t.Errorf("meta = %q %v", v, err)
	}
	idem, err := s.Idempotency(ctx, 50)
	if err != nil || len(idem) != 1 || idem[0].Status != 201 {
		t.Errorf("idempotency = %+v %v", idem, err)
	}
	if owners, err := s.DataOwners(ctx); err != nil || !reflect.DeepEqual(owners, b.DataOwners) {
		t.Errorf("data owners = %+v %v, want %+v", owners, err, b.DataOwners)
	}
	if idem, _ := s.Idempotency(ctx, 200); len(idem) != 0 {
		t.Errorf("expired idempotency keys kept: %+v", idem)
	}

	// Deleting a job removes its job, groups, tasks and logs; other jobs stay.
	if err := s.Apply(ctx, &store.Batch{DeletedJobs: []store.DeletedJob{{ID: "J", FirstTask: 1, LastTask: 2}}}); err != nil {
		t.Fatal(err)
	}
	snap = loadAll(t, s)
	if len(snap.Jobs) != 1 || snap.Jobs[0].ID != "K" || len(snap.Tasks) != 0 || len(snap.Groups) != 0 {
		t.Errorf("after delete: jobs %+v tasks %d groups %d", snap.Jobs, len(snap.Tasks), len(snap.Groups))
	}
	if out, _, _ := s.Logs(ctx, "J", "1", 1); out != nil {
		t.Errorf("logs survived job delete: %q", out)
	}
}

// TestDeleteJobAmongOthers: a deleted job's task rows are found by their
// numbers; the rows of other jobs numbered among them stay.
func TestDeleteJobAmongOthers(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "lote.db"))
	defer s.Close()
	var b store.Batch
	for num := int64(1); num <= 7; num++ {
		tr := sampleTask(num, fmt.Sprint(num), 0)
		if num%2 == 0 {
			tr.JobID = "K"
		}
		b.Tasks = append(b.Tasks, tr)
	}
	if err := s.Apply(ctx, &b); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, &store.Batch{DeletedJobs: []store.DeletedJob{{ID: "J", FirstTask: 1, LastTask: 7}, {ID: "none"}}}); err != nil {
		t.Fatal(err)
	}
	var left []int64
	for _, tr := range loadAll(t, s).Tasks {
		if tr.JobID != "K" {
			t.Errorf("task %d of job %s survived its job", tr.Num, tr.JobID)
		}
		left = append(left, tr.Num)
	}
	if len(left) != 3 {
		t.Errorf("tasks left %v, want K's 2, 4 and 6", left)
	}
}

// TestNodeTaskInputsRoundTrip: the inputs of a pool's start task and a
// job's preparation and release tasks come back after a reopen.
func TestNodeTaskInputsRoundTrip(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "lote.db")
	s := open(t, path)
	in := []core.InputFile{{Source: "data://tools/a.sh", Path: "bin/a.sh", Mode: 0o755}, {Source: "https://h/x?y=1", Path: "x"}}
	pool := core.PoolRecord{ID: "p", Provider: "static", Prefill: -1, JoinToken: "j",
		StartTask: &core.StartTask{Command: []string{"sh", "-c", "true"}, WaitForSuccess: true, Inputs: in}}
	job := core.JobRecord{ID: "J", PoolID: "p", Seq: 1,
		PrepTask:    &core.StartTask{Command: []string{"true"}, Inputs: []core.InputFile{{Source: "data://ref/{job}/", Path: "."}}},
		ReleaseTask: &core.StartTask{Command: []string{"true"}, Inputs: in[:1]}}
	if err := s.Apply(ctx, &store.Batch{Pools: []core.PoolRecord{pool}, Jobs: []core.JobRecord{job}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	snap, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Pools) != 1 || !reflect.DeepEqual(snap.Pools[0].StartTask, pool.StartTask) {
		t.Errorf("pools = %+v, want start task %+v", snap.Pools, pool.StartTask)
	}
	if len(snap.Jobs) != 1 || !reflect.DeepEqual(snap.Jobs[0].PrepTask, job.PrepTask) || !reflect.DeepEqual(snap.Jobs[0].ReleaseTask, job.ReleaseTask) {
		t.Errorf("jobs = %+v, want prep %+v release %+v", snap.Jobs, job.PrepTask, job.ReleaseTask)
	}
}

// TestLoadTasksInRanges: with the task rows read as several ranges of
// numbers at once, every row comes back exactly once, also with gaps in the
// numbers, ranges that hold no row and more rows than fit in one batch; an
// error from the caller stops the load.
func TestLoadTasksInRanges(t *testing.T) {
	ctx := context.Background()
	s := open(t, filepath.Join(t.TempDir(), "lote.db"))
	defer s.Close()
	want := map[int64]core.TaskRecord{}
	var batch store.Batch
	nums := []int64{3, 4, 5, 90, 91, 400, 401, 402, 403, 1000}
	for i := range 3 * taskBatch {
		nums = append(nums, int64(5000+i))
	}
	for _, num := range nums {
		tr := sampleTask(num, fmt.Sprint("t", num), int(num%3))
		if num >= 400 {
			tr.JobID = "K"
		}
		want[num] = tr
		batch.Tasks = append(batch.Tasks, tr)
	}
	if err := s.Apply(ctx, &batch); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loadParts = defaultLoadParts })
	for _, parts := range []int{1, 2, 3, 4, 7} {
		loadParts = func(int64) int { return parts }
		got := map[int64]core.TaskRecord{}
		for _, tr := range loadAll(t, s).Tasks {
			if _, dup := got[tr.Num]; dup {
				t.Errorf("%d parts: task %d loaded twice", parts, tr.Num)
			}
			got[tr.Num] = tr
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%d parts: loaded %d tasks, want %d", parts, len(got), len(want))
		}
		stop := errors.New("stop")
		calls := 0
		err := s.LoadTasks(ctx, func([]core.TaskRecord) error { calls++; return stop })
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("%d parts: an error from the caller gave %v after %d calls", parts, err, calls)
		}
	}
}

func TestDecodeRejectsCorruption(t *testing.T) {
	tr := sampleTask(9, "x", 2)
	b := encodeTask(nil, &tr)
	for _, bad := range [][]byte{nil, {0}, b[:len(b)-1], append(append([]byte{}, b...), 0)} {
		var got core.TaskRecord
		var d taskDecoder
		if err := d.decode(bad, &got); err == nil {
			t.Errorf("decode(%x) accepted a corrupt record", bad)
		}
	}
}

func BenchmarkApplyTasks(b *testing.B) {
	s := open(b, filepath.Join(b.TempDir(), "lote.db"))
	defer s.Close()
	batch := &store.Batch{}
	for i := 0; i < 1000; i++ {
		batch.Tasks = append(batch.Tasks, sampleTask(int64(i+1), "t", 0))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := s.Apply(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(batch.Tasks))/b.Elapsed().Seconds(), "tasks/s")
}
