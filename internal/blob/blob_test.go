package blob

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func TestCheckPath(t *testing.T) {
	for _, bad := range []string{"", "/etc/passwd", "../x", "a/../../x", "a//b", "./a", "a/.", "a\\b", "a\x00b"} {
		if err := CheckPath(bad); err == nil {
			t.Errorf("CheckPath(%q) accepted", bad)
		}
	}
	for _, ok := range []string{"a", "a/b.txt", "in/{index}.txt", "..a", "a..b/c"} {
		if err := CheckPath(ok); err != nil {
			t.Errorf("CheckPath(%q): %v", ok, err)
		}
	}
}

func TestParseRef(t *testing.T) {
	r, err := ParseRef("data://inputs/a/b.txt")
	if err != nil || r.Container != "inputs" || r.Path != "a/b.txt" || r.IsPrefix() {
		t.Fatalf("got %+v %v", r, err)
	}
	if r, err := ParseRef("data://results/j1/"); err != nil || !r.IsPrefix() {
		t.Fatalf("prefix: %+v %v", r, err)
	}
	for _, bad := range []string{"s3://x/y", "data://../x", "data://.hidden/x", "data://c/../../etc", "data:///abs"} {
		if _, err := ParseRef(bad); err == nil {
			t.Errorf("ParseRef(%q) accepted", bad)
		}
	}
}

func TestMatch(t *testing.T) {
	cases := []struct {
		pat, name string
		want      bool
	}{
		{"out.txt", "out.txt", true},
		{"*.txt", "a.txt", true},
		{"*.txt", "d/a.txt", false},
		{"**/*.txt", "a.txt", true},
		{"**/*.txt", "d/e/a.txt", true},
		{"out/**", "out/a/b", true},
		{"*", ".hidden", false},
		{".*", ".hidden", true},
		{"**/*.png", "x/.git/a.png", false},
	}
	for _, c := range cases {
		if got := Match(c.pat, c.name); got != c.want {
			t.Errorf("Match(%q, %q) = %v", c.pat, c.name, got)
		}
	}
	if b := GlobBase("out/**/*.png"); b != "out" {
		t.Errorf("GlobBase = %q", b)
	}
	if b := GlobBase("out/a.txt"); b != "out" {
		t.Errorf("GlobBase = %q", b)
	}
}

func tarOf(t *testing.T, add func(tw *tar.Writer)) *os.File {
	t.Helper()
	f, err := os.CreateTemp(t.TempDir(), "a.tar")
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	add(tw)
	tw.Close()
	return f
}

func file(tw *tar.Writer, name, body string) {
	tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write([]byte(body))
}

// TestUnpackRejects proves that no archive entry lands outside the root:
// "..", absolute names, links out, and a size cap.
func TestUnpackRejects(t *testing.T) {
	cases := map[string]func(tw *tar.Writer){
		"dotdot":   func(tw *tar.Writer) { file(tw, "../evil", "x") },
		"nested":   func(tw *tar.Writer) { file(tw, "a/../../evil", "x") },
		"absolute": func(tw *tar.Writer) { file(tw, "/tmp/evil", "x") },
		"symlink out": func(tw *tar.Writer) {
			tw.WriteHeader(&tar.Header{Name: "link", Linkname: "../../etc", Typeflag: tar.TypeSymlink})
		},
		"absolute symlink": func(tw *tar.Writer) {
			tw.WriteHeader(&tar.Header{Name: "link", Linkname: "/etc", Typeflag: tar.TypeSymlink})
		},
		"write through link": func(tw *tar.Writer) {
			// Even if a link got in, os.Root refuses to write through it.
			tw.WriteHeader(&tar.Header{Name: "d", Linkname: ".", Typeflag: tar.TypeSymlink})
			file(tw, "d/../../evil", "x")
		},
		"link out through a link": func(tw *tar.Writer) {
			// Each target stays inside on paper; together they lead out.
			tw.WriteHeader(&tar.Header{Name: "a", Linkname: "s/../evil", Typeflag: tar.TypeSymlink})
			tw.WriteHeader(&tar.Header{Name: "s", Linkname: ".", Typeflag: tar.TypeSymlink})
		},
		"link loop": func(tw *tar.Writer) {
			tw.WriteHeader(&tar.Header{Name: "x", Linkname: "y", Typeflag: tar.TypeSymlink})
			tw.WriteHeader(&tar.Header{Name: "y", Linkname: "x", Typeflag: tar.TypeSymlink})
		},
		"hardlink": func(tw *tar.Writer) {
			tw.WriteHeader(&tar.Header{Name: "h", Linkname: "/etc/passwd", Typeflag: tar.TypeLink})
		},
		"too big": func(tw *tar.Writer) { file(tw, "big", strings.Repeat("x", 2000)) },
	}
	for name, add := range cases {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "root")
			os.Mkdir(dir, 0o755)
			f := tarOf(t, add)
			defer f.Close()
			err := Unpack(f, dir, 1000)
			if err == nil {
				t.Fatal("accepted")
			}
			if _, err := os.Lstat(filepath.Join(parent, "evil")); err == nil {
				t.Fatal("wrote outside the root")
			}
		})
	}
}

func TestUnzipRejects(t *testing.T) {
	for _, name := range []string{"../evil", "/abs/evil", "a/../../evil"} {
		t.Run(name, func(t *testing.T) {
			parent := t.TempDir()
			dir := filepath.Join(parent, "root")
			os.Mkdir(dir, 0o755)
			f, _ := os.Create(filepath.Join(parent, "a.zip"))
			zw := zip.NewWriter(f)
			w, _ := zw.CreateHeader(&zip.FileHeader{Name: name})
			w.Write([]byte("x"))
			zw.Close()
			if err := Unpack(f, dir, 1<<20); !errors.Is(err, ErrUnsafe) {
				t.Fatalf("got %v, want ErrUnsafe", err)
			}
		})
	}
	// A zip symlink leaving the root.
	parent := t.TempDir()
	dir := filepath.Join(parent, "root")
	os.Mkdir(dir, 0o755)
	f, _ := os.Create(filepath.Join(parent, "l.zip"))
	zw := zip.NewWriter(f)
	h := &zip.FileHeader{Name: "l"}
	h.SetMode(os.ModeSymlink | 0o777)
	w, _ := zw.CreateHeader(h)
	w.Write([]byte("../../etc"))
	zw.Close()
	if err := Unpack(f, dir, 1<<20); !errors.Is(err, ErrUnsafe) {
		t.Fatalf("zip symlink: got %v", err)
	}
}

func TestTarRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "a/b"), 0o755)
	os.WriteFile(filepath.Join(src, "a/b/c.txt"), []byte("hello"), 0o600)
	os.Symlink("b/c.txt", filepath.Join(src, "a/l"))
	var buf bytes.Buffer
	if any, err := Tar(&buf, src); err != nil || !any {
		t.Fatal(any, err)
	}
	dst := t.TempDir()
	root, _ := os.OpenRoot(dst)
	defer root.Close()
	if err := Untar(&buf, root, 1<<20); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "a/l")); string(b) != "hello" {
		t.Fatalf("got %q", b)
	}
}

// storeSuite runs the same checks on each backend.
func storeSuite(t *testing.T, s *Store) {
	ctx := context.Background()
	r := Ref{Container: "inputs", Path: "dir/a.txt"}
	body := "hello world"
	sum := "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
	if _, _, err := s.Put(ctx, r, strings.NewReader(body), strings.Repeat("0", 64)); !errors.Is(err, ErrChecksum) {
		t.Fatalf("bad checksum: %v", err)
	}
	if _, err := s.Attributes(ctx, r); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a failed put left an object: %v", err)
	}
	n, got, err := s.Put(ctx, r, strings.NewReader(body), sum)
	if err != nil || n != int64(len(body)) || got != sum {
		t.Fatal(n, got, err)
	}
	a, err := s.Attributes(ctx, r)
	if err != nil || a.SHA256 != sum || a.Size != int64(len(body)) {
		t.Fatalf("%+v %v", a, err)
	}
	rc, err := s.Get(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != body {
		t.Fatalf("got %q", b)
	}
	s.Put(ctx, Ref{Container: "inputs", Path: "dir/b.txt"}, strings.NewReader("b"), "")
	objs, next, err := s.List(ctx, Ref{Container: "inputs", Path: "dir/"}, false, "", 100)
	if err != nil || len(objs) != 2 || next != "" || objs[0].Ref.Path != "dir/a.txt" {
		t.Fatalf("%+v %q %v", objs, next, err)
	}
	cs, err := s.Containers(ctx)
	if err != nil || len(cs) != 1 || cs[0] != "inputs" {
		t.Fatalf("%v %v", cs, err)
	}
	if err := s.Delete(ctx, r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, r); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func TestEmbeddedStore(t *testing.T) {
	s, err := Open(context.Background(), "", t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storeSuite(t, s)
}

// TestS3Store goes through the real S3 protocol against an in-process
// S3-compatible server.
func TestS3Store(t *testing.T) {
	backend := s3mem.New()
	backend.CreateBucket("lote")
	ts := httptest.NewServer(gofakes3.New(backend).Server())
	defer ts.Close()
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	t.Setenv("AWS_REGION", "us-east-1")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	s, err := Open(context.Background(), S3URL("lote", ts.URL), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storeSuite(t, s)
}
