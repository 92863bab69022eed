package agent

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/lotehq/lote/internal/proto"
	"github.com/lotehq/lote/internal/spawner"
)

// Recycling of empty task directories. A first attempt needs four new
// directories (task, attempt, wd, checkpoint), and on a disk where each new
// directory costs an inode, a block and a fresh page of cache, those mkdirs
// were the agent's largest cost per short task: 200-260 µs of its 450 on
// this project's test machine, where the hypervisor takes freed memory back
// and every fresh page faults. They also add up: a million-task array left
// four million empty directories, 16 GiB of directory blocks, on its node.
//
// So the tree of a task that succeeded at its first attempt and left
// nothing behind (no output, nothing in its working or checkpoint
// directory, nothing else in its task or attempt directory) is moved aside
// in one rename, and the next first attempt of the same job takes it in
// one rename instead of four mkdirs. An empty tree holds nothing retention
// would keep, and a tree only moves between tasks of one job, so what one
// task could do to its directories (their owner is the run-as user) stays
// within the job. A tree whose directories' modes differ from each other,
// or whose owner is not the run-as user's, is left where it is. A process
// that escaped its task's process group and still has its cwd in the tree
// would write into the next task's; it could already write anywhere the
// job's user can, but that one is checked only when its task ends.

// spareDir holds a job's spare trees; task IDs cannot contain '.', so no
// task is named so. The retention sweep removes it with the job's tasks.
const spareDir = ".spare"

// maxSpares bounds a job's spare trees per slot: enough to cover the tasks
// makeDirsAhead prepares, few enough that a job's end leaves little.
const maxSpares = 2 * dirsAhead

// spares are the spare trees of the job that last had one, guarded by
// Agent.dirMu. When another job's tree comes, the earlier job's spares are
// removed: one array at a time is the case this serves, and jobs that
// alternate must not pile up trees nothing would take.
type spares struct {
	job    string
	prefix string // of the spares' names, new per job: none is an earlier agent's
	uid    int    // owner of the spares' working and checkpoint directories
	paths  []string
	made   uint64 // names the next spare
	ready  bool   // job's spareDir exists
}

// recyclableLocked says whether an attempt's tree may be recycled once it
// has ended: a first attempt that succeeded, wrote no output and needs no
// upload, of a task the agent knows.
func (a *Agent) recyclableLocked(t *task, ex spawner.Exit) bool {
	return t.tpl != nil && t.ref.Attempt == 1 && succeeded(ex) && !a.stopping &&
		ex.Written != nil && ex.Written[0] == 0 && ex.Written[1] == 0
}

// takeRecyclingLocked takes the ended attempts whose trees may be recycled
// now: those of the job queued next (another job's tree would only be set
// aside and forgotten), and not of a task run again, as a retry of one
// that succeeded is, whose next attempt's directories are made in the
// same tree.
func (a *Agent) takeRecyclingLocked() []proto.Ref {
	next := ""
	if len(a.queue) > 0 {
		next = a.queue[0].ref.Job
	}
	r := slices.DeleteFunc(a.recycling, func(r proto.Ref) bool {
		return r.Job != next || a.tasks[spawnID(proto.Ref{Job: r.Job, Task: r.Task, Attempt: r.Attempt + 1})] != nil
	})
	a.recycling = nil
	return r
}

// recycle hands the tree of r, if it is still as makeDirs made it, to the
// next queued first attempt of its job that has no directories yet, or
// else moves it aside as a spare for its job if the job has room for
// another. Handing it over is one rename within the job's directory, where
// a spare costs two between directories. It runs in makeDirsAhead, off the
// agent's lock.
func (a *Agent) recycle(r proto.Ref, uid int) {
	taskDir, dir, wd, ckpt := a.attemptDirs(r)
	mode, ok := dirHolds(taskDir, -1, 0, "1", "checkpoint")
	if !ok {
		return
	}
	for _, d := range []struct {
		path  string
		owner int
		names []string
	}{{dir, -1, []string{"wd"}}, {wd, uid, nil}, {ckpt, uid, nil}} {
		if _, ok := dirHolds(d.path, d.owner, mode, d.names...); !ok {
			return
		}
	}
	a.mu.Lock()
	next := a.claimDirsLocked(r.Job)
	a.mu.Unlock()
	if next != nil {
		nextDir, _, _, _ := a.attemptDirs(next.ref)
		err := renameNew(taskDir, nextDir)
		if err == nil {
			dateNow(nextDir)
		}
		a.mu.Lock()
		a.dirsDoneLocked(next, err == nil)
		a.mu.Unlock()
		if err == nil {
			return
		}
	}
	spareRoot := filepath.Join(a.cfg.Dir, "workitems", r.Job, spareDir)
	var forgotten []string
	a.dirMu.Lock()
	if a.spares.job == r.Job && a.spares.uid == uid && len(a.spares.paths) >= maxSpares*a.cfg.Slots {
		a.dirMu.Unlock()
		return
	}
	if a.spares.job != r.Job || a.spares.uid != uid {
		forgotten = a.spares.paths
		a.spares = spares{job: r.Job, uid: uid, prefix: strconv.FormatInt(time.Now().UnixNano(), 36) + "-"}
	}
	ready, prefix := a.spares.ready, a.spares.prefix
	a.spares.made++
	spare := filepath.Join(spareRoot, prefix+strconv.FormatUint(a.spares.made, 10))
	a.dirMu.Unlock()
	for _, p := range forgotten { // another job's, which nothing would take
		os.RemoveAll(p)
	}
	if !ready {
		if err := os.Mkdir(spareRoot, 0o755); errors.Is(err, os.ErrExist) {
			clearSpares(spareRoot, prefix)
		} else if err != nil {
			return
		}
	}
	if err := renameNew(taskDir, spare); err != nil {
		if errors.Is(err, os.ErrNotExist) && exists(taskDir) {
			a.dirMu.Lock()
			a.spares.ready = false // swept away (retention.go): made again next time
			a.dirMu.Unlock()
		}
		return
	}
	a.dirMu.Lock()
	if a.spares.job == r.Job && a.spares.uid == uid {
		a.spares.ready = true
		a.spares.paths = append(a.spares.paths, spare)
	}
	a.dirMu.Unlock()
}

// takeSpare moves a spare tree of r's job into place as r's task
// directory, and reports whether it did. A first attempt only: its task
// directory must not exist yet. uid is the owner its working and
// checkpoint directories need.
func (a *Agent) takeSpare(r proto.Ref, taskDir string, uid int) bool {
	if r.Attempt != 1 {
		return false
	}
	a.dirMu.Lock()
	if a.spares.job != r.Job || a.spares.uid != uid || len(a.spares.paths) == 0 {
		a.dirMu.Unlock()
		return false
	}
	n := len(a.spares.paths) - 1
	spare := a.spares.paths[n]
	a.spares.paths = a.spares.paths[:n]
	a.dirMu.Unlock()
	if err := renameNew(spare, taskDir); err != nil {
		if errors.Is(err, os.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			a.dirMu.Lock()
			if a.spares.job == r.Job && a.spares.uid == uid { // still whole: keep it for another task
				a.spares.paths = append(a.spares.paths, spare)
			}
			a.dirMu.Unlock()
		}
		return false
	}
	dateNow(taskDir)
	return true
}

// dateNow dates a recycled task directory now. The retention sweep dates a
// task by its directories' times, which a rename keeps: without this the
// tree would be as old as its first task.
func dateNow(taskDir string) {
	now := time.Now()
	os.Chtimes(taskDir, now, now) // on failure, at worst swept early
}

// dirHolds reports whether the directory at path holds exactly names,
// whose owner is owner (unless negative) and whose permission bits are
// mode (unless zero), and returns its permission bits.
func dirHolds(path string, owner int, mode uint32, names ...string) (uint32, bool) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return 0, false
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil {
		return 0, false
	}
	perm := st.Mode & 0o7777
	if owner >= 0 && int(st.Uid) != owner || mode != 0 && perm != mode {
		return 0, false
	}
	var buf [512]byte
	seen := 0
	for {
		n, err := syscall.Getdents(fd, buf[:])
		if err != nil {
			return 0, false
		}
		if n == 0 {
			return perm, seen == len(names)
		}
		var got []string
		_, _, got = syscall.ParseDirent(buf[:n], -1, got)
		for _, g := range got {
			if !slices.Contains(names, g) {
				return 0, false
			}
			seen++
		}
	}
}

// clearSpares removes the spares in dir that are not named with prefix:
// those of an earlier agent, or of this one before it last moved to another
// job, which it no longer knows.
func clearSpares(dir, prefix string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), prefix) {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// taskUID is the owner of a task's working and checkpoint directories.
func taskUID(cred *syscall.Credential) int {
	if cred != nil {
		return int(cred.Uid)
	}
	return os.Geteuid()
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// renameNew renames old to new, which must not exist. It is os.Rename
// without the Lstat of new that os.Rename makes to refuse replacing an
// empty directory: RENAME_NOREPLACE refuses any, in the same system call.
func renameNew(old, new string) error {
	err := unix.Renameat2(unix.AT_FDCWD, old, unix.AT_FDCWD, new, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS) {
		// Not on this file system. os.Rename refuses an existing directory
		// as new, and renaming a directory onto a file fails anyway.
		return os.Rename(old, new)
	}
	if err != nil {
		return &os.LinkError{Op: "rename", Old: old, New: new, Err: err}
	}
	return nil
}
