package blob

import (
	"bytes"
	"compress/gzip"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzUnpack feeds arbitrary bytes to Unpack, as they are (a tar or, by its
// magic, a zip) and gzip-compressed (a .tar.gz), into a directory beside a
// sentinel. Whatever the bytes, nothing may be created, changed or removed
// outside the directory, and after a successful unpack every link inside it
// must resolve inside it. The seed corpus holds real archives with the
// classic escapes: "..", absolute names, links out, writes through links,
// links chained out, duplicate entries.
func FuzzUnpack(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, gz bool) {
		parent := t.TempDir()
		dir := filepath.Join(parent, "root")
		outside := filepath.Join(parent, "outside")
		sentinel := filepath.Join(outside, "sentinel")
		for _, d := range []string{dir, outside} {
			if err := os.Mkdir(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(sentinel, []byte("keep"), 0o644); err != nil {
			t.Fatal(err)
		}
		if gz {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(data)
			zw.Close()
			data = buf.Bytes()
		}
		archive := filepath.Join(outside, "archive")
		if err := os.WriteFile(archive, data, 0o644); err != nil {
			t.Fatal(err)
		}
		a, err := os.Open(archive)
		if err != nil {
			t.Fatal(err)
		}
		unpackErr := Unpack(a, dir, 1<<20)
		a.Close()

		want := map[string]bool{parent: true, dir: true, outside: true, sentinel: true, archive: true}
		filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				t.Fatalf("walking %s: %v", p, err)
			}
			if p == dir {
				return fs.SkipDir
			}
			if !want[p] {
				t.Fatalf("Unpack (err %v) created %s outside its directory", unpackErr, p)
			}
			return nil
		})
		if b, err := os.ReadFile(sentinel); err != nil || string(b) != "keep" {
			t.Fatalf("Unpack (err %v) changed a file outside its directory: %q, %v", unpackErr, b, err)
		}
		if unpackErr != nil {
			return
		}
		realDir, err := filepath.EvalSymlinks(dir)
		if err != nil {
			t.Fatal(err)
		}
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.Type()&fs.ModeSymlink == 0 {
				return nil
			}
			if to, err := filepath.EvalSymlinks(p); err == nil && to != realDir && !strings.HasPrefix(to, realDir+string(filepath.Separator)) {
				t.Fatalf("Unpack accepted a link %s that resolves to %s, outside its directory", p, to)
			}
			return nil
		})
	})
}

// FuzzConfine checks the lexical confinement every path from a request or
// an archive goes through: a path CheckPath accepts, an entry name
// checkEntry accepts and a link target linkInside accepts all stay inside
// the directory they are joined to.
func FuzzConfine(f *testing.F) {
	f.Fuzz(func(t *testing.T, name, target string) {
		const root = "/r"
		inside := func(p string) bool {
			return p == root || strings.HasPrefix(p, root+"/")
		}
		if err := CheckPath(name); err == nil {
			if j := path.Join(root, name); !inside(j) || j == root {
				t.Fatalf("CheckPath accepted %q, which joins to %s", name, j)
			}
			if strings.ContainsAny(name, "\x00\\") {
				t.Fatalf("CheckPath accepted %q with a NUL or backslash", name)
			}
		}
		clean, err := checkEntry(name)
		if err != nil {
			return
		}
		if j := path.Join(root, clean); !inside(j) {
			t.Fatalf("checkEntry accepted %q as %q, which joins to %s", name, clean, j)
		}
		if clean != "" && linkInside(clean, target) {
			if path.IsAbs(target) {
				t.Fatalf("linkInside accepted an absolute target %q", target)
			}
			if j := path.Join(root, path.Dir(clean), target); !inside(j) {
				t.Fatalf("linkInside accepted %q → %q, which resolves to %s", clean, target, j)
			}
		}
	})
}
