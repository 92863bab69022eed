// Package blob is Lote's data store: where inputs, outputs, checkpoints and
// large logs live. It wraps one gocloud.dev/blob bucket (a folder under the
// server's directory by default, or any s3://, file://, mem:// URL) and maps
// the user's names, written data://CONTAINER/PATH, onto keys in it. Every
// name is checked here, so no request can reach outside its container, and
// every object written through Put carries its SHA-256, so readers verify
// what they get and nodes can cache by content.
package blob

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/gcerrors"

	// Drivers a --blob URL may name: azblob://, gs://, mem://, s3:// (file://
	// comes with fileblob above).
	_ "gocloud.dev/blob/azureblob"
	_ "gocloud.dev/blob/gcsblob"
	_ "gocloud.dev/blob/memblob"
	_ "gocloud.dev/blob/s3blob"
)

// Scheme prefixes names in the data store.
const Scheme = "data://"

// SystemContainer holds what Lote itself writes (checkpoints, large logs,
// inputs the CLI uploaded for a submission, application packages).
// Containers starting with '_' are reserved; the server decides what users
// may do in this one.
const SystemContainer = "_lote"

// MetaSHA256 is the metadata key holding an object's hex SHA-256.
const MetaSHA256 = "sha256"

// ErrNotFound is returned for a missing object.
var ErrNotFound = errors.New("no such object")

// ErrChecksum is returned when the bytes written do not have the declared
// SHA-256; the object is then not written.
var ErrChecksum = errors.New("checksum mismatch")

// Store is an open data store.
type Store struct {
	b *blob.Bucket
}

// Open opens the store at url, or a folder "blob" under dir when url is
// empty (the embedded default).
func Open(ctx context.Context, url, dir string) (*Store, error) {
	if url == "" {
		path := filepath.Join(dir, "blob")
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, fmt.Errorf("blob: %w", err)
		}
		b, err := fileblob.OpenBucket(path, &fileblob.Options{CreateDir: true})
		if err != nil {
			return nil, fmt.Errorf("blob: opening %s: %w", path, err)
		}
		return &Store{b: b}, nil
	}
	b, err := blob.OpenBucket(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("blob: opening %s: %w", url, err)
	}
	return &Store{b: b}, nil
}

// Close releases the bucket.
func (s *Store) Close() error { return s.b.Close() }

// Ref is a parsed data://CONTAINER/PATH. Path may be empty (the whole
// container) or end in '/' (a prefix).
type Ref struct {
	Container string
	Path      string
}

func (r Ref) String() string { return Scheme + r.Container + "/" + r.Path }

// Key is the object's key in the bucket.
func (r Ref) Key() string { return r.Container + "/" + r.Path }

// IsPrefix reports whether r names everything under a prefix.
func (r Ref) IsPrefix() bool { return r.Path == "" || strings.HasSuffix(r.Path, "/") }

// ParseRef reads a data:// name and checks its container and path.
func ParseRef(s string) (Ref, error) {
	rest, ok := strings.CutPrefix(s, Scheme)
	if !ok {
		return Ref{}, fmt.Errorf("%q: must start with %s", s, Scheme)
	}
	c, p, _ := strings.Cut(rest, "/")
	r := Ref{Container: c, Path: p}
	if err := CheckContainer(c); err != nil {
		return r, err
	}
	if p != "" {
		if err := CheckPath(strings.TrimSuffix(p, "/")); err != nil {
			return r, err
		}
	}
	return r, nil
}

// CheckContainer checks a container name: 1-63 characters of letters,
// digits, '_', '-' and '.', not starting with '.'.
func CheckContainer(c string) error {
	if c == "" || len(c) > 63 || c[0] == '.' {
		return fmt.Errorf("container %q: must be 1-63 characters of letters, digits, '_', '-' and '.', not starting with '.'", c)
	}
	for i := 0; i < len(c); i++ {
		b := c[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-' || b == '.') {
			return fmt.Errorf("container %q: must be 1-63 characters of letters, digits, '_', '-' and '.', not starting with '.'", c)
		}
	}
	return nil
}

// CheckPath checks a relative slash-separated path, in the store or in a
// task's directory: not empty, not absolute, no empty, "." or ".."
// segments, no backslashes, NUL or other control characters, at most 1024
// bytes. A path that passes cannot leave the directory it is joined to
// (symlinks aside, which the writers check separately).
func CheckPath(p string) error {
	switch {
	case p == "":
		return errors.New("path is empty")
	case len(p) > 1024:
		return fmt.Errorf("path %q…: longer than 1024 bytes", p[:40])
	case strings.HasPrefix(p, "/"):
		return fmt.Errorf("path %q: must be relative, not absolute", p)
	}
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "":
			return fmt.Errorf("path %q: empty segment", p)
		case ".", "..":
			return fmt.Errorf("path %q: %q segments are not allowed", p, seg)
		}
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f || r == '\\' {
			return fmt.Errorf("path %q: control characters and backslashes are not allowed", p)
		}
	}
	return nil
}

// Attrs describes an object.
type Attrs struct {
	Size    int64
	SHA256  string // hex; empty when the object was written outside Lote
	MD5     string // hex, when the store keeps one
	ETag    string
	ModTime time.Time
}

// ContentKey names the object's content for caching: its SHA-256 when
// known, else its MD5, else its ETag and time; always with its size.
func (a Attrs) ContentKey() string {
	switch {
	case a.SHA256 != "":
		return fmt.Sprintf("sha256-%s-%d", a.SHA256, a.Size)
	case a.MD5 != "":
		return fmt.Sprintf("md5-%s-%d", a.MD5, a.Size)
	}
	h := sha256.Sum256([]byte(a.ETag + "|" + a.ModTime.UTC().Format(time.RFC3339Nano)))
	return fmt.Sprintf("etag-%s-%d", hex.EncodeToString(h[:12]), a.Size)
}

func notFound(err error) error {
	if gcerrors.Code(err) == gcerrors.NotFound {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return err
}

// Attributes returns an object's attributes.
func (s *Store) Attributes(ctx context.Context, r Ref) (Attrs, error) {
	a, err := s.b.Attributes(ctx, r.Key())
	if err != nil {
		return Attrs{}, notFound(err)
	}
	out := Attrs{Size: a.Size, SHA256: a.Metadata[MetaSHA256], ETag: a.ETag, ModTime: a.ModTime}
	if len(a.MD5) > 0 {
		out.MD5 = hex.EncodeToString(a.MD5)
	}
	return out, nil
}

// Get opens an object for reading.
func (s *Store) Get(ctx context.Context, r Ref) (io.ReadCloser, error) {
	rd, err := s.b.NewReader(ctx, r.Key(), nil)
	if err != nil {
		return nil, notFound(err)
	}
	return rd, nil
}

// Put streams body into the object. When sha256Hex is set, the bytes must
// hash to it, or nothing is written and ErrChecksum returned; it is stored
// with the object either way (computed when not given is impossible before
// the write, so then the object has none). It returns the size and hash.
func (s *Store) Put(ctx context.Context, r Ref, body io.Reader, sha256Hex string) (int64, string, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	opts := &blob.WriterOptions{DisableContentTypeDetection: true, ContentType: "application/octet-stream"}
	if sha256Hex != "" {
		opts.Metadata = map[string]string{MetaSHA256: strings.ToLower(sha256Hex)}
	}
	w, err := s.b.NewWriter(wctx, r.Key(), opts)
	if err != nil {
		return 0, "", fmt.Errorf("writing %s: %w", r, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(w, h), body)
	sum := hex.EncodeToString(h.Sum(nil))
	if err == nil && sha256Hex != "" && !strings.EqualFold(sum, sha256Hex) {
		err = fmt.Errorf("writing %s: %w: declared %s, got %s", r, ErrChecksum, sha256Hex, sum)
	}
	if err != nil {
		cancel() // aborts the write: the old object, if any, stays
		w.Close()
		return n, sum, err
	}
	if err := w.Close(); err != nil {
		return n, sum, fmt.Errorf("writing %s: %w", r, err)
	}
	return n, sum, nil
}

// Delete removes an object.
func (s *Store) Delete(ctx context.Context, r Ref) error {
	return notFound(s.b.Delete(ctx, r.Key()))
}

// Object is one entry of a listing.
type Object struct {
	Ref     Ref
	Size    int64
	ModTime time.Time
	Dir     bool // a common prefix, when listing with a delimiter
}

// List returns up to max objects under r (a prefix) in key order, starting
// after the page token; it returns the next token, empty at the end. With
// delim, deeper levels are folded into one Dir entry each.
func (s *Store) List(ctx context.Context, r Ref, delim bool, token string, max int) ([]Object, string, error) {
	opts := &blob.ListOptions{Prefix: r.Key()}
	if delim {
		opts.Delimiter = "/"
	}
	tok := blob.FirstPageToken
	if token != "" {
		var err error
		if tok, err = base64.RawURLEncoding.DecodeString(token); err != nil || len(tok) == 0 {
			return nil, "", fmt.Errorf("listing %s: bad page token", r)
		}
	}
	page, next, err := s.b.ListPage(ctx, tok, max, opts)
	if errors.Is(err, io.EOF) {
		page, next, err = nil, nil, nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("listing %s: %w", r, err)
	}
	out := make([]Object, 0, len(page))
	for _, o := range page {
		c, p, _ := strings.Cut(o.Key, "/")
		out = append(out, Object{Ref: Ref{Container: c, Path: p}, Size: o.Size, ModTime: o.ModTime, Dir: o.IsDir})
	}
	return out, base64.RawURLEncoding.EncodeToString(next), nil
}

// Containers lists the containers that hold at least one object.
func (s *Store) Containers(ctx context.Context) ([]string, error) {
	var out []string
	it := s.b.List(&blob.ListOptions{Delimiter: "/"})
	for {
		o, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listing containers: %w", err)
		}
		if o.IsDir {
			out = append(out, strings.TrimSuffix(o.Key, "/"))
		}
	}
}

// HashingReader hashes what is read through it.
type HashingReader struct {
	R io.Reader
	H hash.Hash
	N int64
}

// NewHashingReader wraps r with a SHA-256.
func NewHashingReader(r io.Reader) *HashingReader { return &HashingReader{R: r, H: sha256.New()} }

func (h *HashingReader) Read(p []byte) (int, error) {
	n, err := h.R.Read(p)
	h.H.Write(p[:n])
	h.N += int64(n)
	return n, err
}

// Sum is the hex SHA-256 of what was read.
func (h *HashingReader) Sum() string { return hex.EncodeToString(h.H.Sum(nil)) }

// FileSHA256 hashes a file by streaming it.
func FileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", n, fmt.Errorf("hashing %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// S3URL is the --blob URL of a bucket on an S3-compatible server at
// endpoint (http:// or https://), with path-style addressing as such
// servers (MinIO, Ceph, gofakes3) expect.
func S3URL(bucket, endpoint string) string {
	u := "s3://" + bucket + "?region=us-east-1&use_path_style=true&endpoint=" + endpoint
	if strings.HasPrefix(endpoint, "http://") {
		u += "&disable_https=true"
	}
	return u
}

// MaxInlineLog is how much of each output stream travels inline with a
// completion report and is stored packed; a longer stream is also uploaded
// whole to LogRef.
const MaxInlineLog = 1 << 20

// LogRef is where an attempt's stdout.txt or stderr.txt over MaxInlineLog
// is kept whole, so large logs survive the node without a million small
// logs becoming a million blobs.
func LogRef(job, task string, attempt int, name string) Ref {
	return Ref{Container: SystemContainer, Path: fmt.Sprintf("logs/%s/%s/%d/%s", job, task, attempt, name)}
}
