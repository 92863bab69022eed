package cli

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/term"
)

// Tables are written as lines of tab-separated cells. layout aligns each
// block of consecutive lines that hold tabs into columns two spaces apart
// (as text/tabwriter would), and, given a width, cuts the last cell of a
// line that would overflow it, so a table fits the terminal. Lines without
// tabs (notes, join tokens) are never cut.

// minLastColumn is the least the last column keeps when cut.
const minLastColumn = 12

func layout(text []byte, width int) []byte {
	lines := strings.SplitAfter(string(text), "\n")
	var out bytes.Buffer
	for i := 0; i < len(lines); {
		if !strings.Contains(lines[i], "\t") {
			out.WriteString(lines[i])
			i++
			continue
		}
		j := i
		for j < len(lines) && strings.Contains(lines[j], "\t") {
			j++
		}
		writeBlock(&out, lines[i:j], width)
		i = j
	}
	return out.Bytes()
}

func writeBlock(out *bytes.Buffer, lines []string, width int) {
	rows := make([][]string, len(lines))
	var colWidth []int
	for i, l := range lines {
		rows[i] = strings.Split(strings.TrimSuffix(l, "\n"), "\t")
		for c, cell := range rows[i][:len(rows[i])-1] {
			if c == len(colWidth) {
				colWidth = append(colWidth, 0)
			}
			colWidth[c] = max(colWidth[c], utf8.RuneCountInString(cell))
		}
	}
	for i, cells := range rows {
		used := 0
		for c, cell := range cells[:len(cells)-1] {
			out.WriteString(cell)
			pad := colWidth[c] + 2 - utf8.RuneCountInString(cell)
			out.WriteString(strings.Repeat(" ", pad))
			used += colWidth[c] + 2
		}
		room := 0
		if width > 0 {
			room = max(width-used, minLastColumn)
		}
		out.WriteString(cut(cells[len(cells)-1], room))
		if strings.HasSuffix(lines[i], "\n") {
			out.WriteByte('\n')
		}
	}
}

// cut shortens s to room runes, the last one "…"; room 0 leaves it whole.
func cut(s string, room int) string {
	if room <= 0 || utf8.RuneCountInString(s) <= room {
		return s
	}
	r := []rune(s)
	return string(r[:room-1]) + "…"
}

// width is the terminal's width when stdout is one, else $COLUMNS when set,
// else 0: no limit (tables piped to a file keep every character).
func (a *app) width() int {
	if f, ok := a.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
			return w
		}
	}
	if w, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && w > 0 {
		return w
	}
	return 0
}
