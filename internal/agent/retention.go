package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/lotehq/lote/internal/spawner"
)

// Retention of task directories on a node (DESIGN §4): a task's directory,
// workitems/<job>/<task> with its attempts' stdout, stderr and working
// directories and its checkpoint directory, is removed once nothing was
// written to it for the retention period, or sooner, oldest first, while the
// disk holding the node directory is more than DiskPressure full. A task the
// spawner still runs, or whose exit the agent has not yet had acknowledged,
// keeps its directory. Records and logs live on the server until the job
// is deleted, so nothing but the node's copy is lost. A job's spare empty
// trees (recycle.go) sit in its spareDir, which is swept like a task's.

// DefaultRetention is how long a node keeps a task's directory.
const DefaultRetention = 7 * 24 * time.Hour

// DefaultSweepInterval is how often the node's task directories are checked.
const DefaultSweepInterval = 5 * time.Minute

// DiskPressure is the share of the disk in use above which task directories
// are removed before their retention ends.
const DiskPressure = 0.90

// trashDir is where a task directory is moved, atomically, before it is
// removed; job IDs cannot start with '.', so no job is named so.
const trashDir = ".trash"

// Sweeper removes a node's old task directories.
type Sweeper struct {
	Dir       string        // the node directory (the agent's --dir)
	Retention time.Duration // default DefaultRetention
	Interval  time.Duration // default DefaultSweepInterval
	Now       func() time.Time
	// DiskUsage reports the share (0-1) of the disk holding path in use;
	// default statfs.
	DiskUsage func(path string) (float64, error)
	// InUse lists the spawner IDs ("job/task/attempt") whose directories
	// are in use; default: the spawner's journal under Dir.
	InUse  func() ([]string, error)
	Logger *slog.Logger
}

func (s *Sweeper) defaults() {
	if s.Retention <= 0 {
		s.Retention = DefaultRetention
	}
	if s.Interval <= 0 {
		s.Interval = DefaultSweepInterval
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if s.DiskUsage == nil {
		s.DiskUsage = diskUsage
	}
	if s.InUse == nil {
		s.InUse = func() ([]string, error) { return spawner.InUse(filepath.Join(s.Dir, "spawner")) }
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
}

// Run sweeps every Interval until ctx ends. The first sweep waits one
// interval too, so an agent that fails to start never sweeps.
func (s *Sweeper) Run(ctx context.Context) {
	s.defaults()
	t := time.NewTicker(s.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n, err := s.Sweep(); err != nil {
			s.Logger.Warn("removing old task directories", "err", err, "removed", n)
		} else if n > 0 {
			s.Logger.Info("removed old task directories", "count", n)
		}
	}
}

// taskDir is a task's directory and when it was last written to.
type taskDir struct {
	path string
	last time.Time
}

// Sweep removes the task directories past retention, then more, oldest
// first, while the disk is over DiskPressure. It reports how many it removed.
func (s *Sweeper) Sweep() (int, error) {
	s.defaults()
	work := filepath.Join(s.Dir, "workitems")
	trash := filepath.Join(work, trashDir)
	if err := os.RemoveAll(trash); err != nil {
		return 0, err
	}
	ids, err := s.InUse()
	if err != nil {
		return 0, fmt.Errorf("reading the tasks in use: %w", err)
	}
	busy := make(map[string]bool, len(ids))
	for _, id := range ids {
		if i := strings.LastIndexByte(id, '/'); i > 0 {
			busy[id[:i]] = true
		}
	}
	dirs, err := s.taskDirs(work, busy)
	if err != nil {
		return 0, err
	}
	// Oldest first: expired ones lead, and pressure takes the next oldest.
	slices.SortFunc(dirs, func(a, b taskDir) int { return a.last.Compare(b.last) })
	cutoff := s.Now().Add(-s.Retention)
	removed := 0
	for i, d := range dirs {
		if !d.last.Before(cutoff) {
			if used, err := s.DiskUsage(s.Dir); err != nil || used <= DiskPressure {
				return removed, err
			}
		}
		if err := remove(d.path, trash, i); err != nil {
			return removed, err
		}
		removed++
	}
	return removed, nil
}

// taskDirs lists the task directories under work with the time of their
// last write, leaving out those of tasks in use.
func (s *Sweeper) taskDirs(work string, busy map[string]bool) ([]taskDir, error) {
	jobs, err := os.ReadDir(work)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []taskDir
	for _, j := range jobs {
		if !j.IsDir() || strings.HasPrefix(j.Name(), ".") {
			continue
		}
		tasks, err := os.ReadDir(filepath.Join(work, j.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		for _, t := range tasks {
			if !t.IsDir() || busy[j.Name()+"/"+t.Name()] {
				continue
			}
			path := filepath.Join(work, j.Name(), t.Name())
			out = append(out, taskDir{path: path, last: lastWrite(path)})
		}
	}
	return out, nil
}

// lastWrite is the latest modification time of a task directory, its
// checkpoint directory, its attempts' directories and their output files:
// an output file's time is when the task last wrote to it.
func lastWrite(task string) time.Time {
	var last time.Time
	see := func(path string) {
		if st, err := os.Stat(path); err == nil && st.ModTime().After(last) {
			last = st.ModTime()
		}
	}
	see(task)
	see(filepath.Join(task, "checkpoint"))
	ents, _ := os.ReadDir(task)
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil || !e.IsDir() {
			continue
		}
		attempt := filepath.Join(task, e.Name())
		see(attempt)
		see(filepath.Join(attempt, "stdout.txt"))
		see(filepath.Join(attempt, "stderr.txt"))
	}
	return last
}

// remove moves a task directory into the trash in one rename, so a task
// directory is either whole or gone, then deletes it.
func remove(path, trash string, n int) error {
	if err := os.MkdirAll(trash, 0o755); err != nil {
		return err
	}
	dst := filepath.Join(trash, strconv.Itoa(n))
	if err := os.Rename(path, dst); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return os.RemoveAll(dst)
}

// diskUsage is the share of the file system holding path that is in use,
// counting the space reserved for root as used (as df does).
func diskUsage(path string) (float64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	if st.Blocks == 0 {
		return 0, nil
	}
	return 1 - float64(st.Bavail)/float64(st.Blocks), nil
}
