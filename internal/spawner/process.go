package spawner

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// procStat returns a process's state letter and start time (fields 3 and 22
// of /proc/PID/stat).
func procStat(pid int) (state byte, start uint64, err error) {
	var buf [1024]byte
	b, err := readSmall("/proc/"+strconv.Itoa(pid)+"/stat", buf[:])
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may contain anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat: no command name", pid)
	}
	b = b[i+2:]
	state = b[0]
	for field := 3; field < 22; field++ {
		j := bytes.IndexByte(b, ' ')
		if j < 0 {
			return 0, 0, fmt.Errorf("parsing /proc/%d/stat: %d fields", pid, field)
		}
		b = b[j+1:]
	}
	if j := bytes.IndexByte(b, ' '); j >= 0 {
		b = b[:j]
	}
	start, err = strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("parsing /proc/%d/stat: %w", pid, err)
	}
	return state, start, nil
}

// readSmall reads a file that fits in buf.
func readSmall(path string, buf []byte) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.Close(fd)
	n, err := syscall.Read(fd, buf)
	if err != nil {
		return nil, &fs.PathError{Op: "read", Path: path, Err: err}
	}
	return buf[:n], nil
}

// alive reports whether pid is a live (not zombie) process that started by
// startedBy, so a later process that reuses the pid is never taken for it.
func alive(pid int, startedBy uint64) bool {
	state, start, err := procStat(pid)
	return err == nil && start <= startedBy && state != 'Z' && state != 'X'
}

// userHZ is the unit of times in /proc/PID/stat: USER_HZ, 100 on every
// architecture Go supports.
const userHZ = 100

const clockBoottime = 7 // CLOCK_BOOTTIME, the clock of process start times

// bootTicks reads the clock that /proc/PID/stat field 22, a process's start
// time, is taken from, in its unit. Reading it after a fork bounds the
// child's start time for a fraction of the cost of reading /proc/PID/stat,
// which matters on the spawn path.
func bootTicks() uint64 {
	var ts syscall.Timespec
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&ts)), 0); errno != 0 {
		return 0
	}
	return uint64(ts.Nano()) / (1e9 / userHZ)
}

// bootID identifies the current boot of the machine.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return string(bytes.TrimSpace(b))
}

// lookPath finds file as execvp would, but in the task's PATH rather than the
// spawner's. Relative PATH entries are relative to the task's dir.
func lookPath(file string, env []string, dir string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, d := range filepath.SplitList(taskPATH(env)) {
		if d == "" {
			d = "."
		}
		p := filepath.Join(d, file)
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: executable file not found in $PATH", file)
}

// pathCacheTTL is how long a command found in PATH is used without looking
// again: a command installed earlier in PATH is seen within this time.
const pathCacheTTL = time.Second

// pathCache remembers where lookPath found commands in recent spawns: a
// command run many times a second (an array of short tasks) was stat'ed in
// every PATH directory before it, about a tenth of a spawn's cost. Only
// PATHs of absolute directories are cached, as the result of a relative one
// depends on the task's directory.
type pathCache struct {
	entries map[string]cachedPath // by command NUL PATH
}

type cachedPath struct {
	path  string
	found time.Time
}

// look is lookPath through the cache; cached reports a remembered result.
func (c *pathCache) look(file string, env []string, dir string, now time.Time) (path string, cached bool, err error) {
	if strings.Contains(file, "/") {
		return file, false, nil
	}
	key, ok := pathKey(file, env)
	if !ok {
		path, err = lookPath(file, env, dir)
		return path, false, err
	}
	if e, hit := c.entries[key]; hit && now.Sub(e.found) < pathCacheTTL {
		return e.path, true, nil
	}
	if path, err = lookPath(file, env, dir); err != nil {
		return "", false, err
	}
	if c.entries == nil || len(c.entries) >= 1024 {
		c.entries = make(map[string]cachedPath)
	}
	c.entries[key] = cachedPath{path: path, found: now}
	return path, false, nil
}

// forget drops what the cache holds for file in env's PATH.
func (c *pathCache) forget(file string, env []string) {
	if key, ok := pathKey(file, env); ok {
		delete(c.entries, key)
	}
}

// pathKey is the cache key of file in env's PATH; false when PATH has a
// relative (or empty) entry.
func pathKey(file string, env []string) (string, bool) {
	path := taskPATH(env)
	for _, d := range filepath.SplitList(path) {
		if !filepath.IsAbs(d) {
			return "", false
		}
	}
	return file + "\x00" + path, true
}

// taskPATH is the PATH a task's environment gives, or execvp's default.
func taskPATH(env []string) string {
	path := "/usr/local/bin:/usr/bin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	return path
}

// openOutput creates a task's stdout or stderr file and returns its
// descriptor, which the caller closes once the task has started unless it is
// devNull, returned for an empty path.
func openOutput(path string, devNull int, cred *syscall.Credential) (int, error) {
	if path == "" {
		return devNull, nil
	}
	fd, err := syscall.Open(path, syscall.O_WRONLY|syscall.O_CREAT|syscall.O_TRUNC|syscall.O_CLOEXEC, 0o644)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	if cred != nil {
		if err := syscall.Fchown(fd, int(cred.Uid), int(cred.Gid)); err != nil {
			syscall.Close(fd)
			return -1, &fs.PathError{Op: "chown", Path: path, Err: err}
		}
	}
	return fd, nil
}

// killGroup signals a task's process group. It refuses the groups that
// kill(2) would read as "everyone": a corrupt record must not take down the
// spawner's own group, or the machine.
func killGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		syscall.Kill(-pgid, sig)
	}
}

// exitStatus fills the outcome fields of e from what wait4 returned.
func exitStatus(e *Exit, ws syscall.WaitStatus, ru *syscall.Rusage) {
	switch {
	case ws.Exited():
		e.ExitCode = ws.ExitStatus()
	case ws.Signaled():
		e.ExitCode = -1
		e.Signal = int(ws.Signal())
	}
	e.UserCPU = time.Duration(ru.Utime.Nano())
	e.SysCPU = time.Duration(ru.Stime.Nano())
	e.MaxRSS = ru.Maxrss * 1024
}
