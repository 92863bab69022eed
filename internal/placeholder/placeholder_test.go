package placeholder

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// full has a value for every placeholder; none has only the ones every task has.
var (
	full = Values{Index: "7", Line: "a b.txt", Job: "sweep", Task: "t7", Attempt: "2", HasIndex: true, HasLine: true}
	none = Values{Job: "sweep", Task: "t7", Attempt: "1"}
)

func TestExpand(t *testing.T) {
	tests := []struct {
		name, in string
		v        Values
		want     string
	}{
		{"no braces", "plain --flag=x", full, "plain --flag=x"},
		{"empty", "", full, ""},
		{"index", "out/{index}.csv", full, "out/7.csv"},
		{"all", "{job}/{task}/{attempt}/{index}/{line}", full, "sweep/t7/2/7/a b.txt"},
		{"adjacent", "{index}{index}", full, "77"},
		{"only placeholder", "{line}", full, "a b.txt"},
		{"escaped braces", "{{x}}", none, "{x}"},
		{"escaped placeholder", "{{index}}", none, "{index}"},
		{"escape then placeholder", "{{{index}}}", full, "{7}"},
		{"json-ish", `{{"i": {index}}}`, full, `{"i": 7}`},
		{"empty value", "[{index}]", Values{HasIndex: true}, "[]"},
		{"value not re-expanded", "{line}", Values{Line: "{index} }{", HasLine: true}, "{index} }{"},
		{"job task attempt need no flags", "{job}-{task}-{attempt}", none, "sweep-t7-1"},
		{"unicode around", "ü{index}ß", full, "ü7ß"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Expand(tt.in, tt.v)
			if err != nil || got != tt.want {
				t.Errorf("Expand(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
			if err := Check(tt.in); err != nil {
				t.Errorf("Check(%q) = %v", tt.in, err)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, in string
		v        Values
		kind     error
		offset   int
		msg      string // "" to check only kind and offset
	}{
		{"unknown", "x{foo}", full, ErrUnknown, 1,
			`unknown placeholder "{foo}" at offset 1 (known: {index} {line} {job} {task} {attempt})`},
		{"empty name", "{}", full, ErrUnknown, 0, ""},
		{"case matters", "{INDEX}", full, ErrUnknown, 0, ""},
		{"spaces in name", "{ index }", full, ErrUnknown, 0, ""},
		{"unclosed", "ab{index", full, ErrSyntax, 2, `unclosed "{" at offset 2 (write "{{" for a literal brace)`},
		{"unclosed at end", "ab{", full, ErrSyntax, 2, ""},
		{"brace inside name", "{in{dex}", full, ErrSyntax, 0, ""},
		{"lone close", "a}b", full, ErrSyntax, 1, `lone "}" at offset 1 (write "}}" for a literal brace)`},
		{"close after placeholder", "{index}}", full, ErrSyntax, 7, ""},
		{"odd escapes", "{{{", full, ErrSyntax, 2, ""},
		{"line unavailable", "in/{line}", none, ErrUnavailable, 3, `placeholder "{line}" at offset 3 has no value for this task`},
		{"index unavailable", "{job}{index}", none, ErrUnavailable, 5, ""},
		{"long unknown name clipped", "{" + strings.Repeat("x", 100) + "}", full, ErrUnknown, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Expand(tt.in, tt.v)
			if err == nil {
				t.Fatalf("Expand(%q) = %q, want error", tt.in, got)
			}
			var perr *Error
			if !errors.As(err, &perr) || !errors.Is(err, tt.kind) || perr.Offset != tt.offset {
				t.Errorf("Expand(%q) error %#v, want kind %v at offset %d", tt.in, err, tt.kind, tt.offset)
			}
			if tt.msg != "" && err.Error() != tt.msg {
				t.Errorf("Expand(%q) error\n got %s\nwant %s", tt.in, err, tt.msg)
			}
			if len(err.Error()) > 160 {
				t.Errorf("Expand(%q) error too long: %s", tt.in, err)
			}
			// Check and Uses know nothing of values: they fail exactly on syntax and names.
			cerr := Check(tt.in)
			_, uerr := Uses(tt.in)
			if (tt.kind == ErrUnavailable) != (cerr == nil) || (cerr == nil) != (uerr == nil) {
				t.Errorf("Check(%q) = %v, Uses error %v", tt.in, cerr, uerr)
			}
		})
	}
}

func TestUses(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"plain", nil},
		{"{{index}}", nil},
		{"{line}", []string{Line}},
		{"{task}/{index}/{task}-{attempt}", []string{Task, Index, Attempt}},
		{"{job}{line}{index}{attempt}{task}", []string{Job, Line, Index, Attempt, Task}},
	}
	for _, tt := range tests {
		got, err := Uses(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("Uses(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestFastPath checks that the common brace-free argument costs nothing.
func TestFastPath(t *testing.T) {
	s := strings.Repeat("--arg=value ", 10)
	n := testing.AllocsPerRun(100, func() {
		out, err := Expand(s, full)
		if err != nil || out != s {
			t.Fatal("Expand changed a brace-free string")
		}
		if u, _ := Uses(s); u != nil || Check(s) != nil {
			t.Fatal("Uses or Check saw placeholders in a brace-free string")
		}
	})
	if n != 0 {
		t.Errorf("brace-free Expand/Uses/Check: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Check("out/{index}/{{x}}") }); n != 0 {
		t.Errorf("Check: %v allocations, want 0", n)
	}
}

func BenchmarkExpand(b *testing.B) {
	b.Run("no braces", func(b *testing.B) {
		for b.Loop() {
			_, _ = Expand("--output=results/run.csv", full)
		}
	})
	b.Run("placeholders", func(b *testing.B) {
		for b.Loop() {
			_, _ = Expand("--output=results/{job}/{index}.{attempt}.csv", full)
		}
	})
}
