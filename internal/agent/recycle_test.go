package agent

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/proto"
	"github.com/lotehq/lote/internal/spawner"
)

func recycleAgent(t *testing.T) *Agent {
	t.Helper()
	return &Agent{cfg: Config{Dir: t.TempDir(), Slots: 2}, jobDirs: map[string]bool{}}
}

// made makes r's tree as a first attempt gets it, failing the test if it
// cannot.
func made(t *testing.T, a *Agent, r proto.Ref) (dir, wd, ckpt string) {
	t.Helper()
	dir, wd, ckpt, err := a.makeDirs(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return dir, wd, ckpt
}

// spared makes r's tree, recycles it as an ended first attempt's, and
// returns the spare it became, failing the test unless it is the one spare.
func spared(t *testing.T, a *Agent, r proto.Ref) string {
	t.Helper()
	made(t, a, r)
	a.recycle(r, os.Geteuid())
	if len(a.spares.paths) != 1 {
		t.Fatalf("spares = %v after recycling %v, want its tree alone", a.spares.paths, r)
	}
	return a.spares.paths[0]
}

// TestRecycleEmptyTree: the tree of an attempt that left nothing is moved
// aside, and the next first attempt of the job gets it in place, empty,
// with every directory it needs.
func TestRecycleEmptyTree(t *testing.T) {
	a := recycleAgent(t)
	uid := os.Geteuid()
	r1 := proto.Ref{Job: "j", Task: "1", Attempt: 1}
	made(t, a, r1)
	taskDir, _, _, _ := a.attemptDirs(r1)
	a.recycle(r1, uid)
	if exists(taskDir) {
		t.Fatalf("%s is still there after recycling its empty tree", taskDir)
	}
	if len(a.spares.paths) != 1 {
		t.Fatalf("spares = %v, want the one tree", a.spares.paths)
	}

	r2 := proto.Ref{Job: "j", Task: "2", Attempt: 1}
	dir, wd, ckpt := made(t, a, r2)
	if len(a.spares.paths) != 0 {
		t.Errorf("spares = %v after a first attempt took one", a.spares.paths)
	}
	for _, d := range []string{dir, wd, ckpt} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Errorf("%s: %v, want a directory", d, err)
		}
	}
	if _, ok := dirHolds(wd, uid, 0); !ok {
		t.Errorf("%s is not an empty directory of uid %d", wd, uid)
	}
}

// TestRecycleKeepsWhatWasLeft: a tree with anything in it, anywhere, or
// with a directory whose mode the task changed, stays where it is.
func TestRecycleKeepsWhatWasLeft(t *testing.T) {
	cases := map[string]func(dir, wd, ckpt string) error{
		"file in wd":       func(_, wd, _ string) error { return os.WriteFile(filepath.Join(wd, "out"), nil, 0o644) },
		"dir in wd":        func(_, wd, _ string) error { return os.Mkdir(filepath.Join(wd, "d"), 0o755) },
		"checkpoint":       func(_, _, ckpt string) error { return os.WriteFile(filepath.Join(ckpt, "state"), []byte("1"), 0o644) },
		"file in task dir": func(dir, _, _ string) error { return os.WriteFile(filepath.Join(dir, "x"), nil, 0o644) },
		"link in attempt":  func(dir, _, _ string) error { return os.Symlink("/etc", filepath.Join(filepath.Dir(dir), "2")) },
		"wd opened to all": func(_, wd, _ string) error { return os.Chmod(wd, 0o777) },
		"wd replaced by link": func(_, wd, ckpt string) error {
			if err := os.Remove(wd); err != nil {
				return err
			}
			return os.Symlink(ckpt, wd) // an empty directory, through a link
		},
	}
	for name, leave := range cases {
		t.Run(name, func(t *testing.T) {
			a := recycleAgent(t)
			r := proto.Ref{Job: "j", Task: "1", Attempt: 1}
			dir, wd, ckpt := made(t, a, r)
			if err := leave(dir, wd, ckpt); err != nil {
				t.Fatal(err)
			}
			a.recycle(r, os.Geteuid())
			if !exists(wd) || len(a.spares.paths) != 0 {
				t.Errorf("tree recycled (spares %v); want it left in place", a.spares.paths)
			}
		})
	}
}

// TestSparesStayInTheirJob: a spare is for first attempts of its own job
// only, and a later attempt never takes one (its task directory, with
// the checkpoint, already exists).
func TestSparesStayInTheirJob(t *testing.T) {
	a := recycleAgent(t)
	uid := os.Geteuid()
	spared(t, a, proto.Ref{Job: "j", Task: "1", Attempt: 1})
	other := proto.Ref{Job: "k", Task: "1", Attempt: 1}
	made(t, a, other)
	retry := proto.Ref{Job: "j", Task: "2", Attempt: 2}
	made(t, a, retry)
	if len(a.spares.paths) != 1 {
		t.Errorf("spares = %v: another job's task or a second attempt took job j's spare", a.spares.paths)
	}
	if a.takeSpare(proto.Ref{Job: "j", Task: "3", Attempt: 1}, filepath.Join(a.cfg.Dir, "workitems", "j", "3"), uid+1) {
		t.Error("a spare owned by one user was given to a task running as another")
	}
}

// TestRecyclable: only a plain first attempt that succeeded and wrote no
// output is recycled.
func TestRecyclable(t *testing.T) {
	tpl := &proto.Template{}
	zero := &[2]int64{}
	first := &task{ref: proto.Ref{Job: "j", Task: "1", Attempt: 1}, tpl: tpl}
	cases := []struct {
		name string
		t    *task
		ex   spawner.Exit
		want bool
	}{
		{"succeeded, silent", first, spawner.Exit{Written: zero}, true},
		{"wrote stdout", first, spawner.Exit{Written: &[2]int64{3, 0}}, false},
		{"wrote stderr", first, spawner.Exit{Written: &[2]int64{0, 1}}, false},
		{"output unknown", first, spawner.Exit{}, false},
		{"failed", first, spawner.Exit{ExitCode: 1, Written: zero}, false},
		{"lost", first, spawner.Exit{Lost: true, Written: zero}, false},
		{"second attempt", &task{ref: proto.Ref{Job: "j", Task: "1", Attempt: 2}, tpl: tpl}, spawner.Exit{Written: zero}, false},
		{"unknown task", &task{ref: first.ref}, spawner.Exit{Written: zero}, false},
	}
	a := &Agent{}
	for _, c := range cases {
		if got := a.recyclableLocked(c.t, c.ex); got != c.want {
			t.Errorf("%s: recyclable = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestSparesSweptAway: when the retention sweep removes a job's spares,
// tasks fall back to new directories and recycling starts again.
func TestSparesSweptAway(t *testing.T) {
	a := recycleAgent(t)
	uid := os.Geteuid()
	ref := func(task string) proto.Ref { return proto.Ref{Job: "j", Task: task, Attempt: 1} }
	made(t, a, ref("1"))
	a.recycle(ref("1"), uid)
	if err := os.RemoveAll(filepath.Join(a.cfg.Dir, "workitems", "j", spareDir)); err != nil {
		t.Fatal(err)
	}
	_, wd, _ := made(t, a, ref("2"))
	if !exists(wd) {
		t.Fatalf("no working directory for task 2 after its spare was swept")
	}
	a.recycle(ref("2"), uid) // finds no spare directory
	made(t, a, ref("3"))
	a.recycle(ref("3"), uid)
	if len(a.spares.paths) != 1 || !exists(a.spares.paths[0]) {
		t.Errorf("spares = %v, want task 3's tree, recycled into a new spare directory", a.spares.paths)
	}
}

// TestSparesOfAnEarlierAgent: an agent started again on the same
// directory removes the spares its predecessor left, which nothing knows
// of, and recycles into the same place; a spare never replaces a task
// directory that exists, even an empty one.
func TestSparesOfAnEarlierAgent(t *testing.T) {
	a := recycleAgent(t)
	uid := os.Geteuid()
	ref := func(task string) proto.Ref { return proto.Ref{Job: "j", Task: task, Attempt: 1} }
	made(t, a, ref("1"))
	a.recycle(ref("1"), uid)
	left := a.spares.paths[0]

	b := &Agent{cfg: a.cfg, jobDirs: map[string]bool{}}
	made(t, b, ref("2"))
	b.recycle(ref("2"), uid)
	if len(b.spares.paths) != 1 || b.spares.paths[0] == left || exists(left) {
		t.Fatalf("second agent's spares = %v, first's %s exists: %v; want only the second's", b.spares.paths, left, exists(left))
	}
	taskDir, _, _, _ := b.attemptDirs(ref("3"))
	if err := os.Mkdir(taskDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if b.takeSpare(ref("3"), taskDir, uid) {
		t.Error("a spare replaced an existing task directory")
	}
	if len(b.spares.paths) != 1 {
		t.Errorf("spares = %v, want the spare kept after it could not be used", b.spares.paths)
	}
}

// BenchmarkTaskDirs is the directory work of one short task's first
// attempt: four mkdirs; or a recycled tree through the spares (one rename
// in, and the checks and rename that set it aside again when the task
// ended); or handed from the task before (the checks and one rename).
func BenchmarkTaskDirs(b *testing.B) {
	ref := func(i int) proto.Ref { return proto.Ref{Job: "j", Task: strconv.Itoa(i), Attempt: 1} }
	b.Run("made", func(b *testing.B) {
		a := &Agent{cfg: Config{Dir: b.TempDir(), Slots: 2}, jobDirs: map[string]bool{}}
		i := 0
		for b.Loop() {
			if _, _, _, err := a.makeDirs(ref(i), nil); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("recycled", func(b *testing.B) {
		a := &Agent{cfg: Config{Dir: b.TempDir(), Slots: 2}, jobDirs: map[string]bool{}}
		uid := os.Geteuid()
		if _, _, _, err := a.makeDirs(ref(0), nil); err != nil {
			b.Fatal(err)
		}
		i := 1
		for b.Loop() {
			a.recycle(ref(i-1), uid)
			if _, _, _, err := a.makeDirs(ref(i), nil); err != nil {
				b.Fatal(err)
			}
			i++
		}
		if len(a.spares.paths) != 0 || a.spares.made < uint64(i-1) {
			b.Fatalf("made %d spares for %d tasks, %d left: the trees were not recycled", a.spares.made, i, len(a.spares.paths))
		}
	})
	b.Run("handed", func(b *testing.B) {
		a := &Agent{cfg: Config{Dir: b.TempDir(), Slots: 2}, jobDirs: map[string]bool{}, tasks: map[string]*task{}}
		uid := os.Geteuid()
		if _, _, _, err := a.makeDirs(ref(0), nil); err != nil {
			b.Fatal(err)
		}
		i := 1
		for b.Loop() {
			next := &task{ref: ref(i), id: spawnID(ref(i))}
			a.tasks[next.id], a.queue = next, []*task{next}
			a.recycle(ref(i-1), uid)
			if !next.dirsMade {
				b.Fatalf("task %d got no tree", i)
			}
			i++
		}
	})
}

// TestSparesOfAnotherJob: when a tree of another job comes, the spares of
// the job before are removed rather than left for nothing to take.
func TestSparesOfAnotherJob(t *testing.T) {
	a := recycleAgent(t)
	left := spared(t, a, proto.Ref{Job: "j", Task: "1", Attempt: 1})
	spared(t, a, proto.Ref{Job: "k", Task: "1", Attempt: 1})
	if exists(left) {
		t.Errorf("job j's spare %s is still there after job k's tree was recycled", left)
	}
	if a.spares.job != "k" {
		t.Errorf("spares are job %q's, want job k's", a.spares.job)
	}
}

// TestRecycledTreeIsNew: a tree taken from the spares is dated now, so the
// retention sweep does not take it for its first task's, days old.
func TestRecycledTreeIsNew(t *testing.T) {
	a := recycleAgent(t)
	uid := os.Geteuid()
	r1 := proto.Ref{Job: "j", Task: "1", Attempt: 1}
	made(t, a, r1)
	taskDir, dir, wd, ckpt := a.attemptDirs(r1)
	old := time.Now().Add(-30 * 24 * time.Hour)
	for _, d := range []string{wd, dir, ckpt, taskDir} {
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
	}
	a.recycle(r1, uid)
	r2 := proto.Ref{Job: "j", Task: "2", Attempt: 1}
	made(t, a, r2)
	if len(a.spares.paths) != 0 {
		t.Fatalf("spares = %v, want task 2 to have taken the tree", a.spares.paths)
	}
	task2, _, _, _ := a.attemptDirs(r2)
	if last := lastWrite(task2); time.Since(last) > time.Hour {
		t.Errorf("task 2's directory was last written %v ago by the sweep's reckoning, want now", time.Since(last))
	}
}

// TestTakeRecycling: only the job queued next has its trees recycled, and
// not a task whose next attempt the agent already holds (a retry of a task
// that succeeded).
func TestTakeRecycling(t *testing.T) {
	ref := func(job, task string, attempt int) proto.Ref {
		return proto.Ref{Job: job, Task: task, Attempt: attempt}
	}
	retry := &task{ref: ref("j", "2", 2), id: spawnID(ref("j", "2", 2))}
	a := &Agent{
		queue:     []*task{{ref: ref("j", "9", 1)}},
		tasks:     map[string]*task{retry.id: retry},
		recycling: []proto.Ref{ref("j", "1", 1), ref("j", "2", 1), ref("k", "1", 1)},
	}
	got := a.takeRecyclingLocked()
	if len(got) != 1 || got[0] != ref("j", "1", 1) {
		t.Errorf("recycled %v, want only j/1/1", got)
	}
	if len(a.recycling) != 0 {
		t.Errorf("%v left to recycle, want none", a.recycling)
	}
}

// TestTreeHandedToNextTask: a recycled tree goes straight to the first
// queued first attempt of its job without directories, dated now, rather
// than through the spares; not to another job's task, a second attempt,
// or a task whose directories are made or being made.
func TestTreeHandedToNextTask(t *testing.T) {
	a := recycleAgent(t)
	a.cfg.Slots = 3 // makeDirsAhead prepares the first 3*dirsAhead queued tasks
	a.tasks = map[string]*task{}
	ref := func(job, task string, attempt int) proto.Ref {
		return proto.Ref{Job: job, Task: task, Attempt: attempt}
	}
	for _, q := range []*task{
		{ref: ref("k", "1", 1)},
		{ref: ref("j", "2", 2)},
		{ref: ref("j", "3", 1), dirsMade: true},
		{ref: ref("j", "4", 1), dirsBusy: true},
		{ref: ref("j", "5", 1)},
		{ref: ref("j", "6", 1)},
	} {
		q.id = spawnID(q.ref)
		a.tasks[q.id], a.queue = q, append(a.queue, q)
	}
	r1 := ref("j", "1", 1)
	made(t, a, r1)
	taskDir, _, _, _ := a.attemptDirs(r1)
	old := time.Now().Add(-30 * 24 * time.Hour)
	if err := os.Chtimes(taskDir, old, old); err != nil {
		t.Fatal(err)
	}
	a.recycle(r1, os.Geteuid())

	if exists(taskDir) || len(a.spares.paths) != 0 {
		t.Fatalf("tree of j/1 still there (%v) or spared (%v); want it handed over", exists(taskDir), a.spares.paths)
	}
	for _, q := range a.queue {
		if want := q.ref.Task == "5" || q.ref.Task == "3"; q.dirsMade != want || q.dirsBusy != (q.ref.Task == "4") {
			t.Errorf("%v: dirsMade %v, dirsBusy %v", q.ref, q.dirsMade, q.dirsBusy)
		}
	}
	task5, dir, wd, ckpt := a.attemptDirs(ref("j", "5", 1))
	for _, d := range []string{dir, wd, ckpt} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Errorf("%s: %v, want a directory", d, err)
		}
	}
	if last := lastWrite(task5); time.Since(last) > time.Hour {
		t.Errorf("j/5's directory was last written %v ago by the sweep's reckoning, want now", time.Since(last))
	}
}
