package spawner

import (
	"bytes"
	"encoding/json"
	"reflect"
	"syscall"
	"testing"
	"time"
)

// codecCases are values whose hand encoding must equal json.Marshal's: zero
// values, every optional field set, and strings that need escaping.
func codecCases() []any {
	at := time.Date(2026, 11, 23, 8, 30, 1, 123456789, time.UTC)
	full := &Exit{
		ID: "job/t-1/1", PID: 4242, ExitCode: -1, Signal: 9, TimedOut: true, Killed: true, Lost: true,
		StartErr: `exec: "nope": <not found> & "quoted" \ back`, StartedAt: at, EndedAt: at.Add(time.Millisecond),
		UserCPU: time.Millisecond, SysCPU: 2 * time.Microsecond, MaxRSS: 1 << 40,
		Written: &[2]int64{0, 1 << 33}, Next: "job/t-2/1",
	}
	return []any{
		&Exit{},
		full,
		&Exit{ID: "ünïcode\u2028\x00\xff", StartedAt: at.In(time.FixedZone("x", -3*3600))},
		&record{},
		&record{ID: "j/t/1", Acked: true},
		&record{ID: "j/t/1", PID: 1, PGID: 1, Boot: "b0a1-\t", StartedBy: 1<<64 - 1, StartedAt: at},
		&record{ID: "j/t/1", PID: 7, StartedAt: at, Exit: full},
		&SpawnRequest{},
		&SpawnRequest{
			ID: "j/t/1", Argv: []string{"sh", "-c", `echo "$X" > out && ls | wc`}, Env: []string{"PATH=/bin", "A=é"},
			Base: true, Dir: "/d/wd", Stdout: "/d/stdout.txt", Stderr: "/d/stderr.txt",
			MaxWallClock: time.Hour, Grace: time.Second, After: "j/t/0",
			Credential: &syscall.Credential{Uid: 1000, Gid: 1000, Groups: []uint32{4, 27, 4294967295}, NoSetGroups: true},
		},
		&SpawnRequest{ID: "x", Argv: []string{}, Env: []string{}, Credential: &syscall.Credential{Groups: []uint32{}}},
		&frame{Exit: full},
		&frame{Spawn: &SpawnRequest{ID: "j/t/1", Argv: []string{"true"}}},
		&frame{Ack: []string{"j/t/1", "j/t/2"}},
	}
}

func handEncode(t testing.TB, v any) []byte {
	switch v := v.(type) {
	case *Exit:
		return appendExit(nil, v)
	case *record:
		return appendRecord(nil, v)
	case *SpawnRequest:
		return appendSpawn(nil, v)
	case *frame:
		b, ok := appendFrame(nil, v)
		if !ok {
			t.Fatalf("appendFrame refused %+v", v)
		}
		return bytes.TrimSuffix(b, []byte("\n"))
	}
	t.Fatalf("no hand encoder for %T", v)
	return nil
}

func TestCodecMatchesJSON(t *testing.T) {
	for _, v := range codecCases() {
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if got := handEncode(t, v); !bytes.Equal(got, want) {
			t.Errorf("%T:\n got %s\nwant %s", v, got, want)
		}
	}
}

// TestFramesLeftToJSON: frames that are not per-task ones, or carry more
// than one message, go through encoding/json as before.
func TestFramesLeftToJSON(t *testing.T) {
	for _, f := range []*frame{
		{Hello: 1},
		{Ack: []string{}},
		{List: 3},
		{Base: []string{"A=1"}},
		{Kill: &killRequest{ID: "x"}},
		{Exit: &Exit{}, Ack: []string{"x"}},
		{Spawn: &SpawnRequest{}, Running: &runningReply{}},
	} {
		if _, ok := appendFrame(nil, f); ok {
			t.Errorf("appendFrame encoded %+v", f)
		}
	}
}

// checkDecode holds decodeFrame to json.Unmarshal for line, and reports
// whether the strict scanner took it rather than encoding/json.
func checkDecode(t *testing.T, line []byte) (fast bool) {
	t.Helper()
	var got, want frame
	gotErr, wantErr := decodeFrame(line, &got), json.Unmarshal(line, &want)
	if (gotErr == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v, %v\nwant %+v, %v", line, got, gotErr, want, wantErr)
	}
	d := scanner{b: line}
	return (d.take(`{"exit":`) || d.take(`{"spawn":`) || d.take(`{"ack":`)) && plainDecode(line)
}

// plainDecode reports whether the strict scanner alone decodes line.
func plainDecode(line []byte) bool {
	var f frame
	d := scanner{b: line}
	switch {
	case d.take(`{"exit":`):
		d.exit(new(Exit))
	case d.take(`{"spawn":`):
		d.spawn(new(SpawnRequest))
	case d.take(`{"ack":`):
		f.Ack = d.strings()
	default:
		return false
	}
	d.lit("}")
	return !d.bad && len(d.b) == 0
}

// TestDecodeFrames: the frames the encoders write decode as
// encoding/json decodes them, by the strict scanner when every string is
// plain ASCII; other frames and near misses go to encoding/json.
func TestDecodeFrames(t *testing.T) {
	for _, v := range codecCases() {
		f, ok := v.(*frame)
		if !ok {
			continue
		}
		line, _ := appendFrame(nil, f)
		line = bytes.TrimSuffix(line, []byte("\n"))
		fast := checkDecode(t, line)
		if want := f.Exit == nil || f.Exit.StartErr == ""; fast != want {
			t.Errorf("%s: decoded by the scanner %v, want %v", line, fast, want)
		}
	}
	plain := &SpawnRequest{ID: "j/t/1", Argv: []string{"true"}, Env: []string{}, Base: true, After: "j/t/0",
		Credential: &syscall.Credential{Uid: 7, Gid: 8, Groups: []uint32{1, 2}}}
	line, _ := appendFrame(nil, &frame{Spawn: plain})
	line = bytes.TrimSuffix(line, []byte("\n"))
	if !checkDecode(t, line) {
		t.Errorf("%s was not decoded by the scanner", line)
	}
	for _, s := range []string{
		`{"hello":1,"features":["after"]}`,
		`{"ack":["a","b"]}`,
		`{"ack":null}`,
		`{"ack":[]}`,
		`{"ack":["a" ,"b"]}`,
		`{"ack":["a"],"list":3}`,
		`{"exit":null}`,
		`{"exit":{"id":"x"}}`,
		`{"exit":{"ID":"x","PID":01}}`,
		`{"exit":{"ID":"x","PID":-9223372036854775808,"ExitCode":0,"Signal":0,"TimedOut":false,"Killed":false,"Lost":false,"StartErr":"","StartedAt":"0001-01-01T00:00:00Z","EndedAt":"2026-11-23T09:00:00.5+01:00","UserCPU":0,"SysCPU":0,"MaxRSS":0}}`,
		`{"exit":{"ID":"x","PID":99999999999999999999,"ExitCode":0,"Signal":0,"TimedOut":false,"Killed":false,"Lost":false,"StartErr":"","StartedAt":"0001-01-01T00:00:00Z","EndedAt":"0001-01-01T00:00:00Z","UserCPU":0,"SysCPU":0,"MaxRSS":0}}`,
		`{"spawn":{"ID":"x","Argv":["a\u0062"],"Env":null,"Dir":"","Stdout":"","Stderr":"","MaxWallClock":0,"Grace":0,"Credential":{"Uid":4294967296,"Gid":0,"Groups":null,"NoSetGroups":false}}}`,
		`{"spawn":{"ID":"x","Argv":["a"],"Env":null,"Dir":"","Stdout":"","Stderr":"","MaxWallClock":0,"Grace":0,"Credential":{"Uid":1,"Gid":0,"Groups":[1,],"NoSetGroups":false}}}`,
		`{"spawn":{"ID":"x","Argv":["a"],"Env":null,"Dir":"","Stdout":"","Stderr":"","MaxWallClock":0,"Grace":0,"Credential":null,"After":"y","Extra":1}}`,
		`{"exit":{}}}`,
		`not json`,
	} {
		checkDecode(t, []byte(s))
	}
}

// FuzzCodec holds the hand encoders to json.Marshal, and decodeFrame to
// json.Unmarshal, for arbitrary strings and numbers.
func FuzzCodec(f *testing.F) {
	f.Add("j/t/1", "sh\x00-c", "A=\"1\"", int64(1), int64(-1), uint64(7), true, int64(1e18))
	f.Add("", "<&>", "\u2028\xff", int64(0), int64(0), uint64(0), false, int64(0))
	f.Add("x", `{"exit":{"ID":"x","PID":1,"ExitCode":0,"Signal":0,"TimedOut":false,"Killed":false,"Lost":false,"StartErr":"","StartedAt":"2026-11-23T09:00:00.123Z","EndedAt":"2026-11-23T09:00:00.5+01:00","UserCPU":0,"SysCPU":0,"MaxRSS":0,"Written":[0,0]}}`, "", int64(2), int64(3), uint64(4), true, int64(5))
	f.Add("x", `{"spawn":{"ID":"x","Argv":["a"],"Env":[],"Base":true,"Dir":"","Stdout":"","Stderr":"","MaxWallClock":0,"Grace":0,"Credential":{"Uid":1,"Gid":0,"Groups":[1,2],"NoSetGroups":false},"After":"y"}}`, "", int64(2), int64(3), uint64(4), true, int64(5))
	f.Fuzz(func(t *testing.T, id, arg, env string, n, code int64, ticks uint64, flag bool, ns int64) {
		at := time.Unix(0, ns%(1<<62)).UTC()
		exit := &Exit{
			ID: id, PID: int(n), ExitCode: int(code), Signal: int(n >> 3), TimedOut: flag, Killed: !flag, Lost: flag,
			StartErr: arg + env, StartedAt: at, EndedAt: at, UserCPU: time.Duration(n), SysCPU: time.Duration(code),
			MaxRSS: n ^ code, Next: env,
		}
		if flag {
			exit.Written = &[2]int64{n, code}
		}
		var groups []uint32
		if flag {
			groups = []uint32{uint32(n), uint32(ticks)}
		}
		spawn := &SpawnRequest{
			ID: id, Argv: []string{arg, env}, Env: []string{env}, Base: flag, Dir: arg, Stdout: env, Stderr: id,
			MaxWallClock: time.Duration(n), Grace: time.Duration(code), After: arg,
			Credential: &syscall.Credential{Uid: uint32(n), Gid: uint32(code), Groups: groups, NoSetGroups: flag},
		}
		for _, v := range []any{
			exit,
			&record{ID: id, PID: int(n), PGID: int(code), Boot: env, StartedBy: ticks, StartedAt: at, Exit: exit, Acked: flag},
			spawn,
			&frame{Ack: []string{id, arg}},
		} {
			want, err := json.Marshal(v)
			if err != nil {
				t.Skip(err) // a time json.Marshal refuses; the spawner never writes one
			}
			if got := handEncode(t, v); !bytes.Equal(got, want) {
				t.Fatalf("%T:\n got %s\nwant %s", v, got, want)
			}
		}
		for _, f := range []*frame{{Exit: exit}, {Spawn: spawn}, {Ack: []string{id, arg}}} {
			line, _ := appendFrame(nil, f)
			checkDecode(t, bytes.TrimSuffix(line, []byte("\n")))
		}
		checkDecode(t, []byte(arg)) // whatever the bytes, the same as encoding/json
	})
}
