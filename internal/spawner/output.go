package spawner

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"syscall"
	"time"
)

// A task's stdout and stderr go to pipes whose other ends are copied to
// their files, each file created at its first byte. Most short tasks write
// nothing, and creating two files per task cost more than the rest of a
// spawn on a disk with slow metadata (130-700 µs a file on this project's
// machines); a pipe costs a few microseconds.
//
// Nor are the pipes read while a short task runs. A goroutine parked on
// each read end cost, per stream, a registration with the runtime's
// poller and its removal, a read that finds nothing, and a wake-up at the
// end: 12 % of the spawner's profile over 10,000 `true` tasks, for
// streams that mostly carry nothing. So a task's pipes wait unread for its
// first outputWindow. A task that ends within it has each pipe read once,
// without blocking, when it is reaped: end of file, the usual case, means
// it wrote nothing and nothing else holds the pipe. Bytes, or a descendant
// that still holds the pipe, and any task that runs longer, get a copier
// goroutine per stream. A task that writes more than a pipe holds (64 KiB)
// within its first outputWindow waits that long at most, once.
const outputWindow = 20 * time.Millisecond

// stream is the read end of one of a task's output pipes, not yet handed
// to a copier.
type stream struct {
	fd   int // non-blocking; -1 when there is none (/dev/null), or no longer
	path string
	cred *syscall.Credential
}

// output returns the descriptor a task writes one output stream to: the
// write end of a pipe whose read end becomes t.streams[i]. An empty path
// means /dev/null.
func (s *server) output(t *task, i int, path string, cred *syscall.Credential) (int, error) {
	if path == "" {
		return s.devNull, nil
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_CLOEXEC); err != nil {
		return -1, fmt.Errorf("output pipe for %s: %w", path, err)
	}
	if err := syscall.SetNonblock(p[0], true); err != nil {
		syscall.Close(p[0])
		syscall.Close(p[1])
		return -1, err
	}
	t.streams[i] = stream{fd: p[0], path: path, cred: cred}
	return p[1], nil
}

func (s *server) closeOutput(fd int) {
	if fd != s.devNull {
		syscall.Close(fd)
	}
}

// copyLater hands the task's streams to copiers once it has run
// outputWindow, unless it is reaped first.
func (t *task) copyLater() {
	if t.streams[0].fd < 0 && t.streams[1].fd < 0 {
		return
	}
	t.handoff = time.AfterFunc(outputWindow, func() {
		t.outMu.Lock()
		defer t.outMu.Unlock()
		for i := range t.streams {
			t.copy(i, nil)
		}
	})
}

// copy starts a copier for stream i, if it is still open, with pre
// already read from it; t.outMu must be held.
func (t *task) copy(i int, pre []byte) {
	st := t.streams[i]
	if st.fd < 0 {
		return
	}
	t.streams[i].fd = -1
	r := os.NewFile(uintptr(st.fd), st.path)
	t.pending.Add(1)
	go func() {
		defer t.outputCopied()
		t.written[i] = copyOutput(r, st.path, st.cred, pre)
	}()
}

// settleOutput runs once the task is reaped. Each stream not yet handed
// over is read once without blocking: end of file closes it with nothing
// written; bytes, or a writer still holding it, hand it to a copier. Then
// it lets copied close once the copiers are done.
func (t *task) settleOutput() {
	if t.handoff != nil {
		t.handoff.Stop()
	}
	t.outMu.Lock()
	for i := range t.streams {
		fd := t.streams[i].fd
		if fd < 0 {
			continue
		}
		var buf [512]byte
		n, err := syscall.Read(fd, buf[:])
		for errors.Is(err, syscall.EINTR) {
			n, err = syscall.Read(fd, buf[:])
		}
		switch {
		case n == 0 && err == nil:
			syscall.Close(fd)
			t.streams[i].fd = -1
		case n > 0:
			t.copy(i, append([]byte(nil), buf[:n]...))
		default: // EAGAIN: a descendant still holds it (or an error the copier will meet)
			t.copy(i, nil)
		}
	}
	t.outMu.Unlock()
	t.outputCopied()
}

// closeStreams closes the streams of a task that did not start.
func (t *task) closeStreams() {
	for i := range t.streams {
		if fd := t.streams[i].fd; fd >= 0 {
			syscall.Close(fd)
			t.streams[i].fd = -1
		}
	}
}

// outputCopied counts down pending, closing copied at zero.
func (t *task) outputCopied() {
	if t.pending.Add(-1) == 0 {
		close(t.copied)
	}
}

// copyBufs holds the buffers of copyOutput, which would otherwise allocate
// 32 KiB per stream of every task.
var copyBufs = sync.Pool{New: func() any { return new([32 << 10]byte) }}

// copyOutput writes pre and then what it reads from a task's output pipe
// to path, until every writer has closed the pipe, and returns the bytes
// it got; the file is created only if there is something to write.
func copyOutput(r *os.File, path string, cred *syscall.Credential, pre []byte) (total int64) {
	defer r.Close()
	var out *os.File
	defer func() {
		if out != nil {
			out.Close()
		}
	}()
	// put writes b to the file, creating it first; on failure the rest of
	// the output is read and dropped.
	put := func(b []byte) bool {
		if out == nil {
			fd, err := openOutput(path, -1, cred)
			if err != nil {
				log.Printf("spawner: %v; output dropped", err)
				io.Copy(io.Discard, r)
				return false
			}
			out = os.NewFile(uintptr(fd), path)
		}
		if _, err := out.Write(b); err != nil {
			log.Printf("spawner: writing %s: %v; output dropped", path, err)
			io.Copy(io.Discard, r)
			return false
		}
		return true
	}
	total = int64(len(pre))
	if len(pre) > 0 && !put(pre) {
		return total
	}
	bp := copyBufs.Get().(*[32 << 10]byte)
	defer copyBufs.Put(bp)
	buf := bp[:]
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if n > 0 && !put(buf[:n]) {
			return total
		}
		if err != nil {
			return total
		}
	}
}
