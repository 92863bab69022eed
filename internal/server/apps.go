package server

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/apppkg"
	"github.com/lotehq/lote/internal/blob"
)

// Application packages are plain objects under data://_lote/apps/ (see
// package apppkg); the server only checks and pins references at
// submission, before the core sees them, so a task's package version never
// changes under it when a newer one is uploaded later.

// resolveApps returns in with every task's packages pinned to a version: a
// bare NAME becomes the newest uploaded version of NAME. An unknown package
// or version is a 400 naming the field. in itself is not changed (it is
// the request's idempotency fingerprint).
func (s *Server) resolveApps(ctx context.Context, in api.TaskAdd, field string) (api.TaskAdd, error) {
	newest := map[string]string{}
	pin := func(spec *api.TaskSpec, f string) error {
		apps, err := s.pinApps(ctx, spec.Apps, field+f, newest)
		spec.Apps = apps
		return err
	}
	if in.Template != nil {
		tpl := *in.Template
		if err := pin(&tpl, "template."); err != nil {
			return in, err
		}
		in.Template = &tpl
	}
	if len(in.Tasks) > 0 {
		in.Tasks = slices.Clone(in.Tasks)
		for i := range in.Tasks {
			if err := pin(&in.Tasks[i], fmt.Sprintf("tasks[%d].", i)); err != nil {
				return in, err
			}
		}
	}
	return in, nil
}

// pinApps checks package references and pins each to a version (see
// resolveApps); field prefixes "apps[i]" in errors, newest caches lookups.
func (s *Server) pinApps(ctx context.Context, refs []string, field string, newest map[string]string) ([]string, error) {
	if len(refs) == 0 {
		return refs, nil
	}
	apps := make([]string, len(refs))
	for i, a := range refs {
		af := fmt.Sprintf("%sapps[%d]", field, i)
		r, err := apppkg.Parse(a)
		if err != nil {
			return refs, invalid(af, "%v", err)
		}
		if r.Version == "" {
			v, ok := newest[r.Name]
			if !ok {
				if v, err = s.newestApp(ctx, r.Name); err != nil {
					return refs, err
				}
				newest[r.Name] = v
			}
			if v == "" {
				return refs, invalid(af, "no application package %q (upload one with lote app upload)", r.Name)
			}
			r.Version = v
		} else if _, err := s.blob.Attributes(ctx, r.Blob()); err != nil {
			if errors.Is(err, blob.ErrNotFound) {
				return refs, invalid(af, "no application package %q", r.String())
			}
			return refs, err
		}
		apps[i] = r.String()
	}
	return apps, nil
}

// newestApp is the most recently uploaded version of a package ("" when
// there is none); equal upload times are ordered by version.
func (s *Server) newestApp(ctx context.Context, name string) (string, error) {
	prefix := blob.Ref{Container: blob.SystemContainer, Path: apppkg.NamePrefix(name)}
	var best apppkg.Ref
	var bestObj blob.Object
	tok := ""
	for {
		objs, next, err := s.blob.List(ctx, prefix, false, tok, maxListPage)
		if err != nil {
			return "", fmt.Errorf("listing versions of %s: %w", name, err)
		}
		for _, o := range objs {
			r, ok := apppkg.FromPath(o.Ref.Path)
			if !ok || r.Name != name {
				continue
			}
			if best.Version == "" || o.ModTime.After(bestObj.ModTime) || o.ModTime.Equal(bestObj.ModTime) && r.Version > best.Version {
				best, bestObj = r, o
			}
		}
		if tok = next; tok == "" {
			return best.Version, nil
		}
	}
}
