package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/lotehq/lote/api"
)

// Transfers through the server's data API, shared by the CLI and agents.
// Both directions stream and check a SHA-256: uploads declare it (a first
// pass over the file computes it) and the server refuses other bytes;
// downloads compare what arrived with what the server stored.

// countingReader reports progress as bytes pass.
type countingReader struct {
	r        io.Reader
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 && c.progress != nil {
		c.progress(int64(n))
	}
	return n, err
}

// UploadFile streams a local file to ref. progress, when set, is called
// with the bytes sent as they go.
func UploadFile(ctx context.Context, cl *api.Client, path string, ref Ref, progress func(int64)) (api.DataObject, error) {
	sum, size, err := FileSHA256(path)
	if err != nil {
		return api.DataObject{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return api.DataObject{}, err
	}
	defer f.Close()
	obj, err := cl.PutData(ctx, ref.Container, ref.Path, &countingReader{r: io.LimitReader(f, size), progress: progress}, size, sum)
	if err != nil {
		return obj, fmt.Errorf("uploading %s to %s: %w", path, ref, err)
	}
	if obj.SHA256 != sum || obj.SizeBytes != size {
		return obj, fmt.Errorf("uploading %s to %s: %w: server stored %d bytes %s, sent %d bytes %s", path, ref, ErrChecksum, obj.SizeBytes, obj.SHA256, size, sum)
	}
	return obj, nil
}

// DownloadFile streams ref into dst through a temporary file beside it, so
// dst appears only complete and verified. It returns the content's SHA-256.
func DownloadFile(ctx context.Context, cl *api.Client, ref Ref, dst string, mode os.FileMode, progress func(int64)) (string, error) {
	rd, err := cl.GetData(ctx, ref.Container, ref.Path, false)
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w", ref, err)
	}
	defer rd.Close()
	return saveVerified(rd, rd.Size, rd.SHA256, dst, mode, progress, ref.String())
}

// saveVerified writes r to dst via a temporary file, checking size (when
// not negative) and the hex SHA-256 (when not empty).
func saveVerified(r io.Reader, size int64, want, dst string, mode os.FileMode, progress func(int64), what string) (string, error) {
	if mode == 0 {
		mode = 0o644
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".part-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), &countingReader{r: r, progress: progress})
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("downloading %s: %w", what, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if size >= 0 && n != size {
		return "", fmt.Errorf("downloading %s: got %d bytes, want %d", what, n, size)
	}
	if want != "" && want != sum {
		return "", fmt.Errorf("downloading %s: %w: got %s, want %s", what, ErrChecksum, sum, want)
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return "", err
	}
	return sum, nil
}

// SaveVerified is saveVerified for other sources (HTTP inputs).
func SaveVerified(r io.Reader, size int64, want, dst string, mode os.FileMode, what string) (string, error) {
	return saveVerified(r, size, want, dst, mode, nil, what)
}

// ListAll lists every object under a prefix ref, following pages.
func ListAll(ctx context.Context, cl *api.Client, ref Ref) ([]api.DataObject, error) {
	var out []api.DataObject
	tok := ""
	for {
		page, err := cl.ListData(ctx, ref.Container, ref.Path, false, tok)
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", ref, err)
		}
		out = append(out, page.Objects...)
		if tok = page.NextPageToken; tok == "" {
			return out, nil
		}
	}
}
