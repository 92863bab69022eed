package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DataObject is one object (or, in a listing with a delimiter, one folder)
// in the data store, named data://CONTAINER/PATH.
type DataObject struct {
	Container  string     `json:"container"`
	Path       string     `json:"path"`
	SizeBytes  int64      `json:"size_bytes"`
	SHA256     string     `json:"sha256,omitempty"`
	ModifiedAt *time.Time `json:"modified_at,omitempty"`
	Dir        bool       `json:"dir,omitempty"`
}

// DataList is a page of a data store listing.
type DataList struct {
	Version       string       `json:"version"`
	Objects       []DataObject `json:"objects"`
	NextPageToken string       `json:"next_page_token,omitempty"`
}

// InputFile is a resource file staged into a task's working directory
// before it runs. Source is data://C/P, a data://C/prefix/ (every object
// under it, keeping relative paths under Path), or an http(s):// URL.
type InputFile struct {
	Source string `json:"source"`
	Path   string `json:"path"`
	Mode   string `json:"mode,omitempty"` // octal, e.g. "0755"
}

// OutputFile is uploaded after a task's process ended, when When holds:
// success (default), failure or always. Pattern is a glob relative to the
// working directory ("**" spans directories); with a wildcard, or a
// Destination ending in '/', Destination is a prefix under which matches
// keep their paths, otherwise the full name of the one file.
type OutputFile struct {
	Pattern     string `json:"pattern"`
	Destination string `json:"destination"`
	When        string `json:"when,omitempty"`
}

// Data headers.
const (
	HeaderSHA256     = "Lote-Sha256"      // hex SHA-256 of the body (upload: declared; download: stored)
	HeaderContentKey = "Lote-Content-Key" // a name for the object's content, for caches
)

func dataPath(container, path string) string {
	p := "/v1/data/" + url.PathEscape(container)
	if path != "" {
		segs := strings.Split(path, "/")
		for i, s := range segs {
			segs[i] = url.PathEscape(s)
		}
		p += "/" + strings.Join(segs, "/")
	}
	return p
}

// PutData streams body (size bytes, or -1 when unknown) into
// data://container/path. sha256 is the body's hex SHA-256: the server
// refuses to store bytes that do not match it.
func (c *Client) PutData(ctx context.Context, container, path string, body io.Reader, size int64, sha256 string) (DataObject, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+dataPath(container, path), body)
	if err != nil {
		return DataObject{}, err
	}
	req.ContentLength = size
	if size == 0 {
		req.Body = http.NoBody
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Content-Type", "application/octet-stream")
	if sha256 != "" {
		req.Header.Set(HeaderSHA256, sha256)
	}
	var out DataObject
	err = c.send(req, &out)
	return out, err
}

// DataReader is an object being downloaded.
type DataReader struct {
	io.ReadCloser
	Size       int64
	SHA256     string // empty when the store does not know it
	ContentKey string
}

// GetData opens data://container/path for reading; the caller closes it.
// With head set, only the attributes are fetched (Body is empty).
func (c *Client) GetData(ctx context.Context, container, path string, head bool) (*DataReader, error) {
	method := http.MethodGet
	if head {
		method = http.MethodHead
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+dataPath(container, path), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return &DataReader{
		ReadCloser: resp.Body, Size: resp.ContentLength, SHA256: resp.Header.Get(HeaderSHA256),
		ContentKey: resp.Header.Get(HeaderContentKey),
	}, nil
}

// ListData lists objects under data://container/prefix, a page at a time;
// with delimiter, deeper levels fold into one dir entry each.
func (c *Client) ListData(ctx context.Context, container, prefix string, delimiter bool, pageToken string) (DataList, error) {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if delimiter {
		q.Set("delimiter", "/")
	}
	if pageToken != "" {
		q.Set("page_token", pageToken)
	}
	p := dataPath(container, "")
	if len(q) > 0 {
		p += "?" + q.Encode()
	}
	var out DataList
	err := c.do(ctx, http.MethodGet, p, nil, &out)
	return out, err
}

// DataContainers lists the containers that hold objects.
func (c *Client) DataContainers(ctx context.Context) (DataList, error) {
	var out DataList
	err := c.do(ctx, http.MethodGet, "/v1/data", nil, &out)
	return out, err
}

// DeleteData removes data://container/path.
func (c *Client) DeleteData(ctx context.Context, container, path string) error {
	return c.do(ctx, http.MethodDelete, dataPath(container, path), nil, nil)
}

func (c *Client) send(req *http.Request, out any) error {
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusError(resp)
	}
	return decodeJSON(resp.Body, out)
}

// ParseMode reads an input file's octal mode ("" = default).
func ParseMode(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, fmt.Errorf("mode %q: must be octal permissions like 0644 or 0755", s)
	}
	return uint32(m), nil
}
