package spawner

import (
	"encoding/json"
	"strconv"
	"syscall"
	"time"
)

// Hand-written encoders for the frames and journal lines written for every
// task: a spawn, its start and exit records, its exit frame and its
// acknowledgement. encoding/json reflects over each value and was a quarter
// of the spawner's CPU for short tasks (27 % of a profile of 10,000 `true`
// tasks, 127 µs a task). They write what json.Marshal writes for the same
// value, byte for byte (TestCodecMatchesJSON and FuzzCodec hold them to it),
// so the format on the socket and in the journal is unchanged and either
// side may be an older binary.

// appendString appends s as a JSON string. Strings of printable ASCII other
// than the characters JSON or json.Marshal escape are copied; anything else
// is left to json.Marshal, which knows the escapes.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // cannot fail for a string
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendTime appends t as json.Marshal does: RFC 3339 with nanoseconds, for
// the years 0-9999 it accepts (time.Now and parsed records are in them).
func appendTime(b []byte, t time.Time) []byte {
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendBool(b []byte, v bool) []byte {
	return strconv.AppendBool(b, v)
}

func appendInt(b []byte, v int64) []byte {
	return strconv.AppendInt(b, v, 10)
}

// field appends the key of a field that follows another.
func field(b []byte, key string) []byte {
	b = append(b, ',', '"')
	b = append(b, key...)
	return append(b, '"', ':')
}

// appendExit appends e as json.Marshal(e) would.
func appendExit(b []byte, e *Exit) []byte {
	b = append(b, `{"ID":`...)
	b = appendString(b, e.ID)
	b = appendInt(field(b, "PID"), int64(e.PID))
	b = appendInt(field(b, "ExitCode"), int64(e.ExitCode))
	b = appendInt(field(b, "Signal"), int64(e.Signal))
	b = appendBool(field(b, "TimedOut"), e.TimedOut)
	b = appendBool(field(b, "Killed"), e.Killed)
	b = appendBool(field(b, "Lost"), e.Lost)
	b = appendString(field(b, "StartErr"), e.StartErr)
	b = appendTime(field(b, "StartedAt"), e.StartedAt)
	b = appendTime(field(b, "EndedAt"), e.EndedAt)
	b = appendInt(field(b, "UserCPU"), int64(e.UserCPU))
	b = appendInt(field(b, "SysCPU"), int64(e.SysCPU))
	b = appendInt(field(b, "MaxRSS"), e.MaxRSS)
	if e.Written != nil {
		b = appendInt(append(field(b, "Written"), '['), e.Written[0])
		b = append(appendInt(append(b, ','), e.Written[1]), ']')
	}
	if e.Next != "" {
		b = appendString(field(b, "Next"), e.Next)
	}
	return append(b, '}')
}

// appendRecord appends rec as json.Marshal(rec) would.
func appendRecord(b []byte, rec *record) []byte {
	b = append(b, `{"ID":`...)
	b = appendString(b, rec.ID)
	if rec.PID != 0 {
		b = appendInt(field(b, "PID"), int64(rec.PID))
	}
	if rec.PGID != 0 {
		b = appendInt(field(b, "PGID"), int64(rec.PGID))
	}
	if rec.Boot != "" {
		b = appendString(field(b, "Boot"), rec.Boot)
	}
	if rec.StartedBy != 0 {
		b = strconv.AppendUint(field(b, "StartedBy"), rec.StartedBy, 10)
	}
	if !rec.StartedAt.IsZero() {
		b = appendTime(field(b, "StartedAt"), rec.StartedAt)
	}
	if rec.Exit != nil {
		b = appendExit(field(b, "Exit"), rec.Exit)
	}
	if rec.Acked {
		b = append(field(b, "Acked"), "true"...)
	}
	return append(b, '}')
}

// appendCredential appends c as json.Marshal(c) would.
func appendCredential(b []byte, c *syscall.Credential) []byte {
	if c == nil {
		return append(b, "null"...)
	}
	b = strconv.AppendUint(append(b, `{"Uid":`...), uint64(c.Uid), 10)
	b = strconv.AppendUint(field(b, "Gid"), uint64(c.Gid), 10)
	b = field(b, "Groups")
	if c.Groups == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, g := range c.Groups {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendUint(b, uint64(g), 10)
		}
		b = append(b, ']')
	}
	b = appendBool(field(b, "NoSetGroups"), c.NoSetGroups)
	return append(b, '}')
}

// appendSpawn appends r as json.Marshal(r) would.
func appendSpawn(b []byte, r *SpawnRequest) []byte {
	b = append(b, `{"ID":`...)
	b = appendString(b, r.ID)
	b = appendStrings(field(b, "Argv"), r.Argv)
	b = appendStrings(field(b, "Env"), r.Env)
	if r.Base {
		b = append(field(b, "Base"), "true"...)
	}
	b = appendString(field(b, "Dir"), r.Dir)
	b = appendString(field(b, "Stdout"), r.Stdout)
	b = appendString(field(b, "Stderr"), r.Stderr)
	b = appendInt(field(b, "MaxWallClock"), int64(r.MaxWallClock))
	b = appendInt(field(b, "Grace"), int64(r.Grace))
	b = appendCredential(field(b, "Credential"), r.Credential)
	if r.After != "" {
		b = appendString(field(b, "After"), r.After)
	}
	return append(b, '}')
}

// appendFrame appends f and a newline as json.Marshal would, when f is one
// of the frames sent per task; ok is false for any other frame.
func appendFrame(b []byte, f *frame) (_ []byte, ok bool) {
	if f.Hello != 0 || f.Features != nil || f.Base != nil || f.Kill != nil || f.List != 0 || f.Running != nil {
		return b, false
	}
	switch {
	case f.Exit != nil && f.Spawn == nil && f.Ack == nil:
		b = appendExit(append(b, `{"exit":`...), f.Exit)
	case f.Spawn != nil && f.Exit == nil && f.Ack == nil:
		b = appendSpawn(append(b, `{"spawn":`...), f.Spawn)
	case len(f.Ack) > 0 && f.Exit == nil && f.Spawn == nil:
		b = appendStrings(append(b, `{"ack":`...), f.Ack)
	default:
		return b, false
	}
	return append(b, '}', '\n'), true
}

// decodeFrame decodes one line into f as json.Unmarshal would. The frames
// sent per task, as the encoders above write them, are read by a strict
// scanner; anything else (another frame, whitespace, an escaped or
// non-ASCII string, a field an older or newer binary adds) goes to
// encoding/json.
func decodeFrame(line []byte, f *frame) error {
	d := scanner{b: line}
	switch {
	case d.take(`{"exit":`):
		f.Exit = new(Exit)
		d.exit(f.Exit)
	case d.take(`{"spawn":`):
		f.Spawn = new(SpawnRequest)
		d.spawn(f.Spawn)
	case d.take(`{"ack":`):
		f.Ack = d.strings()
	default:
		d.bad = true
	}
	if d.lit("}"); d.bad || len(d.b) != 0 {
		*f = frame{}
		return json.Unmarshal(line, f)
	}
	return nil
}

// scanner reads JSON in the exact layout the encoders above write. The
// first thing out of place sets bad, and every later read returns zero.
type scanner struct {
	b   []byte
	bad bool
}

// take consumes s if the input starts with it.
func (d *scanner) take(s string) bool {
	if d.bad || len(d.b) < len(s) || string(d.b[:len(s)]) != s {
		return false
	}
	d.b = d.b[len(s):]
	return true
}

// lit consumes s, which must come next.
func (d *scanner) lit(s string) {
	if !d.take(s) {
		d.bad = true
	}
}

// key consumes a field's key after the first: `,"key":`.
func (d *scanner) key(k string) {
	d.lit(",\"")
	d.lit(k)
	d.lit("\":")
}

// opt consumes an optional field's key and reports whether it is there.
func (d *scanner) opt(k string) bool {
	if d.bad || len(d.b) < len(k)+4 || d.b[0] != ',' || d.b[1] != '"' || string(d.b[2:2+len(k)]) != k || d.b[2+len(k)] != '"' || d.b[3+len(k)] != ':' {
		return false
	}
	d.b = d.b[len(k)+4:]
	return true
}

// str reads a string of printable ASCII without escapes.
func (d *scanner) str() string {
	if d.bad || len(d.b) == 0 || d.b[0] != '"' {
		d.bad = true
		return ""
	}
	for i := 1; i < len(d.b); i++ {
		switch c := d.b[i]; {
		case c == '"':
			s := string(d.b[1:i])
			d.b = d.b[i+1:]
			return s
		case c < 0x20 || c >= 0x80 || c == '\\':
			d.bad = true
			return ""
		}
	}
	d.bad = true
	return ""
}

// digits returns the leading decimal digits, at most 19 of them: anything
// longer, or with a leading zero, is left to encoding/json.
func (d *scanner) digits() (uint64, bool) {
	n := 0
	var v uint64
	for n < len(d.b) && d.b[n] >= '0' && d.b[n] <= '9' {
		v = v*10 + uint64(d.b[n]-'0')
		n++
	}
	if n == 0 || n > 19 || n > 1 && d.b[0] == '0' {
		return 0, false
	}
	d.b = d.b[n:]
	return v, true
}

// int reads an integer in [lo, hi].
func (d *scanner) int(lo, hi int64) int64 {
	if d.bad {
		return 0
	}
	neg := d.take("-")
	u, ok := d.digits()
	v := int64(u)
	if neg {
		v = -v
	}
	if !ok || u > 1<<63-1 || v < lo || v > hi {
		d.bad = true
		return 0
	}
	return v
}

// uint reads an unsigned integer up to hi.
func (d *scanner) uint(hi uint64) uint64 {
	if d.bad {
		return 0
	}
	v, ok := d.digits()
	if !ok || v > hi {
		d.bad = true
		return 0
	}
	return v
}

func (d *scanner) bool() bool {
	if d.take("true") {
		return true
	}
	d.lit("false")
	return false
}

func (d *scanner) time() time.Time {
	s := d.str()
	if d.bad {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		d.bad = true
	}
	return t
}

func (d *scanner) strings() []string {
	if d.take("null") {
		return nil
	}
	d.lit("[")
	ss := []string{}
	if d.take("]") {
		return ss
	}
	for !d.bad {
		ss = append(ss, d.str())
		if d.take("]") {
			return ss
		}
		d.lit(",")
	}
	return nil
}

const maxInt = int64(^uint(0) >> 1)

func (d *scanner) exit(e *Exit) {
	d.lit(`{"ID":`)
	e.ID = d.str()
	d.key("PID")
	e.PID = int(d.int(-maxInt-1, maxInt))
	d.key("ExitCode")
	e.ExitCode = int(d.int(-maxInt-1, maxInt))
	d.key("Signal")
	e.Signal = int(d.int(-maxInt-1, maxInt))
	d.key("TimedOut")
	e.TimedOut = d.bool()
	d.key("Killed")
	e.Killed = d.bool()
	d.key("Lost")
	e.Lost = d.bool()
	d.key("StartErr")
	e.StartErr = d.str()
	d.key("StartedAt")
	e.StartedAt = d.time()
	d.key("EndedAt")
	e.EndedAt = d.time()
	d.key("UserCPU")
	e.UserCPU = time.Duration(d.int(-1<<63, 1<<63-1))
	d.key("SysCPU")
	e.SysCPU = time.Duration(d.int(-1<<63, 1<<63-1))
	d.key("MaxRSS")
	e.MaxRSS = d.int(-1<<63, 1<<63-1)
	if d.opt("Written") {
		e.Written = new([2]int64)
		d.lit("[")
		e.Written[0] = d.int(-1<<63, 1<<63-1)
		d.lit(",")
		e.Written[1] = d.int(-1<<63, 1<<63-1)
		d.lit("]")
	}
	if d.opt("Next") {
		e.Next = d.str()
	}
	d.lit("}")
}

func (d *scanner) spawn(r *SpawnRequest) {
	d.lit(`{"ID":`)
	r.ID = d.str()
	d.key("Argv")
	r.Argv = d.strings()
	d.key("Env")
	r.Env = d.strings()
	if d.opt("Base") {
		r.Base = d.bool()
	}
	d.key("Dir")
	r.Dir = d.str()
	d.key("Stdout")
	r.Stdout = d.str()
	d.key("Stderr")
	r.Stderr = d.str()
	d.key("MaxWallClock")
	r.MaxWallClock = time.Duration(d.int(-1<<63, 1<<63-1))
	d.key("Grace")
	r.Grace = time.Duration(d.int(-1<<63, 1<<63-1))
	d.key("Credential")
	if !d.take("null") {
		c := new(syscall.Credential)
		d.lit(`{"Uid":`)
		c.Uid = uint32(d.uint(1<<32 - 1))
		d.key("Gid")
		c.Gid = uint32(d.uint(1<<32 - 1))
		d.key("Groups")
		if !d.take("null") {
			d.lit("[")
			c.Groups = []uint32{}
			for !d.bad && !d.take("]") {
				if len(c.Groups) > 0 {
					d.lit(",")
				}
				c.Groups = append(c.Groups, uint32(d.uint(1<<32-1)))
			}
		}
		d.key("NoSetGroups")
		c.NoSetGroups = d.bool()
		d.lit("}")
		r.Credential = c
	}
	if d.opt("After") {
		r.After = d.str()
	}
	d.lit("}")
}
