package blob

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// ErrUnsafe is returned for an archive entry or a path that would leave its
// root: absolute, with "..", or a link pointing outside.
var ErrUnsafe = errors.New("unsafe path")

// checkEntry cleans an archive entry name ("./a/b/" → "a/b") and refuses
// names that are absolute or climb out.
func checkEntry(name string) (string, error) {
	if strings.HasPrefix(name, "/") || strings.Contains(name, "\\") {
		return "", fmt.Errorf("%w: entry %q is absolute or has backslashes", ErrUnsafe, name)
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", fmt.Errorf("%w: entry %q has a \"..\" segment", ErrUnsafe, name)
		}
	}
	c := path.Clean(name)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// linkInside reports whether a symlink at entry with target stays inside
// the root: relative, and never climbing above it.
func linkInside(entry, target string) bool {
	if target == "" || strings.HasPrefix(target, "/") {
		return false
	}
	p := path.Join(path.Dir(entry), target)
	return p != ".." && !strings.HasPrefix(p, "../")
}

// checkLinks resolves every symlink under root the way the kernel would,
// and removes and refuses one that leads out of root (or loops). Checking
// each link's target as it is unpacked is not enough: "a" → "s/../x" stays
// inside on paper, but leaves once a later entry makes "s" → ".".
func checkLinks(root *os.Root) error {
	return fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 || resolvesInside(root, p) {
			return err
		}
		root.Remove(p)
		return fmt.Errorf("%w: link %q leads out of the directory", ErrUnsafe, p)
	})
}

// maxLinkHops bounds the links followed resolving one path, as the kernel's
// ELOOP does.
const maxLinkHops = 40

// resolvesInside reports whether name, resolved component by component
// through the links under root, stays inside root. Components that do not
// exist resolve lexically.
func resolvesInside(root *os.Root, name string) bool {
	var done []string // resolved components: real directories (or missing)
	todo := strings.Split(name, "/")
	for hops := 0; len(todo) > 0; {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return false
			}
			done = done[:len(done)-1]
			continue
		}
		done = append(done, c)
		cur := strings.Join(done, "/")
		st, err := root.Lstat(cur)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			continue
		}
		if hops++; hops > maxLinkHops {
			return false
		}
		target, err := root.Readlink(cur)
		if err != nil || target == "" || path.IsAbs(target) {
			return false
		}
		done = done[:len(done)-1]
		todo = append(strings.Split(target, "/"), todo...)
	}
	return true
}

// Unpack extracts a .tar, .tar.gz or .zip (by its first bytes) from f into
// dir through an os.Root, so nothing lands outside dir: absolute names,
// ".." and links leaving dir are refused with ErrUnsafe, and more than
// maxBytes of content fails. Hard links and devices are refused.
func Unpack(f *os.File, dir string, maxBytes int64) error {
	var magic [4]byte
	n, _ := f.ReadAt(magic[:], 0)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if n == 4 && string(magic[:]) == "PK\x03\x04" {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		zr, err := zip.NewReader(f, st.Size())
		if err != nil {
			return fmt.Errorf("reading zip: %w", err)
		}
		return unzip(zr, root, maxBytes)
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	var r io.Reader = io.NewSectionReader(f, 0, st.Size())
	if n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("reading gzip: %w", err)
		}
		defer gz.Close()
		r = gz
	}
	return Untar(r, root, maxBytes)
}

// Untar extracts a tar stream into root (see Unpack).
func Untar(r io.Reader, root *os.Root, maxBytes int64) error {
	tr := tar.NewReader(r)
	budget := maxBytes
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return checkLinks(root)
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		name, err := checkEntry(h.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("unpacking %s: %w", name, err)
			}
		case tar.TypeReg:
			if h.Size > budget {
				return fmt.Errorf("unpacking %s: archive content over the %d-byte limit", name, maxBytes)
			}
			budget -= h.Size
			if err := writeEntry(root, name, mode, tr, h.Size); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if !linkInside(name, h.Linkname) {
				return fmt.Errorf("%w: link %q → %q leaves the directory", ErrUnsafe, name, h.Linkname)
			}
			if err := mkParent(root, name); err != nil {
				return err
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				return fmt.Errorf("unpacking %s: %w", name, err)
			}
		default:
			return fmt.Errorf("%w: entry %q has unsupported type %q", ErrUnsafe, name, h.Typeflag)
		}
	}
}

func unzip(zr *zip.Reader, root *os.Root, maxBytes int64) error {
	budget := maxBytes
	for _, zf := range zr.File {
		name, err := checkEntry(zf.Name)
		if err != nil {
			return err
		}
		if name == "" {
			continue
		}
		m := zf.Mode()
		switch {
		case m.IsDir():
			if err := root.MkdirAll(name, 0o755); err != nil {
				return fmt.Errorf("unpacking %s: %w", name, err)
			}
		case m&fs.ModeSymlink != 0:
			rc, err := zf.Open()
			if err != nil {
				return err
			}
			target, err := io.ReadAll(io.LimitReader(rc, 4096))
			rc.Close()
			if err != nil {
				return err
			}
			if !linkInside(name, string(target)) {
				return fmt.Errorf("%w: link %q → %q leaves the directory", ErrUnsafe, name, target)
			}
			if err := mkParent(root, name); err != nil {
				return err
			}
			if err := root.Symlink(string(target), name); err != nil {
				return fmt.Errorf("unpacking %s: %w", name, err)
			}
		case m.IsRegular():
			size := int64(zf.UncompressedSize64)
			if size < 0 || size > budget {
				return fmt.Errorf("unpacking %s: archive content over the %d-byte limit", name, maxBytes)
			}
			budget -= size
			rc, err := zf.Open()
			if err != nil {
				return fmt.Errorf("unpacking %s: %w", name, err)
			}
			err = writeEntry(root, name, m.Perm(), rc, size)
			rc.Close()
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: entry %q has unsupported mode %v", ErrUnsafe, name, m)
		}
	}
	return checkLinks(root)
}

func mkParent(root *os.Root, name string) error {
	if d := path.Dir(name); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("unpacking %s: %w", name, err)
		}
	}
	return nil
}

// writeEntry writes exactly size bytes (a lying header cannot make it write
// more) to name inside root; os.Root refuses to follow a link out.
func writeEntry(root *os.Root, name string, mode fs.FileMode, r io.Reader, size int64) error {
	if err := mkParent(root, name); err != nil {
		return err
	}
	if mode == 0 {
		mode = 0o644
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode|0o200)
	if err != nil {
		return fmt.Errorf("unpacking %s: %w", name, err)
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return fmt.Errorf("unpacking %s: %w", name, err)
	}
	return nil
}

// Tar writes dir's regular files, directories and symlinks as a tar
// stream. It does not follow symlinks. It reports whether dir held
// anything.
func Tar(w io.Writer, dir string) (bool, error) {
	tw := tar.NewWriter(w)
	any := false
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		} else if !info.Mode().IsRegular() && !info.IsDir() {
			return nil
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		if info.IsDir() {
			h.Name += "/"
		}
		any = true
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, io.LimitReader(f, info.Size()))
			f.Close()
			return err
		}
		return nil
	})
	if err != nil {
		return any, fmt.Errorf("archiving %s: %w", dir, err)
	}
	return any, tw.Close()
}
