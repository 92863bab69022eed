package proto

import (
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// The frames of the task path (assignments one way, start and finish
// reports the other) are decoded here without reflection: the general
// decoder took 8 % of the server's CPU and a quarter of the simulated
// agents' in the stubbed benchmark, this one a quarter of that. The fast
// path takes only the shapes Marshal produces for those frames; any other
// key or type (a welcome, templates, log chunks, tags, indefinite lengths)
// sends the whole frame to the general decoder, and both decode a frame to
// the same value (FuzzFastDecode checks this).

// fastDecoder reads CBOR from b; ok turns false at the first thing the fast
// path does not take. Text strings repeat within a frame (job IDs, template
// keys), so the last one is reused when the same bytes come again.
type fastDecoder struct {
	b    []byte
	ok   bool
	last string
}

// head reads an item's major type and argument.
func (d *fastDecoder) head() (major byte, arg uint64) {
	if !d.ok || len(d.b) == 0 {
		d.ok = false
		return 0, 0
	}
	ib := d.b[0]
	major, ai := ib>>5, ib&31
	n := 0
	switch {
	case ai < 24:
		arg = uint64(ai)
	case ai == 24:
		n = 1
	case ai == 25:
		n = 2
	case ai == 26:
		n = 4
	case ai == 27:
		n = 8
	default: // reserved, or an indefinite length
		d.ok = false
		return 0, 0
	}
	if len(d.b) < 1+n {
		d.ok = false
		return 0, 0
	}
	switch n {
	case 1:
		arg = uint64(d.b[1])
	case 2:
		arg = uint64(binary.BigEndian.Uint16(d.b[1:]))
	case 4:
		arg = uint64(binary.BigEndian.Uint32(d.b[1:]))
	case 8:
		arg = binary.BigEndian.Uint64(d.b[1:])
	}
	d.b = d.b[1+n:]
	return major, arg
}

// null consumes a CBOR null if one comes next.
func (d *fastDecoder) null() bool {
	if d.ok && len(d.b) > 0 && d.b[0] == 0xf6 {
		d.b = d.b[1:]
		return true
	}
	return false
}

func (d *fastDecoder) uint64() uint64 {
	major, arg := d.head()
	if major != 0 {
		d.ok = false
		return 0
	}
	return arg
}

func (d *fastDecoder) int64() int64 {
	major, arg := d.head()
	if (major != 0 && major != 1) || arg > math.MaxInt64 {
		d.ok = false
		return 0
	}
	if major == 1 {
		return -1 - int64(arg)
	}
	return int64(arg)
}

func (d *fastDecoder) int() int {
	v := d.int64()
	if v < math.MinInt || v > math.MaxInt {
		d.ok = false
		return 0
	}
	return int(v)
}

func (d *fastDecoder) bool() bool {
	if d.ok && len(d.b) > 0 && (d.b[0] == 0xf4 || d.b[0] == 0xf5) {
		v := d.b[0] == 0xf5
		d.b = d.b[1:]
		return v
	}
	d.ok = false
	return false
}

// raw returns the content of a text (major 3) or byte (major 2) string.
func (d *fastDecoder) raw(want byte) []byte {
	major, n := d.head()
	if major != want || n > uint64(len(d.b)) {
		d.ok = false
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *fastDecoder) string() string {
	s := d.raw(3)
	if !d.ok {
		return ""
	}
	if string(s) == d.last {
		return d.last
	}
	if !utf8.Valid(s) {
		d.ok = false
		return ""
	}
	d.last = string(s)
	return d.last
}

// bytes reads a byte string (a copy) or null (nil).
func (d *fastDecoder) bytes() []byte {
	if d.null() {
		return nil
	}
	s := d.raw(2)
	if !d.ok {
		return nil
	}
	return append(make([]byte, 0, len(s)), s...)
}

// array reads the head of an array of n elements: a struct encoded with
// toarray.
func (d *fastDecoder) array(n uint64) {
	if major, arg := d.head(); major != 4 || arg != n {
		d.ok = false
	}
}

// slice reads the head of an array for a slice: its length, -1 for null.
func (d *fastDecoder) slice() int {
	if d.null() {
		return -1
	}
	major, n := d.head()
	if major != 4 || n > uint64(len(d.b)) { // every element takes a byte at least
		d.ok = false
		return 0
	}
	return int(n)
}

func (d *fastDecoder) ref(r *Ref) {
	d.array(3)
	r.Job, r.Task, r.Attempt = d.string(), d.string(), d.int()
}

// mapKeys calls field for each key of a map (the encoding of a struct) until
// the decoder fails; field reads the value. A key seen twice fails.
func (d *fastDecoder) mapKeys(field func(key []byte) (bit uint, ok bool)) {
	major, n := d.head()
	if major != 5 || n > uint64(len(d.b)) {
		d.ok = false
		return
	}
	var seen uint
	for range n {
		key := d.raw(3)
		if !d.ok {
			return
		}
		bit, ok := field(key)
		if !ok || seen&bit != 0 {
			d.ok = false
			return
		}
		seen |= bit
	}
}

// decodeFast decodes a ToServer or ToAgent frame into v and reports
// whether it could; when it could not, v is as it was. It takes only a zero
// v (the general decoder merges a frame into what v holds).
func decodeFast(b []byte, v any) bool {
	d := &fastDecoder{b: b, ok: true}
	switch f := v.(type) {
	case *ToServer:
		if f.Seq != 0 || f.Hello != nil || f.Started != nil || f.Preparing != nil || f.Finished != nil ||
			f.Revoked != nil || f.Logs != nil || f.StartTaskDone != nil {
			return false
		}
		defer func() {
			if !d.ok || len(d.b) != 0 {
				*f = ToServer{}
			}
		}()
		d.mapKeys(func(key []byte) (uint, bool) {
			switch string(key) {
			case "Seq":
				f.Seq = d.uint64()
				return 1 << 0, true
			case "Started":
				f.Started = d.started()
				return 1 << 1, true
			case "Preparing":
				f.Preparing = d.started()
				return 1 << 2, true
			case "Finished":
				f.Finished = d.finished()
				return 1 << 3, true
			case "Revoked":
				f.Revoked = d.revoked()
				return 1 << 4, true
			case "Hello":
				return 1 << 5, d.null()
			case "Logs":
				return 1 << 6, d.null()
			case "StartTaskDone":
				return 1 << 7, d.null()
			}
			return 0, false
		})
	case *ToAgent:
		if f.Seq != 0 || f.AckReports != 0 || f.Welcome != nil || f.Error != "" || f.Templates != nil ||
			f.Assign != nil || f.Revoke != nil || f.Kill != nil || f.LogReqs != nil || f.Release != nil {
			return false
		}
		defer func() {
			if !d.ok || len(d.b) != 0 {
				*f = ToAgent{}
			}
		}()
		d.mapKeys(func(key []byte) (uint, bool) {
			switch string(key) {
			case "Seq":
				f.Seq = d.uint64()
				return 1 << 0, true
			case "AckReports":
				f.AckReports = d.uint64()
				return 1 << 1, true
			case "Error":
				f.Error = d.string()
				return 1 << 2, true
			case "Assign":
				f.Assign = d.assign()
				return 1 << 3, true
			case "Revoke":
				f.Revoke = d.refs()
				return 1 << 4, true
			case "Kill":
				f.Kill = d.refs()
				return 1 << 5, true
			case "Welcome":
				return 1 << 6, d.null()
			case "Templates":
				return 1 << 7, d.null()
			case "LogReqs":
				return 1 << 8, d.null()
			case "Release":
				return 1 << 9, d.null()
			}
			return 0, false
		})
	default:
		return false
	}
	return d.ok && len(d.b) == 0
}

// items makes a slice for an array of n elements (nil for null) and reads
// each element with read until the decoder fails.
func items[T any](d *fastDecoder, read func(*T)) []T {
	n := d.slice()
	if n < 0 || !d.ok {
		return nil
	}
	out := make([]T, n)
	for i := range out {
		if read(&out[i]); !d.ok {
			return nil
		}
	}
	return out
}

func (d *fastDecoder) started() []Started {
	return items(d, func(s *Started) {
		d.array(2)
		d.ref(&s.Ref)
		s.At = d.int64()
	})
}

func (d *fastDecoder) finished() []Finished {
	return items(d, func(f *Finished) {
		d.array(16)
		d.ref(&f.Ref)
		f.ExitCode, f.Signal = d.int(), d.int()
		f.TimedOut, f.Lost = d.bool(), d.bool()
		f.StartErr = d.string()
		f.StartedAt, f.EndedAt = d.int64(), d.int64()
		f.UserCPU, f.SysCPU, f.MaxRSS = d.int64(), d.int64(), d.int64()
		f.Stdout, f.Stderr = d.bytes(), d.bytes()
		f.StagingErr = d.string()
		f.LogBlobs, f.PrepFailed = d.bool(), d.bool()
	})
}

func (d *fastDecoder) revoked() []RevokeAnswer {
	return items(d, func(r *RevokeAnswer) {
		d.array(2)
		d.ref(&r.Ref)
		r.Revoked = d.bool()
	})
}

func (d *fastDecoder) assign() []Assign {
	return items(d, func(a *Assign) {
		d.array(5)
		d.ref(&a.Ref)
		a.Template, a.Index, a.Line, a.HasLine = d.string(), d.int(), d.string(), d.bool()
	})
}

func (d *fastDecoder) refs() []Ref {
	return items(d, d.ref)
}
