package spawner

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// record is one line of the journal: the state of a task from its start
// until its Exit is acknowledged.
type record struct {
	ID   string
	PID  int `json:",omitempty"`
	PGID int `json:",omitempty"`
	// Boot and StartedBy tell the task from a later process with its pid,
	// which runs in a later boot or starts after StartedBy: the boot clock
	// just after the fork, in the clock ticks of /proc/PID/stat field 22.
	Boot      string    `json:",omitempty"`
	StartedBy uint64    `json:",omitempty"`
	StartedAt time.Time `json:",omitzero"`
	Exit      *Exit     `json:",omitempty"` // set once the task has ended
	Acked     bool      `json:",omitempty"` // the client has the Exit: forget the task
}

const journalFile = "tasks.journal"

// journal keeps the records in the state directory as an append-only file of
// JSON lines, one per change, rewritten to the live records once mostly
// superseded. An append is one write(2) on any file system, where a file per
// task costs a create, a rename and an unlink, each hundreds of microseconds
// on some disks. There is no fsync: the journal must survive a spawner crash,
// not a machine crash, so a tmpfs such as /run is the best place for it.
type journal struct {
	path string

	mu       sync.Mutex
	f        *os.File
	size     int64             // bytes in f
	live     map[string][]byte // the latest line of each task not yet acknowledged
	liveSize int64             // bytes in live
}

// readJournal returns the latest record of each task in dir's journal whose
// exit is not acknowledged, in the order they were first recorded.
func readJournal(dir string) ([]*record, error) {
	f, err := os.Open(filepath.Join(dir, journalFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading journal: %w", err)
	}
	defer f.Close()
	latest := make(map[string]*record)
	var order []string
	sc := newFrameScanner(f)
	for sc.Scan() {
		rec := new(record)
		if err := json.Unmarshal(sc.Bytes(), rec); err != nil || rec.ID == "" {
			log.Printf("spawner: skipping journal line %.100q", sc.Bytes())
			continue
		}
		if rec.Acked {
			delete(latest, rec.ID)
			continue
		}
		if _, ok := latest[rec.ID]; !ok {
			order = append(order, rec.ID)
		}
		latest[rec.ID] = rec
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading journal: %w", err)
	}
	recs := make([]*record, 0, len(latest))
	for _, id := range order {
		if rec, ok := latest[id]; ok {
			recs = append(recs, rec)
			delete(latest, id) // an ID acknowledged and started again is in order twice
		}
	}
	return recs, nil
}

// createJournal starts a journal in dir holding recs, replacing any earlier one.
func createJournal(dir string, recs []*record) (*journal, error) {
	j := &journal{path: filepath.Join(dir, journalFile), live: make(map[string][]byte, len(recs))}
	for _, rec := range recs {
		line := encodeRecord(rec)
		j.live[rec.ID] = line
		j.liveSize += int64(len(line))
	}
	if err := j.rewrite(); err != nil {
		return nil, err
	}
	return j, nil
}

func encodeRecord(rec *record) []byte {
	return append(appendRecord(nil, rec), '\n')
}

// put records rec as the latest state of its task.
func (j *journal) put(rec *record) error {
	line := encodeRecord(rec)
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.append(line); err != nil {
		return err
	}
	j.liveSize += int64(len(line) - len(j.live[rec.ID]))
	j.live[rec.ID] = line
	return j.compact()
}

// forget records that the exits of ids have been acknowledged.
func (j *journal) forget(ids []string) error {
	var lines []byte
	for _, id := range ids {
		lines = append(appendRecord(lines, &record{ID: id, Acked: true}), '\n')
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.append(lines); err != nil {
		return err
	}
	for _, id := range ids {
		j.liveSize -= int64(len(j.live[id]))
		delete(j.live, id)
	}
	return j.compact()
}

func (j *journal) append(b []byte) error {
	n, err := j.f.Write(b)
	j.size += int64(n)
	if err != nil {
		return fmt.Errorf("writing journal: %w", err)
	}
	return nil
}

// compact rewrites the journal once it is at least 1 MiB and three quarters
// superseded, which keeps rewriting to a small share of the writes.
func (j *journal) compact() error {
	if j.size < 1<<20 || j.size < 4*j.liveSize {
		return nil
	}
	return j.rewrite()
}

// rewrite replaces the file with the live lines alone; j.mu must be held.
func (j *journal) rewrite() error {
	tmp := j.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("rewriting journal: %w", err)
	}
	buf := make([]byte, 0, j.liveSize)
	for _, line := range j.live {
		buf = append(buf, line...)
	}
	if _, err := f.Write(buf); err != nil {
		f.Close()
		return fmt.Errorf("rewriting journal: %w", err)
	}
	if err := os.Rename(tmp, j.path); err != nil {
		f.Close()
		return fmt.Errorf("rewriting journal: %w", err)
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.size = f, int64(len(buf))
	return nil
}

func (j *journal) close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}
