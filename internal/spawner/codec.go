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
