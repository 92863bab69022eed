package arrayspec

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
)

// ranges builds a []Range from (first, last, step) triples.
func ranges(v ...int) []Range {
	var rs []Range
	for i := 0; i+2 < len(v); i += 3 {
		rs = append(rs, Range{v[i], v[i+1], v[i+2]})
	}
	return rs
}

// indices expands a spec, for comparing small specs against brute force.
func indices(s Spec) []int {
	var out []int
	for idx := range s.Each {
		out = append(out, idx)
	}
	return out
}

func TestParseGood(t *testing.T) {
	tests := []struct {
		name, in string
		want     Spec
		canon    string // "" means the same as in
		count    int
	}{
		{"single", "7", Spec{Ranges: ranges(7, 7, 1)}, "", 1},
		{"zero", "0", Spec{Ranges: ranges(0, 0, 1)}, "", 1},
		{"range", "1-100", Spec{Ranges: ranges(1, 100, 1)}, "", 100},
		{"stepped", "1-100:2", Spec{Ranges: ranges(1, 99, 2)}, "1-99:2", 50},
		{"stepped exact", "0-10:5", Spec{Ranges: ranges(0, 10, 5)}, "", 3},
		{"list", "1,5,9", Spec{Ranges: ranges(1, 1, 1, 5, 5, 1, 9, 9, 1)}, "", 3},
		{"limit", "1-1000%50", Spec{Ranges: ranges(1, 1000, 1), Limit: 50}, "", 1000},
		{"mixed", "0-10:2,50,60-62%3", Spec{Ranges: ranges(0, 10, 2, 50, 50, 1, 60, 62, 1), Limit: 3}, "", 10},
		{"order kept", "9,1-3,5", Spec{Ranges: ranges(9, 9, 1, 1, 3, 1, 5, 5, 1)}, "", 5},
		{"degenerate range", "4-4", Spec{Ranges: ranges(4, 4, 1)}, "4", 1},
		{"step past end", "3-5:10", Spec{Ranges: ranges(3, 3, 1)}, "3", 1},
		{"step one spelled", "1-3:1", Spec{Ranges: ranges(1, 3, 1)}, "1-3", 3},
		{"leading zeros", "007-010", Spec{Ranges: ranges(7, 10, 1)}, "7-10", 4},
		{"interleaved steps", "0-10:2,1-11:2", Spec{Ranges: ranges(0, 10, 2, 1, 11, 2)}, "", 12},
		{"adjacent ranges", "1-5,6-10", Spec{Ranges: ranges(1, 5, 1, 6, 10, 1)}, "", 10},
		{"max index", "2147483647", Spec{Ranges: ranges(MaxIndex, MaxIndex, 1)}, "", 1},
		{"huge step", "0-2147483647:2147483647", Spec{Ranges: ranges(0, MaxIndex, MaxIndex)}, "", 2},
		{"limit above count", "1-3%100", Spec{Ranges: ranges(1, 3, 1), Limit: 100}, "", 3},
		{"exactly MaxTasks", "0-9999999", Spec{Ranges: ranges(0, MaxTasks-1, 1)}, "", MaxTasks},
		{"sparse across the index space", "0-2147483647:1000", Spec{Ranges: ranges(0, 2147483000, 1000)}, "0-2147483000:1000", 2147484},
		{"coprime steps that never meet", "0-100:4,2-100:4", Spec{Ranges: ranges(0, 100, 4, 2, 98, 4)}, "0-100:4,2-98:4", 51},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !slices.Equal(got.Ranges, tt.want.Ranges) || got.Limit != tt.want.Limit {
				t.Errorf("Parse(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			canon := tt.canon
			if canon == "" {
				canon = tt.in
			}
			if s := got.String(); s != canon {
				t.Errorf("String() = %q, want %q", s, canon)
			}
			if n := got.Count(); n != tt.count {
				t.Errorf("Count() = %d, want %d", n, tt.count)
			}
		})
	}
}

func TestParseBad(t *testing.T) {
	tests := []struct {
		name, in string
		kind     error
		msg      string // exact message, or "" to check only the kind
	}{
		{"empty", "", ErrSyntax, `array spec "": empty`},
		{"bad end", "1-x", ErrSyntax, `array spec "1-x": item 1: bad end "x"`},
		{"bad start", "a-5", ErrSyntax, `array spec "a-5": item 1: bad start "a"`},
		{"bad index", "1,2,x", ErrSyntax, `array spec "1,2,x": item 3: bad index "x"`},
		{"negative", "-5", ErrSyntax, `array spec "-5": item 1: missing start before "-" in "-5"`},
		{"negative end", "1--5", ErrSyntax, `array spec "1--5": item 1: bad end "-5"`},
		{"plus sign", "+5", ErrSyntax, ""},
		{"missing end", "1-", ErrSyntax, `array spec "1-": item 1: missing end after "-" in "1-"`},
		{"missing step", "1-5:", ErrSyntax, `array spec "1-5:": item 1: missing step after ":" in "1-5:"`},
		{"step without range", "5:2", ErrSyntax, ""},
		{"two dashes", "1-2-3", ErrSyntax, `array spec "1-2-3": item 1: bad end "2-3"`},
		{"two colons", "1-9:2:3", ErrSyntax, `array spec "1-9:2:3": item 1: bad step "2:3"`},
		{"empty item", "1,,2", ErrSyntax, `array spec "1,,2": item 2: empty item`},
		{"trailing comma", "1,", ErrSyntax, `array spec "1,": item 2: empty item`},
		{"leading comma", ",1", ErrSyntax, `array spec ",1": item 1: empty item`},
		{"space inside", "1, 2", ErrSyntax, `array spec "1, 2": white space at offset 2`},
		{"leading space", " 1-5", ErrSyntax, ""},
		{"tab", "1-5\t", ErrSyntax, ""},
		{"float", "1.5", ErrSyntax, ""},
		{"hex", "0x10", ErrSyntax, ""},
		{"too big", "2147483648", ErrRange, `array spec "2147483648": item 1: index 2147483648 exceeds 2147483647`},
		{"overflow int64", "1-99999999999999999999999", ErrRange, ""},
		{"overflow then junk", "99999999999999999999x", ErrSyntax, ""},
		{"start after end", "10-5", ErrRange, `array spec "10-5": item 1: start 10 is after end 5`},
		{"zero step", "1-10:0", ErrRange, `array spec "1-10:0": item 1: step must be at least 1`},
		{"step too big", "1-10:2147483648", ErrRange, ""},
		{"zero limit", "1-10%0", ErrRange, `array spec "1-10%0": limit must be at least 1`},
		{"missing limit", "1-10%", ErrSyntax, ""},
		{"bad limit", "1-10%x", ErrSyntax, `array spec "1-10%x": bad limit "x"`},
		{"two limits", "1-10%2%3", ErrSyntax, ""},
		{"limit not last", "1%2,3", ErrSyntax, ""},
		{"limit too big", "1%9999999999", ErrRange, ""},
		{"only limit", "%5", ErrSyntax, ""},
		{"duplicate index", "1,5,1", ErrOverlap, `array spec "1,5,1": item 3: 1 overlaps item 1 (1) at index 1`},
		{"overlapping ranges", "1-6,5-9", ErrOverlap, `array spec "1-6,5-9": item 2: 5-9 overlaps item 1 (1-6) at index 5`},
		{"range covers later index", "50,0-100:10", ErrOverlap, `array spec "50,0-100:10": item 2: 0-100:10 overlaps item 1 (50) at index 50`},
		{"stepped ranges meet", "0-100:6,3-100:9", ErrOverlap, `array spec "0-100:6,3-100:9": item 2: 3-93:9 overlaps item 1 (0-96:6) at index 12`},
		{"too many tasks", "0-10000000", ErrTooLarge, `array spec "0-10000000": 10000001 indices, more than the maximum 10000000`},
		{"too many across items", "0-5000000,5000001-10000001", ErrTooLarge, ""},
		{"too long", strings.Repeat("1", MaxLen+1), ErrTooLarge, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error", tt.in, got)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("Parse(%q) error %v is not %v", tt.in, err, tt.kind)
			}
			var perr *Error
			if !errors.As(err, &perr) || perr.Spec != tt.in {
				t.Errorf("Parse(%q) error %#v is not an *Error for the spec", tt.in, err)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("Parse(%q) error\n got %s\nwant %s", tt.in, err, tt.msg)
			}
		})
	}
}

func TestErrorTruncatesLongSpec(t *testing.T) {
	_, err := Parse(strings.Repeat("1", 200) + "x")
	if err == nil || len(err.Error()) > 160 {
		t.Errorf("error %q: want a short message for a long spec", err)
	}
}

func TestRoundTrip(t *testing.T) {
	for _, in := range []string{"1", "1-100", "1-100:3", "5,1,3", "0-10:2,50,60-62%3", "0-2147483647:65536%1"} {
		s, err := Parse(in)
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		back, err := Parse(s.String())
		if err != nil {
			t.Fatalf("Parse(%q) of String() of %q: %v", s.String(), in, err)
		}
		if !slices.Equal(back.Ranges, s.Ranges) || back.Limit != s.Limit {
			t.Errorf("%q: round trip gives %+v, want %+v", in, back, s)
		}
	}
}

func TestAtContainsEach(t *testing.T) {
	s, err := Parse("9,0-8:3,20-22,100-1000:300")
	if err != nil {
		t.Fatal(err)
	}
	want := []int{9, 0, 3, 6, 20, 21, 22, 100, 400, 700, 1000}
	if got := indices(s); !slices.Equal(got, want) {
		t.Fatalf("Each = %v, want %v", got, want)
	}
	if s.Count() != len(want) {
		t.Errorf("Count = %d, want %d", s.Count(), len(want))
	}
	for i, idx := range want {
		if got := s.At(i); got != idx {
			t.Errorf("At(%d) = %d, want %d", i, got, idx)
		}
	}
	for idx := -1; idx <= 1001; idx++ {
		if got, w := s.Contains(idx), slices.Contains(want, idx); got != w {
			t.Errorf("Contains(%d) = %v, want %v", idx, got, w)
		}
	}

	var seen []int
	s.Each(func(idx int) bool {
		seen = append(seen, idx)
		return len(seen) < 3
	})
	if !slices.Equal(seen, want[:3]) {
		t.Errorf("Each stopped early gave %v, want %v", seen, want[:3])
	}
}

func TestAtPanicsOutOfRange(t *testing.T) {
	s, _ := Parse("1-3")
	for _, i := range []int{-1, 3} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("At(%d) did not panic", i)
				}
			}()
			s.At(i)
		}()
	}
}

// TestCompact checks that a big range costs no more than a small one.
func TestCompact(t *testing.T) {
	var s Spec
	allocs := testing.AllocsPerRun(10, func() {
		s, _ = Parse("0-9999999%50")
	})
	if allocs > 1 {
		t.Errorf("Parse of a 10M range: %v allocations, want 1", allocs)
	}
	if n := testing.AllocsPerRun(10, func() { _ = s.Count() + s.At(9_999_999); _ = s.Contains(5) }); n != 0 {
		t.Errorf("Count/At/Contains allocate %v times", n)
	}
}

func TestOverlapsLarge(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"0-2147483647:65521", "7-2147483647:65519", true},                 // lcm > 2^31, but CRT's answer 2146664523 is in both
		{"0-2146000000:65521", "7-2146000000:65519", false},                // same residues, ends below 2146664523
		{"0-19999998:2", "1-19999999:2", false},                            // evens and odds, 10M each
		{"0-6000000:6", "3-9000000:9", true},                               // meet at 12
		{"0-6000000:6", "1-9000000:9", false},                              // gcd 3 does not divide 1
		{"1-9999999", "10000000-2147483647:1000", false},                   // disjoint intervals
		{"2147483647", "0-2147483647:2147483647", true},                    // the very top index
		{"0-2147483647:46337", "2147483647", false},                        // 2^31-1 is prime
		{"1,2,3,4,5,6,7,8,9,10", "11,12,13,14,15,16,17,18,19,20,10", true}, // enough ranges for the sweep
	}
	for _, tt := range tests {
		a, err := Parse(tt.a)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.a, err)
		}
		b, err := Parse(tt.b)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.b, err)
		}
		if got := a.Overlaps(b); got != tt.want {
			t.Errorf("%q.Overlaps(%q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := b.Overlaps(a); got != tt.want {
			t.Errorf("%q.Overlaps(%q) = %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

// randomSpec returns a random spec string over [0, 60], which may repeat indices.
func randomSpec(r *rand.Rand) string {
	items := make([]string, 1+r.Intn(4))
	for i := range items {
		first := r.Intn(60)
		switch r.Intn(3) {
		case 0:
			items[i] = fmt.Sprint(first)
		case 1:
			items[i] = fmt.Sprintf("%d-%d", first, first+r.Intn(60-first+1))
		default:
			items[i] = fmt.Sprintf("%d-%d:%d", first, first+r.Intn(60-first+1), 1+r.Intn(9))
		}
	}
	return strings.Join(items, ",")
}

// TestProperties compares Parse's duplicate check, Overlaps, Count, At and
// Contains with brute force on many small random specs.
func TestProperties(t *testing.T) {
	r := rand.New(rand.NewSource(1))
	// bruteSet expands a spec string by hand, without Parse's duplicate check.
	bruteSet := func(spec string) (idx []int, dup bool) {
		seen := map[int]bool{}
		for _, item := range strings.Split(spec, ",") {
			var first, last, step int
			switch {
			case strings.Contains(item, ":"):
				fmt.Sscanf(item, "%d-%d:%d", &first, &last, &step)
			case strings.Contains(item, "-"):
				fmt.Sscanf(item, "%d-%d", &first, &last)
				step = 1
			default:
				fmt.Sscanf(item, "%d", &first)
				last, step = first, 1
			}
			for i := first; i <= last; i += step {
				dup = dup || seen[i]
				seen[i] = true
				idx = append(idx, i)
			}
		}
		return idx, dup
	}

	var specs []Spec
	var sets [][]int
	for range 5000 {
		text := randomSpec(r)
		want, dup := bruteSet(text)
		s, err := Parse(text)
		if dup {
			if !errors.Is(err, ErrOverlap) {
				t.Fatalf("Parse(%q) = %v, %v; want ErrOverlap", text, s, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("Parse(%q): %v", text, err)
		}
		if got := indices(s); !slices.Equal(got, want) {
			t.Fatalf("%q: Each gives %v, want %v", text, got, want)
		}
		if s.Count() != len(want) {
			t.Fatalf("%q: Count = %d, want %d", text, s.Count(), len(want))
		}
		for i, idx := range want {
			if s.At(i) != idx {
				t.Fatalf("%q: At(%d) = %d, want %d", text, i, s.At(i), idx)
			}
		}
		for idx := range 62 {
			if s.Contains(idx) != slices.Contains(want, idx) {
				t.Fatalf("%q: Contains(%d) = %v", text, idx, s.Contains(idx))
			}
		}
		specs = append(specs, s)
		sets = append(sets, want)
	}
	if len(specs) < 500 {
		t.Fatalf("only %d random specs without duplicates; the generator needs tuning", len(specs))
	}

	for i := range 20000 {
		a, b := r.Intn(len(specs)), r.Intn(len(specs))
		if i%7 == 0 {
			b = a
		}
		want := slices.ContainsFunc(sets[a], func(idx int) bool { return slices.Contains(sets[b], idx) })
		if got := specs[a].Overlaps(specs[b]); got != want {
			t.Fatalf("%v.Overlaps(%v) = %v, want %v", specs[a], specs[b], got, want)
		}
	}
}

// TestOverlapsSweep forces the sweep path (many ranges) and checks it with
// brute force.
func TestOverlapsSweep(t *testing.T) {
	r := rand.New(rand.NewSource(2))
	build := func() (Spec, map[int]bool) {
		set := map[int]bool{}
		var s Spec
		for range 10 + r.Intn(20) {
			first := r.Intn(400)
			rg := Range{first, first + r.Intn(40), 1 + r.Intn(12)}
			rg.Last = rg.First + (rg.Last-rg.First)/rg.Step*rg.Step
			if rg.First == rg.Last {
				rg.Step = 1
			}
			s.Ranges = append(s.Ranges, rg)
			for _, idx := range indices(Spec{Ranges: []Range{rg}}) {
				set[idx] = true
			}
		}
		return s, set
	}
	for range 3000 {
		a, sa := build()
		b, sb := build()
		want := false
		for idx := range sa {
			want = want || sb[idx]
		}
		if got := a.Overlaps(b); got != want {
			t.Fatalf("%v.Overlaps(%v) = %v, want %v", a, b, got, want)
		}
	}
}

// TestFirstCommon checks the CRT solver against brute force, including large
// steps where the lcm exceeds the index range.
func TestFirstCommon(t *testing.T) {
	r := rand.New(rand.NewSource(3))
	for range 20000 {
		mk := func() Range {
			first := r.Intn(200)
			return Range{first, first + r.Intn(300), 1 + r.Intn(40)}
		}
		a, b := mk(), mk()
		want, wantOK := 0, false
		for x := a.First; x <= a.Last && !wantOK; x += a.Step {
			if x >= b.First && x <= b.Last && (x-b.First)%b.Step == 0 {
				want, wantOK = x, true
			}
		}
		got, ok := firstCommon(a, b)
		if ok != wantOK || got != want {
			t.Fatalf("firstCommon(%v, %v) = %d, %v; want %d, %v", a, b, got, ok, want, wantOK)
		}
	}
}

// BenchmarkParseWorstCase measures the duplicate check on the most items a
// spec can hold when they are interleaved stepped ranges that all stay open
// together, the quadratic case MaxLen bounds.
func BenchmarkParseWorstCase(b *testing.B) {
	var sb strings.Builder
	for i := 0; sb.Len() < MaxLen-40; i++ {
		fmt.Fprintf(&sb, "%d-%d:1000000,", i, i+1000000)
	}
	spec := strings.TrimSuffix(sb.String(), ",")
	b.ReportMetric(float64(strings.Count(spec, ",")+1), "items")
	for b.Loop() {
		if _, err := Parse(spec); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	for b.Loop() {
		if _, err := Parse("0-10:2,50,60-62,1000-999999:7%3"); err != nil {
			b.Fatal(err)
		}
	}
}
