package server

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/blob"
)

// The data API streams objects between clients (the CLI, agents) and the
// data store, so agents need no storage credentials of their own. Bodies are
// never held in memory: uploads are copied straight into the store's
// writer, downloads straight from its reader.

const maxListPage = 1000

// dataRef reads and checks the container and path of a data request.
func dataRef(r *http.Request, needPath bool) (blob.Ref, error) {
	ref := blob.Ref{Container: r.PathValue("container"), Path: r.PathValue("path")}
	if err := blob.CheckContainer(ref.Container); err != nil {
		return ref, invalid("container", "%v", err)
	}
	if needPath || ref.Path != "" {
		if err := blob.CheckPath(ref.Path); err != nil {
			return ref, invalid("path", "%v", err)
		}
	}
	return ref, nil
}

func dataErr(err error) error {
	switch {
	case errors.Is(err, blob.ErrNotFound):
		return notFound("no such object")
	case errors.Is(err, blob.ErrChecksum):
		return invalid(api.HeaderSHA256, "%v", err)
	}
	return err
}

func (s *Server) listContainers(w http.ResponseWriter, r *http.Request) error {
	cs, err := s.blob.Containers(r.Context())
	if err != nil {
		return err
	}
	out := api.DataList{Version: api.Version, Objects: []api.DataObject{}}
	for _, c := range s.visibleContainers(callerOf(r.Context()), cs) {
		out.Objects = append(out.Objects, api.DataObject{Container: c, Dir: true})
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) listData(w http.ResponseWriter, r *http.Request) error {
	ref, err := dataRef(r, false)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	prefix := q.Get("prefix")
	if strings.Contains(prefix, "..") || strings.HasPrefix(prefix, "/") {
		return invalid("prefix", "must be a relative path without '..'")
	}
	ref.Path = prefix
	if err := s.useData(r.Context(), ref, dataRead); err != nil {
		return err
	}
	delim := false
	switch q.Get("delimiter") {
	case "":
	case "/":
		delim = true
	default:
		return invalid("delimiter", "only / is supported")
	}
	objs, next, err := s.blob.List(r.Context(), ref, delim, q.Get("page_token"), maxListPage)
	if err != nil {
		if strings.Contains(err.Error(), "bad page token") {
			return invalid("page_token", "%v", err)
		}
		return err
	}
	out := api.DataList{Version: api.Version, Objects: make([]api.DataObject, 0, len(objs)), NextPageToken: next}
	for _, o := range objs {
		d := api.DataObject{Container: o.Ref.Container, Path: o.Ref.Path, SizeBytes: o.Size, Dir: o.Dir}
		if !o.ModTime.IsZero() {
			t := o.ModTime.UTC()
			d.ModifiedAt = &t
		}
		out.Objects = append(out.Objects, d)
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) getData(w http.ResponseWriter, r *http.Request) error {
	if r.PathValue("path") == "" {
		return s.listData(w, r)
	}
	ref, err := dataRef(r, true)
	if err != nil {
		return err
	}
	if err := s.useData(r.Context(), ref, dataRead); err != nil {
		return err
	}
	a, err := s.blob.Attributes(r.Context(), ref)
	if err != nil {
		return dataErr(err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(a.Size, 10))
	h.Set(api.HeaderContentKey, a.ContentKey())
	if a.SHA256 != "" {
		h.Set(api.HeaderSHA256, a.SHA256)
	}
	if !a.ModTime.IsZero() {
		h.Set("Last-Modified", a.ModTime.UTC().Format(http.TimeFormat))
	}
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	rc, err := s.blob.Get(r.Context(), ref)
	if err != nil {
		h.Del("Content-Length")
		return dataErr(err)
	}
	defer rc.Close()
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc) // a failure mid-body can only cut the response short; the client's length and hash checks see it
	return nil
}

func (s *Server) putData(w http.ResponseWriter, r *http.Request) error {
	ref, err := dataRef(r, true)
	if err != nil {
		return err
	}
	if strings.HasPrefix(ref.Container, "_") && ref.Container != blob.SystemContainer {
		return invalid("container", "containers starting with '_' are reserved")
	}
	sum := r.Header.Get(api.HeaderSHA256)
	if sum != "" && len(sum) != 64 {
		return invalid(api.HeaderSHA256, "must be 64 hex digits")
	}
	if id := callerOf(r.Context()); ref.Container == blob.SystemContainer && id.role == RoleUser &&
		strings.HasPrefix(ref.Path, "uploads/") && !strings.HasPrefix(ref.Path, "uploads/"+sum+"/") {
		return invalid(api.HeaderSHA256, "an upload to data://%s/uploads/SHA256/NAME must declare that SHA-256", blob.SystemContainer)
	}
	if err := s.useData(r.Context(), ref, dataWrite); err != nil {
		return err
	}
	n, got, err := s.blob.Put(r.Context(), ref, r.Body, sum)
	if err != nil {
		return dataErr(err)
	}
	now := time.Now().UTC()
	return writeJSON(w, http.StatusCreated, api.DataObject{
		Container: ref.Container, Path: ref.Path, SizeBytes: n, SHA256: got, ModifiedAt: &now,
	})
}

func (s *Server) deleteData(w http.ResponseWriter, r *http.Request) error {
	ref, err := dataRef(r, true)
	if err != nil {
		return err
	}
	if err := s.useData(r.Context(), ref, dataRemove); err != nil {
		return err
	}
	if err := s.blob.Delete(r.Context(), ref); err != nil {
		return dataErr(err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
