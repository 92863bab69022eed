package agent

// Application packages are installed once per node, before the first task
// that names them starts, into applications/NAME/VERSION: the archive is
// downloaded through the data API, unpacked with blob.Unpack into a
// temporary directory beside the target (no absolute names, no '..', no
// link leaving it, a size cap) and renamed into place, so an install is
// either whole or absent, also across agent restarts.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/apppkg"
	"github.com/lotehq/lote/internal/blob"
)

// appInstaller serializes installs per package version; its zero value is
// ready to use.
type appInstaller struct {
	mu        sync.Mutex
	installed map[string]bool
	locks     map[string]*sync.Mutex
}

// appDir is where a package version is installed on this node.
func (a *Agent) appDir(r apppkg.Ref) string {
	return filepath.Join(a.cfg.Dir, "applications", r.Name, r.Version)
}

// appsReady reports whether every package the task names is installed
// already, so that a task needs no staging on their account.
func (a *Agent) appsReady(t *task) bool {
	if t.tpl == nil || len(t.tpl.Apps) == 0 {
		return true
	}
	a.apps.mu.Lock()
	defer a.apps.mu.Unlock()
	for _, s := range t.tpl.Apps {
		if !a.apps.installed[s] {
			return false
		}
	}
	return true
}

// installApps installs the task's packages that are not on the node yet.
func (a *Agent) installApps(ctx context.Context, cl *api.Client, apps []string) error {
	for i, s := range apps {
		r, err := apppkg.Parse(s)
		if err == nil && r.Version == "" {
			err = errors.New("no version")
		}
		if err != nil {
			return fmt.Errorf("apps[%d]: %w", i, err)
		}
		if err := a.installApp(ctx, cl, r); err != nil {
			return fmt.Errorf("installing package %s: %w", r, err)
		}
	}
	return nil
}

func (a *Agent) installApp(ctx context.Context, cl *api.Client, r apppkg.Ref) error {
	key := r.String()
	a.apps.mu.Lock()
	if a.apps.installed[key] {
		a.apps.mu.Unlock()
		return nil
	}
	if a.apps.locks == nil {
		a.apps.locks, a.apps.installed = map[string]*sync.Mutex{}, map[string]bool{}
	}
	l := a.apps.locks[key]
	if l == nil {
		l = &sync.Mutex{}
		a.apps.locks[key] = l
	}
	a.apps.mu.Unlock()
	l.Lock()
	defer l.Unlock()
	dir := a.appDir(r)
	if _, err := os.Stat(dir); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := a.unpackApp(ctx, cl, r, dir); err != nil {
			return err
		}
	}
	a.apps.mu.Lock()
	a.apps.installed[key] = true
	a.apps.mu.Unlock()
	return nil
}

func (a *Agent) unpackApp(ctx context.Context, cl *api.Client, r apppkg.Ref, dir string) error {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+r.Version+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	archive := tmp + ".pkg"
	defer os.Remove(archive)
	if _, err := blob.DownloadFile(ctx, cl, r.Blob(), archive, 0o600, nil); err != nil {
		if api.IsStatus(err, http.StatusNotFound) {
			return fmt.Errorf("no package %s in the data store", r)
		}
		return err
	}
	f, err := os.Open(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := blob.Unpack(f, tmp, apppkg.MaxUnpacked); err != nil {
		return err
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	a.log.Info("application package installed", "package", r.String(), "dir", dir)
	return nil
}

// appEnv is LOTE_APP_<NAME>_<VERSION> and LOTE_APP_<NAME> for each of a
// task's packages.
func (a *Agent) appEnv(apps []string) []string {
	var env []string
	for _, s := range apps {
		r, err := apppkg.Parse(s)
		if err != nil || r.Version == "" {
			continue
		}
		versioned, plain := apppkg.EnvNames(r)
		dir := a.appDir(r)
		env = append(env, versioned+"="+dir, plain+"="+dir)
	}
	return env
}
