package arrayspec

import (
	"slices"
	"testing"
)

// FuzzParse checks that Parse never panics and that whatever it accepts is a
// consistent, non-empty spec whose canonical form parses back to itself.
// Seeds live in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, in string) {
		s, err := Parse(in)
		if err != nil {
			if s.Ranges != nil || s.Limit != 0 {
				t.Fatalf("Parse(%q) failed but returned %+v", in, s)
			}
			return
		}
		n := s.Count()
		if n < 1 || n > MaxTasks {
			t.Fatalf("Parse(%q).Count() = %d", in, n)
		}
		canon := s.String()
		back, err := Parse(canon)
		if err != nil {
			t.Fatalf("Parse(%q) of canonical form of %q: %v", canon, in, err)
		}
		if !slices.Equal(back.Ranges, s.Ranges) || back.Limit != s.Limit {
			t.Fatalf("%q: canonical %q parses to %+v, want %+v", in, canon, back, s)
		}
		if back.String() != canon {
			t.Fatalf("%q: canonical form is not stable: %q then %q", in, canon, back.String())
		}
		for _, i := range []int{0, n / 2, n - 1} {
			if idx := s.At(i); !s.Contains(idx) || idx < 0 || idx > MaxIndex {
				t.Fatalf("%q: At(%d) = %d, not in the spec", in, i, idx)
			}
		}
		if !s.Overlaps(s) {
			t.Fatalf("%q: does not overlap itself", in)
		}
	})
}
