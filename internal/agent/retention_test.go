package agent

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// makeTask creates workitems/<job>/<task> with the given attempts, every
// file and directory last written at `at`.
func makeTask(t *testing.T, node, job, task string, at time.Time, attempts ...string) {
	t.Helper()
	dir := filepath.Join(node, "workitems", job, task)
	for _, a := range attempts {
		wd := filepath.Join(dir, a, "wd")
		if err := os.MkdirAll(wd, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"stdout.txt", "stderr.txt", "wd/out.dat"} {
			if err := os.WriteFile(filepath.Join(dir, a, f), []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "checkpoint"), 0o755); err != nil {
		t.Fatal(err)
	}
	filepath.Walk(dir, func(p string, _ os.FileInfo, _ error) error { return os.Chtimes(p, at, at) })
}

func remaining(t *testing.T, node string) []string {
	t.Helper()
	var out []string
	jobs, _ := os.ReadDir(filepath.Join(node, "workitems"))
	for _, j := range jobs {
		tasks, _ := os.ReadDir(filepath.Join(node, "workitems", j.Name()))
		for _, tk := range tasks {
			out = append(out, j.Name()+"/"+tk.Name())
		}
	}
	slices.Sort(out)
	return out
}

func TestSweepRemovesExpiredTaskDirectories(t *testing.T) {
	node := t.TempDir()
	now := time.Date(2030, 1, 10, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	makeTask(t, node, "J", "old", now.Add(-8*day), "1", "2")
	makeTask(t, node, "J", "young", now.Add(-6*day), "1")
	makeTask(t, node, "J", "running", now.Add(-30*day), "1")
	makeTask(t, node, "K", "old", now.Add(-7*day-time.Second), "1")
	// A task retried yesterday: its first attempt is old, the second is not.
	makeTask(t, node, "K", "retried", now.Add(-9*day), "1")
	makeTask(t, node, "K", "retried", now.Add(-1*day), "2")
	s := &Sweeper{
		Dir: node, Now: func() time.Time { return now },
		InUse:     func() ([]string, error) { return []string{"J/running/1"}, nil },
		DiskUsage: func(string) (float64, error) { return 0.5, nil },
	}
	n, err := s.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"J/running", "J/young", "K/retried"}; n != 2 || !slices.Equal(remaining(t, node), want) {
		t.Errorf("removed %d, left %v; want 2 removed, %v left", n, remaining(t, node), want)
	}
	if _, err := os.Stat(filepath.Join(node, "workitems", "K")); err != nil {
		t.Errorf("job directories must stay (the agent caches them): %v", err)
	}
	// A week later everything but the running task goes.
	now = now.Add(7 * day)
	if _, err := s.Sweep(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"J/running"}; !slices.Equal(remaining(t, node), want) {
		t.Errorf("a week later left %v, want %v", remaining(t, node), want)
	}
}

func TestSweepUnderDiskPressureRemovesOldestFirst(t *testing.T) {
	node := t.TempDir()
	now := time.Now()
	for i, name := range []string{"a", "b", "c", "d"} {
		makeTask(t, node, "J", name, now.Add(-time.Duration(4-i)*time.Hour), "1")
	}
	// None is past retention, but the disk is 97 % full and each removal
	// frees 4 points: the two oldest go.
	usage := 0.97
	s := &Sweeper{
		Dir: node, Now: func() time.Time { return now },
		InUse: func() ([]string, error) { return nil, nil },
		DiskUsage: func(string) (float64, error) {
			u := usage
			usage -= 0.04
			return u, nil
		},
	}
	n, err := s.Sweep()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"J/c", "J/d"}; n != 2 || !slices.Equal(remaining(t, node), want) {
		t.Errorf("removed %d, left %v; want the two oldest removed, %v left", n, remaining(t, node), want)
	}
}

func TestSweepLeavesTasksTheSpawnerRecords(t *testing.T) {
	node := t.TempDir()
	old := time.Now().Add(-30 * 24 * time.Hour)
	makeTask(t, node, "J", "t1", old, "1")
	makeTask(t, node, "J", "t2", old, "1")
	// A journal line as the spawner writes it: t1's exit is not acknowledged.
	if err := os.MkdirAll(filepath.Join(node, "spawner"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(node, "spawner", "tasks.journal"), []byte(`{"ID":"J/t1/1","PID":42}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Sweeper{Dir: node, DiskUsage: func(string) (float64, error) { return 0, nil }}
	if _, err := s.Sweep(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"J/t1"}; !slices.Equal(remaining(t, node), want) {
		t.Errorf("left %v, want %v", remaining(t, node), want)
	}
}
