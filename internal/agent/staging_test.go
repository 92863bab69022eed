package agent

import (
	"os"
	"path/filepath"
	"testing"
)

// TestPlaceReplace: a start task's retry stages its inputs again over what
// the last attempt staged (replace), removing a link the task left at the
// target without touching what it points to; a task's fresh working
// directory keeps refusing a second file at one path.
func TestPlaceReplace(t *testing.T) {
	dir := t.TempDir()
	wd := filepath.Join(dir, "wd")
	outside := filepath.Join(dir, "outside.txt")
	v1, v2 := filepath.Join(dir, "v1"), filepath.Join(dir, "v2")
	for p, body := range map[string]string{outside: "host file", v1: "one", v2: "two"} {
		if err := os.WriteFile(p, []byte(body), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(wd, 0o755); err != nil {
		t.Fatal(err)
	}
	read := func(rel string) string {
		b, _ := os.ReadFile(filepath.Join(wd, rel))
		return string(b)
	}

	for _, mode := range []os.FileMode{0, 0o755} {
		if err := place(v1, wd, "bin/a", mode, true); err != nil {
			t.Fatalf("mode %o: first staging: %v", mode, err)
		}
		if err := place(v2, wd, "bin/a", mode, true); err != nil || read("bin/a") != "two" {
			t.Fatalf("mode %o: restaging gave %q, %v; want the new content", mode, read("bin/a"), err)
		}
		if err := place(v1, wd, "bin/a", mode, false); err == nil {
			t.Errorf("mode %o: staging over an existing file without replace succeeded", mode)
		}
		os.Remove(filepath.Join(wd, "bin/a"))
	}

	if err := os.Symlink(outside, filepath.Join(wd, "link")); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []os.FileMode{0, 0o644} {
		if err := place(v2, wd, "link", mode, true); err != nil || read("link") != "two" {
			t.Fatalf("mode %o: staging over a link gave %q, %v", mode, read("link"), err)
		}
		if b, _ := os.ReadFile(outside); string(b) != "host file" {
			t.Fatalf("mode %o: the link's target was written: %q", mode, b)
		}
		os.Remove(filepath.Join(wd, "link"))
		os.Symlink(outside, filepath.Join(wd, "link"))
	}
}
