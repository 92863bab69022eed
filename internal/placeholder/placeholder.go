// Package placeholder owns the task template language: the {index}, {line},
// {job}, {task} and {attempt} placeholders expanded in a task's arguments and
// in its input and output sources and destinations, with "{{" and "}}" for
// literal braces. The server checks templates with Check when a job or array
// is submitted, so a typo fails the submission instead of every task; agents
// and the server expand them with Expand. Expansion is a single pass: a value
// (a line from a user's file, say) is inserted as is and never expanded
// again.
package placeholder

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The placeholder names, as Uses reports them.
const (
	Index   = "index"   // the task's array index or input line number
	Line    = "line"    // the task's input line, for --each-line
	Job     = "job"     // the job ID
	Task    = "task"    // the task ID
	Attempt = "attempt" // the attempt number, counting from 1
)

var names = [...]string{Index, Line, Job, Task, Attempt}

// Values are what placeholders expand to for one task attempt. Index and Line
// exist only for some tasks, hence HasIndex and HasLine; Job, Task and
// Attempt always have a value.
type Values struct {
	Index, Line, Job, Task, Attempt string
	HasIndex, HasLine               bool
}

// Kinds of template error, for errors.Is.
var (
	ErrSyntax      = errors.New("malformed template")
	ErrUnknown     = errors.New("unknown placeholder")
	ErrUnavailable = errors.New("placeholder has no value")
)

// Error is the error Check, Uses and Expand return. Callers add which argument
// or path the template came from.
type Error struct {
	Offset int    // byte offset in the template where Text starts
	Text   string // the offending text: "{", "}", or a placeholder such as "{foo}"
	Kind   error  // ErrSyntax, ErrUnknown or ErrUnavailable
}

func (e *Error) Error() string {
	text := e.Text
	if len(text) > 40 {
		text = text[:40] + "..."
	}
	switch {
	case e.Kind == ErrSyntax && e.Text == "{":
		return fmt.Sprintf(`unclosed "{" at offset %d (write "{{" for a literal brace)`, e.Offset)
	case e.Kind == ErrSyntax:
		return fmt.Sprintf(`lone "}" at offset %d (write "}}" for a literal brace)`, e.Offset)
	case e.Kind == ErrUnknown:
		return fmt.Sprintf("unknown placeholder %q at offset %d (known: {index} {line} {job} {task} {attempt})", text, e.Offset)
	default:
		return fmt.Sprintf("placeholder %q at offset %d has no value for this task", text, e.Offset)
	}
}

func (e *Error) Unwrap() error { return e.Kind }

// Expand returns s with each placeholder replaced by its value from v and
// each "{{" or "}}" by a single brace. A string without braces is returned
// as is, without allocating, which is the common case on the hot path.
func Expand(s string, v Values) (string, error) {
	if !strings.ContainsAny(s, "{}") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	err := scan(s,
		func(lit string) { b.WriteString(lit) },
		func(name string, off int) error {
			val, ok := v.value(name)
			if !ok {
				return &Error{Offset: off, Text: "{" + name + "}", Kind: ErrUnavailable}
			}
			b.WriteString(val)
			return nil
		})
	if err != nil {
		return "", err
	}
	return b.String(), nil
}

// Check reports the syntax errors and unknown names Expand would report for
// s, whatever the values.
func Check(s string) error {
	if !strings.ContainsAny(s, "{}") {
		return nil
	}
	return scan(s, func(string) {}, func(string, int) error { return nil })
}

// Uses returns the names of the placeholders s mentions, each once, in order
// of first mention; nil means s expands to itself (apart from "{{" and "}}").
// Its errors are Check's.
func Uses(s string) (used []string, err error) {
	if !strings.ContainsAny(s, "{}") {
		return nil, nil
	}
	err = scan(s, func(string) {}, func(name string, _ int) error {
		if !slices.Contains(used, name) {
			used = append(used, name)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return used, nil
}

// value returns the value of the named placeholder and whether it has one.
func (v *Values) value(name string) (string, bool) {
	switch name {
	case Index:
		return v.Index, v.HasIndex
	case Line:
		return v.Line, v.HasLine
	case Job:
		return v.Job, true
	case Task:
		return v.Task, true
	default:
		return v.Attempt, true
	}
}

// scan is the one parser behind Expand, Check and Uses. It calls lit with
// each run of literal text (an escaped brace ends a run) and ref with the
// name and offset of each placeholder, stopping at the first syntax error,
// unknown name, or error from ref.
func scan(s string, lit func(string), ref func(name string, off int) error) error {
	start := 0 // start of the pending literal text
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '}':
			if i+1 < len(s) && s[i+1] == '}' {
				lit(s[start : i+1])
				i++
				start = i + 1
				continue
			}
			return &Error{Offset: i, Text: "}", Kind: ErrSyntax}
		case '{':
			if i+1 < len(s) && s[i+1] == '{' {
				lit(s[start : i+1])
				i++
				start = i + 1
				continue
			}
			end := strings.IndexAny(s[i+1:], "{}")
			if end < 0 || s[i+1+end] == '{' {
				return &Error{Offset: i, Text: "{", Kind: ErrSyntax}
			}
			end += i + 1 // s[end] is the closing brace
			name := s[i+1 : end]
			if !slices.Contains(names[:], name) {
				return &Error{Offset: i, Text: s[i : end+1], Kind: ErrUnknown}
			}
			lit(s[start:i])
			if err := ref(name, i); err != nil {
				return err
			}
			i = end
			start = end + 1
		}
	}
	lit(s[start:])
	return nil
}
