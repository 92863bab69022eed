package sqlite

import (
	"encoding/binary"
	"errors"

	"github.com/lotehq/lote/internal/core"
)

// Task rows are written far more often than anything else (twice per task
// at least), so a task's record is one compact binary value rather than 21
// bound columns: binding and boxing the columns cost more than SQLite's
// write. The format is private to this package; its first byte is a version.

const taskCodecVersion = 2 // 2 added PreparingAt; 1 is still read

func encodeTask(b []byte, t *core.TaskRecord) []byte {
	b = append(b, taskCodecVersion)
	b = binary.AppendUvarint(b, uint64(t.GroupSeq))
	b = binary.AppendUvarint(b, uint64(t.Pos))
	b = binary.AppendUvarint(b, uint64(t.State))
	b = binary.AppendUvarint(b, uint64(t.Attempt))
	b = binary.AppendUvarint(b, uint64(t.Retries))
	b = binary.AppendUvarint(b, uint64(t.Requeues))
	b = appendString(b, t.ID)
	b = encodeAttempt(b, &t.Cur)
	b = binary.AppendUvarint(b, uint64(len(t.History)))
	for i := range t.History {
		b = encodeAttempt(b, &t.History[i])
	}
	return b
}

func encodeAttempt(b []byte, a *core.AttemptRecord) []byte {
	b = binary.AppendUvarint(b, uint64(a.Number))
	b = appendString(b, a.NodeID)
	for _, v := range [...]int64{a.AssignedAt, a.StartedAt, a.EndedAt, int64(a.Result), int64(a.Category),
		int64(a.ExitCode), int64(a.Signal), a.UserCPU, a.SysCPU, a.MaxRSS} {
		b = binary.AppendVarint(b, v)
	}
	b = appendString(b, a.Message)
	return binary.AppendVarint(b, a.PreparingAt)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

var errCorrupt = errors.New("corrupt task record")

type reader struct {
	b       []byte
	version byte
	err     error
	names   map[string]string // interned node names
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errCorrupt
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) int() int { return int(r.uvarint()) }

// name reads a string that many records repeat, interned.
func (r *reader) name() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errCorrupt
		return ""
	}
	s, ok := r.names[string(r.b[:n])]
	if !ok {
		s = string(r.b[:n])
		r.names[s] = s
	}
	r.b = r.b[n:]
	return s
}

func (r *reader) string() string {
	n := r.uvarint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errCorrupt
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

// taskDecoder decodes task records, sharing one string per node name: a
// million restored tasks name a few thousand nodes.
type taskDecoder struct {
	nodes map[string]string
}

func (d *taskDecoder) decode(b []byte, t *core.TaskRecord) error {
	if len(b) == 0 || b[0] < 1 || b[0] > taskCodecVersion {
		return errCorrupt
	}
	if d.nodes == nil {
		d.nodes = map[string]string{}
	}
	r := &reader{b: b[1:], version: b[0], names: d.nodes}
	t.GroupSeq, t.Pos = r.int(), r.int()
	t.State = core.TaskState(r.uvarint())
	t.Attempt, t.Retries, t.Requeues = r.int(), r.int(), r.int()
	t.ID = r.string()
	decodeAttempt(r, &t.Cur)
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		return errCorrupt
	}
	if n > 0 {
		t.History = make([]core.AttemptRecord, n)
		for i := range t.History {
			decodeAttempt(r, &t.History[i])
		}
	}
	if r.err == nil && len(r.b) != 0 {
		return errCorrupt
	}
	return r.err
}

func decodeAttempt(r *reader, a *core.AttemptRecord) {
	a.Number = r.int()
	a.NodeID = r.name()
	a.AssignedAt, a.StartedAt, a.EndedAt = r.varint(), r.varint(), r.varint()
	a.Result, a.Category = core.Result(r.varint()), core.Category(r.varint())
	a.ExitCode, a.Signal = int(r.varint()), int(r.varint())
	a.UserCPU, a.SysCPU, a.MaxRSS = r.varint(), r.varint(), r.varint()
	a.Message = r.string()
	if r.version >= 2 {
		a.PreparingAt = r.varint()
	}
}
