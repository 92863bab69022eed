package proto

import (
	"math"
	"math/rand"
	"reflect"
	"testing"
)

// frames are the frames the fast path must take (hot) and ones it must
// leave to the general decoder, built from a fixed seed.
func frames() (hot, cold []any) {
	rng := rand.New(rand.NewSource(1))
	strs := []string{"", "job-1", "job-1", "42", "tâche-ü", "t/0", "a\x00b"}
	str := func() string { return strs[rng.Intn(len(strs))] }
	ints := []int64{0, 1, -1, 23, 24, -25, 255, 256, 65535, 65536, math.MaxInt32 + 1, math.MaxInt64, math.MinInt64, -1 << 40}
	num := func() int64 { return ints[rng.Intn(len(ints))] }
	ref := func() Ref { return Ref{Job: str(), Task: str(), Attempt: int(num())} }
	bytes := func() []byte {
		switch rng.Intn(3) {
		case 0:
			return nil
		case 1:
			return []byte{}
		}
		return []byte("out\x00\xff")
	}
	size := func() int { return []int{-1, 0, 1, 3, 30}[rng.Intn(5)] }
	slice := func(n int, fill func(i int)) {
		for i := 0; i < n; i++ {
			fill(i)
		}
	}
	for range 200 {
		s := &ToServer{Seq: uint64(rng.Int63())}
		if n := size(); n >= 0 {
			s.Finished = make([]Finished, n)
			slice(n, func(i int) {
				s.Finished[i] = Finished{Ref: ref(), ExitCode: int(num()), Signal: int(num()), TimedOut: rng.Intn(2) == 0,
					Lost: rng.Intn(2) == 0, StartErr: str(), StartedAt: num(), EndedAt: num(), UserCPU: num(), SysCPU: num(),
					MaxRSS: num(), Stdout: bytes(), Stderr: bytes(), StagingErr: str(), LogBlobs: rng.Intn(2) == 0, PrepFailed: rng.Intn(2) == 0}
			})
		}
		if n := size(); n >= 0 {
			s.Started = make([]Started, n)
			slice(n, func(i int) { s.Started[i] = Started{Ref: ref(), At: num()} })
		}
		if n := size(); n >= 0 {
			s.Preparing = make([]Started, n)
			slice(n, func(i int) { s.Preparing[i] = Started{Ref: ref(), At: num()} })
		}
		if n := size(); n >= 0 {
			s.Revoked = make([]RevokeAnswer, n)
			slice(n, func(i int) { s.Revoked[i] = RevokeAnswer{Ref: ref(), Revoked: rng.Intn(2) == 0} })
		}
		hot = append(hot, s)

		a := &ToAgent{Seq: uint64(rng.Int63()), AckReports: uint64(rng.Intn(3)), Error: str()}
		if n := size(); n >= 0 {
			a.Assign = make([]Assign, n)
			slice(n, func(i int) {
				a.Assign[i] = Assign{Ref: ref(), Template: str(), Index: int(num()), Line: str(), HasLine: rng.Intn(2) == 0}
			})
		}
		if n := size(); n >= 0 {
			a.Revoke = make([]Ref, n)
			slice(n, func(i int) { a.Revoke[i] = ref() })
		}
		if n := size(); n >= 0 {
			a.Kill = make([]Ref, n)
			slice(n, func(i int) { a.Kill[i] = ref() })
		}
		hot = append(hot, a)
	}
	cold = []any{
		&ToServer{Hello: &Hello{Version: 1, Name: "n"}},
		&ToServer{Seq: 3, Logs: []LogChunk{{ID: 1, Data: []byte("x")}}},
		&ToServer{StartTaskDone: &StartTaskDone{OK: true}},
		&ToAgent{Welcome: &Welcome{NodeID: "n"}},
		&ToAgent{Templates: []Template{{Key: "j/0", Command: []string{"true"}}}, Assign: []Assign{{Template: "j/0"}}},
		&ToAgent{LogReqs: []LogReq{{ID: 2}}},
		&ToAgent{Release: []JobRelease{{Job: "j"}}},
	}
	return hot, cold
}

// TestFastDecode: every frame decodes to what was encoded and to what the
// general decoder makes of it; the frames of the task path take the fast
// path, the others do not.
func TestFastDecode(t *testing.T) {
	hot, cold := frames()
	for i, v := range append(hot, cold...) {
		b, err := Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		general := reflect.New(reflect.TypeOf(v).Elem())
		if err := decMode.Unmarshal(b, general.Interface()); err != nil {
			t.Fatal(err)
		}
		got := reflect.New(reflect.TypeOf(v).Elem())
		if err := Unmarshal(b, got.Interface()); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got.Interface(), general.Interface()) || !reflect.DeepEqual(got.Interface(), v) {
			t.Errorf("frame %d: decoded %+v\ngeneral decoder %+v\nencoded %+v", i, got, general, v)
		}
		fast := decodeFast(b, reflect.New(reflect.TypeOf(v).Elem()).Interface())
		if want := i < len(hot); fast != want {
			t.Errorf("frame %d %T: fast path taken %v, want %v", i, v, fast, want)
		}
	}
	// A frame decoded into a value that holds something is merged by the
	// general decoder, not the fast path.
	b, _ := Marshal(&ToServer{Seq: 9})
	f := ToServer{Revoked: []RevokeAnswer{{Revoked: true}}}
	if err := Unmarshal(b, &f); err != nil || f.Seq != 9 {
		t.Errorf("merged frame %+v, %v", f, err)
	}
}

// FuzzFastDecode: whatever the bytes, the fast path either declines and
// leaves the frame untouched, or decodes exactly what the general decoder
// does.
func FuzzFastDecode(f *testing.F) {
	hot, cold := frames()
	for _, v := range append(hot[:20], cold...) {
		b, err := Marshal(v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, typ := range []reflect.Type{reflect.TypeFor[ToServer](), reflect.TypeFor[ToAgent]()} {
			general := reflect.New(typ)
			errGeneral := decMode.Unmarshal(b, general.Interface())
			fast := reflect.New(typ)
			if !decodeFast(b, fast.Interface()) {
				if !fast.Elem().IsZero() {
					t.Fatalf("%s: the fast path declined %x but left %+v", typ, b, fast)
				}
				continue
			}
			if errGeneral != nil {
				t.Fatalf("%s: the fast path took %x, which the general decoder refuses: %v", typ, b, errGeneral)
			}
			if !reflect.DeepEqual(fast.Interface(), general.Interface()) {
				t.Fatalf("%s: %x decoded to\n%+v, the general decoder gives\n%+v", typ, b, fast, general)
			}
		}
	})
}

func BenchmarkUnmarshal(b *testing.B) {
	hot, _ := frames()
	var frames [][]byte
	for _, v := range hot {
		if f, ok := v.(*ToServer); ok && len(f.Finished) == 30 {
			enc, _ := Marshal(f)
			frames = append(frames, enc)
		}
	}
	for _, bc := range []struct {
		name   string
		decode func([]byte, any) error
	}{{"fast", Unmarshal}, {"general", decMode.Unmarshal}} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				var f ToServer
				if err := bc.decode(frames[i%len(frames)], &f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
