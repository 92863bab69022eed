package placeholder

import (
	"errors"
	"regexp"
	"strings"
	"testing"
)

// tokens splits a template the way the language is specified, independently
// of scan: escapes, whole placeholders, stray braces, literal text.
var tokens = regexp.MustCompile(`\{\{|\}\}|\{[^{}]*\}|[{}]|[^{}]+`)

// reference expands s by the specification, for comparison with Expand.
func reference(s string, v Values) (string, error) {
	var b strings.Builder
	for _, loc := range tokens.FindAllStringIndex(s, -1) {
		tok, off := s[loc[0]:loc[1]], loc[0]
		switch {
		case tok == "{{" || tok == "}}":
			b.WriteByte(tok[0])
		case tok == "{" || tok == "}":
			return "", &Error{Offset: off, Text: tok, Kind: ErrSyntax}
		case tok[0] == '{':
			var val string
			var ok bool
			switch tok {
			case "{index}":
				val, ok = v.Index, v.HasIndex
			case "{line}":
				val, ok = v.Line, v.HasLine
			case "{job}":
				val, ok = v.Job, true
			case "{task}":
				val, ok = v.Task, true
			case "{attempt}":
				val, ok = v.Attempt, true
			default:
				return "", &Error{Offset: off, Text: tok, Kind: ErrUnknown}
			}
			if !ok {
				return "", &Error{Offset: off, Text: tok, Kind: ErrUnavailable}
			}
			b.WriteString(val)
		default:
			b.WriteString(tok)
		}
	}
	return b.String(), nil
}

// escape makes s a template that expands to s.
func escape(s string) string {
	return strings.NewReplacer("{", "{{", "}", "}}").Replace(s)
}

// FuzzExpand checks Expand against the reference, that no placeholder
// survives expansion, that escaping round-trips, and that Check and Uses
// agree with Expand. Seeds live in testdata/fuzz/FuzzExpand.
func FuzzExpand(f *testing.F) {
	f.Fuzz(func(t *testing.T, s, line string, hasIndex, hasLine bool) {
		v := Values{Index: "I", Line: line, Job: "J", Task: "T", Attempt: "A", HasIndex: hasIndex, HasLine: hasLine}
		got, err := Expand(s, v)
		want, werr := reference(s, v)
		if got != want || (err == nil) != (werr == nil) {
			t.Fatalf("Expand(%q) = %q, %v; reference gives %q, %v", s, got, err, want, werr)
		}
		if err != nil {
			var e, we *Error
			if !errors.As(err, &e) || !errors.As(werr, &we) || *e != *we {
				t.Fatalf("Expand(%q) error %#v, reference %#v", s, err, werr)
			}
		}

		// With brace-free values, every brace in the output comes from an
		// escape: a template without escapes leaves none.
		if !strings.ContainsAny(line, "{}") && err == nil &&
			!strings.Contains(s, "{{") && !strings.Contains(s, "}}") && strings.ContainsAny(got, "{}") {
			t.Fatalf("Expand(%q) = %q: braces left over", s, got)
		}

		if back, err := Expand(escape(s), v); err != nil || back != s {
			t.Fatalf("Expand(escape(%q)) = %q, %v", s, back, err)
		}

		cerr := Check(s)
		used, uerr := Uses(s)
		if (cerr == nil) != (uerr == nil) {
			t.Fatalf("Check(%q) = %v but Uses error %v", s, cerr, uerr)
		}
		all := v
		all.HasIndex, all.HasLine = true, true
		if _, err := Expand(s, all); (err == nil) != (cerr == nil) {
			t.Fatalf("Check(%q) = %v but Expand with all values: %v", s, cerr, err)
		}
		if cerr == nil && len(used) == 0 {
			if out, _ := Expand(s, Values{}); out != strings.NewReplacer("{{", "{", "}}", "}").Replace(s) {
				t.Fatalf("Uses(%q) = none, but Expand gives %q", s, out)
			}
		}
	})
}
