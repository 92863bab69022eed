// Package arrayspec owns the task array spec: the Slurm-style string behind
// `lote submit --array` and array bulk task adds ("1-1000:2%50"). It parses and
// validates the grammar and its limits in one place, so the CLI, the API and the
// server agree on what a spec means, and it answers the questions the server
// asks of an array (how many tasks, the i-th index, membership, overlap with
// another array) without expanding it: a Spec is a short list of arithmetic
// ranges, so a million-task array costs a few words of memory.
//
// Grammar, a superset of Slurm's:
//
//	spec  = item { "," item } [ "%" limit ]
//	item  = index | index "-" index [ ":" step ]
//
// Indices lie in [0, MaxIndex]; a spec may not name an index twice, and holds at
// most MaxTasks indices.
package arrayspec

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

const (
	// MaxIndex is the largest array index; indices fit an int32 so that task IDs
	// and environment values stay portable across platforms and tools.
	MaxIndex = 1<<31 - 1
	// MaxTasks caps the number of indices in one spec, bounding what a single
	// submission can ask the server to create.
	MaxTasks = 10_000_000
	// MaxLen caps a spec's length in bytes. It bounds parsing time: the check
	// that no index repeats is quadratic in the number of items in the worst
	// case (many interleaved stepped ranges).
	MaxLen = 64 << 10
)

// Kinds of parse error, for errors.Is; the *Error carrying one says exactly
// what is wrong.
var (
	ErrSyntax   = errors.New("malformed array spec")
	ErrRange    = errors.New("array spec value out of range")
	ErrOverlap  = errors.New("array spec names an index twice")
	ErrTooLarge = errors.New("array spec too large")
)

// Error is the error Parse returns. Its message names the spec, the item and
// the offending text; Unwrap yields one of the Err kinds.
type Error struct {
	Spec   string // the spec as given
	Item   int    // 1-based item number, 0 when the problem is not in one item
	Reason string // what is wrong, e.g. `bad end "x"`
	Kind   error  // ErrSyntax, ErrRange, ErrOverlap or ErrTooLarge
}

func (e *Error) Error() string {
	spec := clip(e.Spec)
	if e.Item > 0 {
		return fmt.Sprintf("array spec %q: item %d: %s", spec, e.Item, e.Reason)
	}
	return fmt.Sprintf("array spec %q: %s", spec, e.Reason)
}

func (e *Error) Unwrap() error { return e.Kind }

// Range is the arithmetic progression First, First+Step, ..., Last. In a Spec
// from Parse, Last is an index of the range (Parse rounds "1-10:4" to 1-9:4)
// and a single index has Step 1, so equal sets of indices mean equal Ranges.
type Range struct{ First, Last, Step int }

// Spec is a parsed array spec. The methods other than String assume the
// invariants Parse establishes: 0 <= First <= Last <= MaxIndex, Step >= 1.
type Spec struct {
	Ranges []Range // in the order given
	Limit  int     // at most this many tasks at once; 0 = no limit
}

// Parse parses and validates an array spec. Its errors are *Error values.
func Parse(s string) (Spec, error) {
	fail := func(item int, kind error, format string, args ...any) (Spec, error) {
		return Spec{}, &Error{Spec: s, Item: item, Reason: fmt.Sprintf(format, args...), Kind: kind}
	}
	if s == "" {
		return fail(0, ErrSyntax, "empty")
	}
	if len(s) > MaxLen {
		return fail(0, ErrTooLarge, "longer than %d bytes", MaxLen)
	}
	if i := strings.IndexAny(s, " \t\n\v\f\r"); i >= 0 {
		return fail(0, ErrSyntax, "white space at offset %d", i)
	}

	var spec Spec
	items, limit, hasLimit := strings.Cut(s, "%")
	if hasLimit {
		switch n, kind := parseNum(limit); {
		case limit == "":
			return fail(0, ErrSyntax, `missing limit after "%%"`)
		case strings.ContainsAny(limit, "%,"):
			return fail(0, ErrSyntax, `"%%LIMIT" must come once, at the end`)
		case kind == ErrSyntax:
			return fail(0, ErrSyntax, "bad limit %q", clip(limit))
		case kind == ErrRange:
			return fail(0, ErrRange, "limit %s exceeds %d", clip(limit), MaxIndex)
		case n == 0:
			return fail(0, ErrRange, "limit must be at least 1")
		default:
			spec.Limit = n
		}
	}

	spec.Ranges = make([]Range, 0, strings.Count(items, ",")+1)
	var total int64
	for item := 1; ; item++ {
		text, rest, more := strings.Cut(items, ",")
		r, reason, kind := parseItem(text)
		if kind != nil {
			return fail(item, kind, "%s", reason)
		}
		spec.Ranges = append(spec.Ranges, r)
		total += int64(r.count())
		if !more {
			break
		}
		items = rest
	}
	if total > MaxTasks {
		return fail(0, ErrTooLarge, "%d indices, more than the maximum %d", total, MaxTasks)
	}
	if i, j, idx, found := collide(spec.Ranges, spec.Ranges, true); found {
		i, j = min(i, j), max(i, j)
		return fail(j+1, ErrOverlap, "%s overlaps item %d (%s) at index %d",
			spec.Ranges[j], i+1, spec.Ranges[i], idx)
	}
	return spec, nil
}

// parseItem parses one comma-separated item, reporting a failure as a kind and
// a reason for the caller to wrap.
func parseItem(text string) (r Range, reason string, kind error) {
	if text == "" {
		return r, "empty item", ErrSyntax
	}
	startText, tail, isRange := strings.Cut(text, "-")
	if !isRange {
		if strings.Contains(text, ":") {
			return r, fmt.Sprintf("step without a range in %q (write A-B:STEP)", clip(text)), ErrSyntax
		}
		n, kind := parseNum(text)
		if kind != nil {
			return r, badNum("index", text, kind), kind
		}
		return Range{n, n, 1}, "", nil
	}
	endText, stepText, hasStep := strings.Cut(tail, ":")
	if startText == "" {
		return r, fmt.Sprintf("missing start before \"-\" in %q", clip(text)), ErrSyntax
	}
	first, kind := parseNum(startText)
	if kind != nil {
		return r, badNum("start", startText, kind), kind
	}
	if endText == "" {
		return r, fmt.Sprintf("missing end after \"-\" in %q", clip(text)), ErrSyntax
	}
	last, kind := parseNum(endText)
	if kind != nil {
		return r, badNum("end", endText, kind), kind
	}
	step := 1
	if hasStep {
		if stepText == "" {
			return r, fmt.Sprintf("missing step after \":\" in %q", clip(text)), ErrSyntax
		}
		if step, kind = parseNum(stepText); kind != nil {
			return r, badNum("step", stepText, kind), kind
		}
		if step == 0 {
			return r, "step must be at least 1", ErrRange
		}
	}
	if first > last {
		return r, fmt.Sprintf("start %d is after end %d", first, last), ErrRange
	}
	last = first + (last-first)/step*step
	if first == last {
		step = 1
	}
	return Range{first, last, step}, "", nil
}

// parseNum parses a decimal in [0, MaxIndex]. Unlike strconv.Atoi it takes
// digits only (no sign), so "-" and "+" never sneak into a field.
func parseNum(s string) (int, error) {
	if s == "" {
		return 0, ErrSyntax
	}
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, ErrSyntax
		}
		if n > MaxIndex {
			continue // keep scanning: a later non-digit makes it a syntax error
		}
		n = n*10 + int(c-'0')
	}
	if n > MaxIndex {
		return 0, ErrRange
	}
	return n, nil
}

func badNum(what, text string, kind error) string {
	if kind == ErrRange {
		return fmt.Sprintf("%s %s exceeds %d", what, clip(text), MaxIndex)
	}
	return fmt.Sprintf("bad %s %q", what, clip(text))
}

// clip shortens text quoted in an error, so a long spec gives a readable message.
func clip(text string) string {
	if len(text) > 40 {
		return text[:40] + "..."
	}
	return text
}

// count is the number of indices in r.
func (r Range) count() int { return (r.Last-r.First)/r.Step + 1 }

// String formats r as a spec item: "N", "A-B" or "A-B:STEP".
func (r Range) String() string { return string(r.appendTo(nil)) }

func (r Range) appendTo(b []byte) []byte {
	b = strconv.AppendInt(b, int64(r.First), 10)
	if r.Last == r.First {
		return b
	}
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(r.Last), 10)
	if r.Step != 1 {
		b = append(b, ':')
		b = strconv.AppendInt(b, int64(r.Step), 10)
	}
	return b
}

// Count is the number of tasks the spec describes.
func (s Spec) Count() int {
	n := 0
	for _, r := range s.Ranges {
		n += r.count()
	}
	return n
}

// At returns the index at 0-based position i in the spec's order, so the
// server can create tasks in batches without expanding the spec. It panics
// if i is not in [0, Count()), like a slice index.
func (s Spec) At(i int) int {
	pos := i
	if i >= 0 {
		for _, r := range s.Ranges {
			n := r.count()
			if pos < n {
				return r.First + pos*r.Step
			}
			pos -= n
		}
	}
	panic(fmt.Sprintf("arrayspec: position %d out of range [0:%d]", i, s.Count()))
}

// Contains reports whether idx is one of the spec's indices.
func (s Spec) Contains(idx int) bool {
	for _, r := range s.Ranges {
		if idx >= r.First && idx <= r.Last && (idx-r.First)%r.Step == 0 {
			return true
		}
	}
	return false
}

// Overlaps reports whether an index is in both s and o, which is how the
// server refuses a second array whose task IDs would clash with the first.
// It never enumerates indices: the cost depends on the number of ranges only.
func (s Spec) Overlaps(o Spec) bool {
	_, _, _, found := collide(s.Ranges, o.Ranges, false)
	return found
}

// String returns the canonical form of the spec, which Parse accepts back:
// items in order, each as short as it can be written, then "%LIMIT".
func (s Spec) String() string {
	b := make([]byte, 0, 24*len(s.Ranges)+12)
	for i, r := range s.Ranges {
		if i > 0 {
			b = append(b, ',')
		}
		b = r.appendTo(b)
	}
	if s.Limit > 0 {
		b = append(b, '%')
		b = strconv.AppendInt(b, int64(s.Limit), 10)
	}
	return string(b)
}

// Each calls fn with each index in order until fn returns false. Its shape is
// iter.Seq[int], so `for idx := range spec.Each` works.
func (s Spec) Each(fn func(idx int) bool) {
	for _, r := range s.Ranges {
		for k, n := 0, r.count(); k < n; k++ {
			if !fn(r.First + k*r.Step) {
				return
			}
		}
	}
}

// collide looks for an index shared by a range of a and a range of b, or, when
// self is set, by two ranges of a (b must then be a too). It returns the
// positions of the two ranges and the smallest index they share.
//
// It sweeps the ranges by First, keeping the ranges still open at that point;
// only pairs open together are compared, with firstCommon, so typical specs
// cost O(n log n) and interleaved stepped ranges at worst O(n²) in the number
// of ranges, never in the number of indices.
func collide(a, b []Range, self bool) (i, j, idx int, found bool) {
	if len(a)*len(b) <= 64 {
		// Few pairs: compare them all rather than allocate for the sweep.
		for i, ra := range a {
			for j, rb := range b {
				if self && j >= i {
					break
				}
				if idx, ok := firstCommon(ra, rb); ok {
					return i, j, idx, true
				}
			}
		}
		return 0, 0, 0, false
	}
	if self {
		b = nil
	}

	type entry struct {
		Range
		side, pos int
	}
	all := make([]entry, 0, len(a)+len(b))
	for pos, r := range a {
		all = append(all, entry{r, 0, pos})
	}
	for pos, r := range b {
		all = append(all, entry{r, 1, pos})
	}
	slices.SortFunc(all, func(x, y entry) int {
		if x.First != y.First {
			return x.First - y.First
		}
		if x.side != y.side {
			return x.side - y.side
		}
		return x.pos - y.pos
	})

	var open [2][]entry
	for _, cur := range all {
		for side := range open {
			open[side] = slices.DeleteFunc(open[side], func(e entry) bool { return e.Last < cur.First })
		}
		other := 1 - cur.side
		if self {
			other = cur.side
		}
		for _, prev := range open[other] {
			if idx, ok := firstCommon(prev.Range, cur.Range); ok {
				if self || prev.side == 0 {
					return prev.pos, cur.pos, idx, true
				}
				return cur.pos, prev.pos, idx, true
			}
		}
		open[cur.side] = append(open[cur.side], cur)
	}
	return 0, 0, 0, false
}

// firstCommon returns the smallest index in both a and b, solving
// x ≡ a.First (mod a.Step), x ≡ b.First (mod b.Step) by the Chinese remainder
// theorem. Arithmetic is in int64: the lcm of two steps can reach 2^62.
func firstCommon(a, b Range) (int, bool) {
	lo, hi := int64(max(a.First, b.First)), int64(min(a.Last, b.Last))
	if lo > hi {
		return 0, false
	}
	sa, sb := int64(a.Step), int64(b.Step)
	if sa == 1 && sb == 1 {
		return int(lo), true
	}
	g, inv := gcdInv(sa, sb)
	diff := int64(b.First) - int64(a.First)
	if diff%g != 0 {
		return 0, false
	}
	// a.First + sa*k ≡ b.First (mod sb)  ⇔  k ≡ (diff/g) * inv (mod sb/g)
	m := sb / g
	k := mod(diff/g, m) * inv % m
	x := int64(a.First) + sa*k
	lcm := sa * m
	if x < lo {
		x += (lo - x + lcm - 1) / lcm * lcm
	}
	if x > hi {
		return 0, false
	}
	return int(x), true
}

// gcdInv returns g = gcd(a, b) and the inverse of a/g modulo b/g (0 when
// b/g is 1), for positive a and b.
func gcdInv(a, b int64) (g, inv int64) {
	// Extended Euclid, tracking only the coefficient of a.
	r0, r1 := a, b
	x0, x1 := int64(1), int64(0)
	for r1 != 0 {
		q := r0 / r1
		r0, r1 = r1, r0-q*r1
		x0, x1 = x1, x0-q*x1
	}
	g = r0
	return g, mod(x0, b/g)
}

// mod is the non-negative remainder of a modulo m > 0.
func mod(a, m int64) int64 {
	a %= m
	if a < 0 {
		a += m
	}
	return a
}
