package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/lotehq/lote/api"
)

// emit prints a result in the chosen format: one JSON document carrying
// "version", the IDs alone, or a table.
func (a *app) emit(v any, ids []string, table func(w io.Writer)) error {
	switch {
	case a.output == "json":
		b, err := withVersion(v)
		if err != nil {
			return err
		}
		_, err = a.stdout.Write(append(b, '\n'))
		return err
	case a.quiet:
		for _, id := range ids {
			fmt.Fprintln(a.stdout, id)
		}
		return nil
	}
	var buf bytes.Buffer
	table(&buf)
	_, err := a.stdout.Write(layout(buf.Bytes(), a.width()))
	return err
}

// withVersion encodes v as a JSON object with "version" first.
func withVersion(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if len(b) > 0 && b[0] == '{' && !bytes.HasPrefix(b, []byte(`{"version"`)) {
		rest := b[1:]
		if len(rest) > 1 {
			rest = append([]byte{','}, rest...)
		}
		b = append([]byte(`{"version":"`+api.Version+`"`), rest...)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func isTTY(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress draws a one-line progress bar on a terminal.
type progress struct {
	w       io.Writer
	tty     bool
	start   time.Time
	lastLen int
}

func newProgress(w io.Writer) *progress {
	return &progress{w: w, tty: isTTY(w), start: time.Now()}
}

func (p *progress) update(c api.TaskCounts, total int) {
	if !p.tty || total == 0 {
		return
	}
	width := 30
	if f, ok := p.w.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 70 {
			width = min(50, w-60)
		}
	}
	done := c.Completed
	filled := done * width / total
	rate := float64(done) / time.Since(p.start).Seconds()
	eta := "-"
	if rate > 0 && done < total {
		eta = time.Duration(float64(total-done) / rate * float64(time.Second)).Round(time.Second).String()
	}
	line := fmt.Sprintf("[%s%s] %d/%d  ok %d  failed %d  running %d  %.0f/s  eta %s",
		strings.Repeat("#", filled), strings.Repeat(".", width-filled), done, total,
		c.Succeeded, c.Failed, c.Running, rate, eta)
	pad := ""
	if len(line) < p.lastLen {
		pad = strings.Repeat(" ", p.lastLen-len(line))
	}
	p.lastLen = len(line)
	fmt.Fprint(p.w, "\r"+line+pad)
}

func (p *progress) done() {
	if p.tty && p.lastLen > 0 {
		fmt.Fprintln(p.w)
	}
}
