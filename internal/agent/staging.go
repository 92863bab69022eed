package agent

// Staging moves a task's files: before the process starts, inputs are
// fetched into the node's content-addressed cache and linked into the
// working directory, and a checkpoint left by an earlier attempt is
// restored; after the process ends, outputs are uploaded by condition, the
// checkpoint directory is saved when the attempt did not succeed, and logs
// over the inline limit are uploaded whole. Tasks without inputs, outputs
// or retries never reach this file, so staging costs them nothing.
//
//	assigned ──inputs?──► preparing (stage) ──► spawned ──exit──► upload ──► reported
//	    └──────── nothing to stage ────────────────┘         └── nothing to upload ──┘

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/blob"
	"github.com/lotehq/lote/internal/placeholder"
	"github.com/lotehq/lote/internal/proto"
	"github.com/lotehq/lote/internal/spawner"
)

// maxCheckpointBytes bounds what a restored checkpoint may unpack to.
const maxCheckpointBytes = 64 << 30

// cache is the node's content-addressed store of staged inputs
// (DESIGN §2: cache/). One download per content, however many tasks ask
// for it at once.
type cache struct {
	dir       string
	mu        sync.Mutex
	inflight  map[string]*flight
	downloads atomic.Int64
	hits      atomic.Int64
}

type flight struct {
	done chan struct{}
	err  error
}

func validKey(k string) bool {
	if k == "" || len(k) > 200 {
		return false
	}
	for i := 0; i < len(k); i++ {
		b := k[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '-') {
			return false
		}
	}
	return true
}

// get returns the cache file holding key's content, calling fetch(dst) to
// fill it when it is missing; concurrent callers for one key share one fetch.
func (c *cache) get(ctx context.Context, key string, fetch func(dst string) error) (string, error) {
	if !validKey(key) {
		return "", fmt.Errorf("bad content key %q", key)
	}
	p := filepath.Join(c.dir, key)
	for {
		if _, err := os.Stat(p); err == nil {
			c.hits.Add(1)
			return p, nil
		}
		c.mu.Lock()
		if f := c.inflight[key]; f != nil {
			c.mu.Unlock()
			select {
			case <-f.done:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			if f.err != nil {
				return "", f.err
			}
			continue
		}
		f := &flight{done: make(chan struct{})}
		c.inflight[key] = f
		c.mu.Unlock()
		if _, err := os.Stat(p); err == nil {
			f.err = nil
		} else {
			c.downloads.Add(1)
			f.err = fetch(p)
		}
		c.mu.Lock()
		delete(c.inflight, key)
		c.mu.Unlock()
		close(f.done)
		return p, f.err
	}
}

// dataClient is an API client authenticated as this node, for the data
// API; it follows a server that moved (lote up restarted elsewhere).
func (a *Agent) dataClient() (*api.Client, error) {
	base, ca, err := a.target()
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	tok := a.id.Token
	a.mu.Unlock()
	if tok == "" {
		return nil, errors.New("the node has not joined yet")
	}
	a.dcMu.Lock()
	defer a.dcMu.Unlock()
	key := base + "\x00" + ca + "\x00" + tok
	if a.dc == nil || a.dcKey != key {
		tc, err := a.tlsConfig(ca)
		if err != nil {
			return nil, err
		}
		a.dc, a.dcKey = api.NewClientTLS(base, tok, tc), key
	}
	return a.dc, nil
}

// needsStaging says whether a task must pass through preparing: it has
// inputs, or it is a retry that may have a checkpoint to restore.
func needsStaging(t *task) bool {
	return t.tpl != nil && (len(t.tpl.Inputs) > 0 || t.ref.Attempt > 1)
}

func (t *task) values() placeholder.Values {
	v := placeholder.Values{Job: t.ref.Job, Task: t.ref.Task, Attempt: strconv.Itoa(t.ref.Attempt), Line: t.line, HasLine: t.hasLine}
	if t.index >= 0 {
		v.Index, v.HasIndex = strconv.Itoa(t.index), true
	}
	return v
}

func checkpointRef(r proto.Ref) blob.Ref {
	return blob.Ref{Container: blob.SystemContainer, Path: "checkpoints/" + r.Job + "/" + r.Task + ".tar"}
}

// stageThenSpawn runs a task's staging off the agent's lock, then spawns it
// or reports why it could not.
func (a *Agent) stageThenSpawn(ctx context.Context, t *task) {
	err := a.stageInputs(ctx, t)
	a.mu.Lock()
	defer func() {
		a.mu.Unlock()
		a.wake()
	}()
	t.staging, t.cancel = false, nil
	switch {
	case t.killed || a.stopping:
		a.releaseLocked(t)
		a.finishWith(t, spawner.Exit{ID: t.id, ExitCode: -1, StartErr: "stopped while staging", EndedAt: time.Now()}, "", false)
	case err != nil:
		a.log.Warn("staging inputs failed", "task", t.id, "err", err)
		t.prepFailed = errors.Is(err, errPrepFailed)
		a.releaseLocked(t)
		a.finishWith(t, spawner.Exit{ID: t.id, ExitCode: -1, EndedAt: time.Now()}, "staging inputs: "+err.Error(), false)
	default:
		if err := a.spawn(t); err != nil {
			a.releaseLocked(t)
			ex := spawner.Exit{ID: t.id, ExitCode: -1, StartErr: err.Error(), EndedAt: time.Now()}
			if errors.Is(err, spawner.ErrClosed) {
				// Not the task's fault: the server runs it again.
				ex.StartErr, ex.Lost = "", true
			}
			a.finishWith(t, ex, "", false)
		} else {
			a.spawnedLocked(t, time.Now())
		}
	}
	a.startLocked()
}

// stageInputs restores a checkpoint (retries) and links the inputs into
// the working directory.
func (a *Agent) stageInputs(ctx context.Context, t *task) error {
	a.mu.Lock()
	cred := a.credLocked()
	a.mu.Unlock()
	_, wd, ckpt, err := a.makeDirs(t.ref, cred)
	if err != nil {
		return err
	}
	cl, err := a.dataClient()
	if err != nil {
		return err
	}
	if t.ref.Attempt > 1 {
		if err := restoreCheckpoint(ctx, cl, t.ref, ckpt); err != nil {
			return fmt.Errorf("restoring checkpoint: %w", err)
		}
		if err := chownTree(ckpt, cred); err != nil {
			return fmt.Errorf("restoring checkpoint: %w", err)
		}
	}
	if err := a.ensureJobPrep(ctx, t); err != nil {
		return err
	}
	if err := a.installApps(ctx, cl, t.tpl.Apps); err != nil {
		return err
	}
	return a.stageFiles(ctx, cl, t.tpl.Inputs, t.values(), wd, false)
}

// stageNodeTaskInputs stages a start, job preparation or job release
// task's inputs into its working directory wd, replacing what an earlier
// attempt staged there; only {job} has a value (job; "" for a start task).
func (a *Agent) stageNodeTaskInputs(ctx context.Context, inputs []proto.Input, wd, job string) error {
	if len(inputs) == 0 {
		return nil
	}
	cl, err := a.dataClient()
	if err != nil {
		return err
	}
	return a.stageFiles(ctx, cl, inputs, placeholder.Values{Job: job}, wd, true)
}

// stageFiles expands the inputs' placeholders with v and stages each one
// under wd; with replace, a file already there is replaced.
func (a *Agent) stageFiles(ctx context.Context, cl *api.Client, inputs []proto.Input, v placeholder.Values, wd string, replace bool) error {
	for i, in := range inputs {
		src, err := placeholder.Expand(in.Source, v)
		if err != nil {
			return fmt.Errorf("inputs[%d].source: %w", i, err)
		}
		dst, err := placeholder.Expand(in.Path, v)
		if err != nil {
			return fmt.Errorf("inputs[%d].path: %w", i, err)
		}
		if err := a.stageOne(ctx, cl, src, dst, os.FileMode(in.Mode), wd, replace); err != nil {
			return fmt.Errorf("%s → %s: %w", src, dst, err)
		}
	}
	return nil
}

// stageOne fetches one source (a file or everything under a prefix) and
// links it under wd.
func (a *Agent) stageOne(ctx context.Context, cl *api.Client, src, dst string, mode os.FileMode, wd string, replace bool) error {
	if !strings.HasPrefix(src, blob.Scheme) {
		cp, err := a.fetchHTTP(ctx, src)
		if err != nil {
			return err
		}
		return place(cp, wd, strings.TrimSuffix(dst, "/"), mode, replace)
	}
	ref, err := blob.ParseRef(src)
	if err != nil {
		return err
	}
	if !ref.IsPrefix() {
		if strings.HasSuffix(dst, "/") {
			dst += path.Base(ref.Path)
		}
		cp, err := a.fetchData(ctx, cl, ref)
		if err != nil {
			return err
		}
		return place(cp, wd, dst, mode, replace)
	}
	objs, err := blob.ListAll(ctx, cl, ref)
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(dst, "/")
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Path, ref.Path)
		if base != "." && base != "" {
			rel = base + "/" + rel
		}
		cp, err := a.fetchData(ctx, cl, blob.Ref{Container: o.Container, Path: o.Path})
		if err != nil {
			return err
		}
		if err := place(cp, wd, rel, mode, replace); err != nil {
			return err
		}
	}
	return nil
}

func shortHash(s string) string {
	h := blob.NewHashingReader(strings.NewReader(s))
	io.Copy(io.Discard, h)
	return h.Sum()[:32]
}

// fetchData puts a data store object in the cache, keyed by its content.
func (a *Agent) fetchData(ctx context.Context, cl *api.Client, ref blob.Ref) (string, error) {
	head, err := cl.GetData(ctx, ref.Container, ref.Path, true)
	if err != nil {
		return "", err
	}
	head.Close()
	return a.cache.get(ctx, head.ContentKey, func(dst string) error {
		_, err := blob.DownloadFile(ctx, cl, ref, dst, 0o444, nil)
		if err == nil {
			a.log.Info("input downloaded into the node cache", "source", ref.String(), "key", head.ContentKey)
		}
		return err
	})
}

// fetchHTTP downloads a URL into the cache under its content hash. The
// content is not known before the download, so repeated tasks download
// again but store one copy.
func (a *Agent) fetchHTTP(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	tmp := filepath.Join(a.cache.dir, ".http-"+shortHash(url+time.Now().String()))
	a.cache.downloads.Add(1)
	sum, err := blob.SaveVerified(resp.Body, resp.ContentLength, "", tmp, 0o444, url)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(tmp)
	if err != nil {
		return "", err
	}
	final := filepath.Join(a.cache.dir, fmt.Sprintf("sha256-%s-%d", sum, st.Size()))
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return "", err
	}
	return final, nil
}

// place links a cache file into wd at rel: a hard link to the read-only
// cache file, or a private copy when a mode was asked for (or linking is
// impossible). With replace, a file (or link) already at rel is removed
// first. rel was checked at submission; it is checked again here after
// expansion, and os.Root refuses to create anything through a link out of
// wd.
func place(cachePath, wd, rel string, mode os.FileMode, replace bool) error {
	if err := blob.CheckPath(rel); err != nil {
		return err
	}
	root, err := os.OpenRoot(wd)
	if err != nil {
		return err
	}
	defer root.Close()
	if d := path.Dir(rel); d != "." {
		if err := root.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if replace {
		if st, err := root.Lstat(rel); err == nil && !st.IsDir() {
			if err := root.Remove(rel); err != nil {
				return err
			}
		}
	}
	if mode == 0 {
		parent, err := realParent(wd, rel)
		if err != nil {
			return err
		}
		if err := os.Link(cachePath, filepath.Join(parent, path.Base(rel))); err == nil {
			return nil
		}
		mode = 0o444
	}
	src, err := os.Open(cachePath)
	if err != nil {
		return err
	}
	defer src.Close()
	f, err := root.OpenFile(rel, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// realParent resolves rel's parent directory and makes sure it is inside wd.
func realParent(wd, rel string) (string, error) {
	realWD, err := filepath.EvalSymlinks(wd)
	if err != nil {
		return "", err
	}
	p, err := filepath.EvalSymlinks(filepath.Join(wd, filepath.FromSlash(path.Dir(rel))))
	if err != nil {
		return "", err
	}
	if p != realWD && !strings.HasPrefix(p, realWD+string(filepath.Separator)) {
		return "", fmt.Errorf("%w: %s leads outside the working directory", blob.ErrUnsafe, rel)
	}
	return p, nil
}

// restoreCheckpoint replaces the local checkpoint directory with the one
// the last unsuccessful attempt saved, wherever it ran. No saved
// checkpoint leaves the directory as it is.
func restoreCheckpoint(ctx context.Context, cl *api.Client, r proto.Ref, ckpt string) error {
	ref := checkpointRef(r)
	tmp := ckpt + ".tar"
	if _, err := blob.DownloadFile(ctx, cl, ref, tmp, 0o600, nil); err != nil {
		if api.IsStatus(err, http.StatusNotFound) {
			return nil
		}
		return err
	}
	defer os.Remove(tmp)
	if err := os.RemoveAll(ckpt); err != nil {
		return err
	}
	if err := os.Mkdir(ckpt, 0o755); err != nil {
		return err
	}
	f, err := os.Open(tmp)
	if err != nil {
		return err
	}
	defer f.Close()
	return blob.Unpack(f, ckpt, maxCheckpointBytes)
}

// outcome of an exit, for upload conditions.
func succeeded(ex spawner.Exit) bool {
	return ex.ExitCode == 0 && ex.Signal == 0 && !ex.TimedOut && ex.StartErr == "" && !ex.Lost
}

// needsUpload says whether an ended attempt has anything to upload, so a
// plain task goes straight to its report.
func (a *Agent) needsUpload(t *task, ex spawner.Exit) bool {
	if t.tpl == nil {
		return false
	}
	if len(t.tpl.Outputs) > 0 {
		return true
	}
	dir := a.attemptDir(t.ref)
	for i, n := range []string{"stdout.txt", "stderr.txt"} {
		if ex.Written != nil {
			if ex.Written[i] > maxInlineLog {
				return true
			}
		} else if st, err := os.Stat(filepath.Join(dir, n)); err == nil && st.Size() > maxInlineLog {
			return true
		}
	}
	if !succeeded(ex) {
		ents, _ := os.ReadDir(filepath.Join(filepath.Dir(dir), "checkpoint"))
		return len(ents) > 0
	}
	return false
}

// uploadAfter uploads an ended attempt's outputs, checkpoint and large
// logs, then reports it.
func (a *Agent) uploadAfter(t *task, ex spawner.Exit) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	var stagingErr string
	logBlobs := false
	cl, err := a.dataClient()
	if err == nil {
		err = a.uploadOutputs(ctx, cl, t, succeeded(ex))
		if err != nil {
			stagingErr = "uploading outputs: " + err.Error()
		}
		if !succeeded(ex) {
			if err := a.saveCheckpoint(ctx, cl, t.ref); err != nil {
				a.log.Warn("saving checkpoint failed", "task", t.id, "err", err)
			}
		}
		if logBlobs, err = a.uploadLogs(ctx, cl, t.ref); err != nil {
			a.log.Warn("uploading logs failed", "task", t.id, "err", err)
		}
	} else {
		stagingErr = "uploading outputs: " + err.Error()
	}
	if stagingErr != "" {
		a.log.Warn("staging outputs failed", "task", t.id, "err", stagingErr)
	}
	a.mu.Lock()
	a.releaseLocked(t)
	a.finishWith(t, ex, stagingErr, logBlobs)
	a.startLocked()
	a.mu.Unlock()
	a.wake()
}

func (a *Agent) uploadOutputs(ctx context.Context, cl *api.Client, t *task, ok bool) error {
	wd := filepath.Join(a.attemptDir(t.ref), "wd")
	if t.tpl.Cwd != "" {
		return nil // a task running elsewhere has no working directory of ours to collect
	}
	v := t.values()
	for i, o := range t.tpl.Outputs {
		switch {
		case o.When == 0 && !ok, o.When == 1 && ok:
			continue
		}
		pat, err := placeholder.Expand(o.Pattern, v)
		if err != nil {
			return fmt.Errorf("outputs[%d].pattern: %w", i, err)
		}
		dest, err := placeholder.Expand(o.Dest, v)
		if err != nil {
			return fmt.Errorf("outputs[%d].destination: %w", i, err)
		}
		if err := blob.CheckPath(pat); err != nil {
			return fmt.Errorf("outputs[%d].pattern: %w", i, err)
		}
		ref, err := blob.ParseRef(dest)
		if err != nil {
			return fmt.Errorf("outputs[%d].destination: %w", i, err)
		}
		matches, err := globFiles(wd, pat)
		if err != nil {
			return err
		}
		if !blob.HasWildcard(pat) && len(matches) == 0 {
			return fmt.Errorf("output %s: no such file", pat)
		}
		base := blob.GlobBase(pat)
		for _, m := range matches {
			r := ref
			if blob.HasWildcard(pat) || ref.IsPrefix() {
				rel := m
				if base != "" {
					rel = strings.TrimPrefix(m, base+"/")
				}
				if !ref.IsPrefix() {
					r.Path += "/"
				}
				r.Path += rel
			}
			if err := blob.CheckPath(r.Path); err != nil {
				return fmt.Errorf("output %s: %w", m, err)
			}
			if _, err := blob.UploadFile(ctx, cl, filepath.Join(wd, filepath.FromSlash(m)), r, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// globFiles returns the regular files under wd matching pattern, as
// slash paths. A matching symlink is taken only when it resolves to a file
// inside wd; directories behind symlinks are not entered.
func globFiles(wd, pattern string) ([]string, error) {
	realWD, err := filepath.EvalSymlinks(wd)
	if err != nil {
		return nil, err
	}
	var out []string
	err = filepath.WalkDir(wd, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(wd, p)
		rel = filepath.ToSlash(rel)
		if rel == "." || d.IsDir() {
			return nil
		}
		if !blob.Match(pattern, rel) {
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := filepath.EvalSymlinks(p)
			if err != nil {
				return fmt.Errorf("output %s: %w", rel, err)
			}
			if !strings.HasPrefix(target, realWD+string(filepath.Separator)) {
				return fmt.Errorf("%w: output %s is a symlink pointing outside the working directory", blob.ErrUnsafe, rel)
			}
			if st, err := os.Stat(target); err != nil || !st.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		out = append(out, rel)
		return nil
	})
	return out, err
}

// saveCheckpoint uploads the checkpoint directory as one tar, replacing
// the previous one atomically, when it holds anything.
func (a *Agent) saveCheckpoint(ctx context.Context, cl *api.Client, r proto.Ref) error {
	taskDir := filepath.Dir(a.attemptDir(r))
	ckpt := filepath.Join(taskDir, "checkpoint")
	if ents, _ := os.ReadDir(ckpt); len(ents) == 0 {
		return nil
	}
	tmp := filepath.Join(taskDir, "checkpoint.upload.tar")
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	_, err = blob.Tar(f, ckpt)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	_, err = blob.UploadFile(ctx, cl, tmp, checkpointRef(r), nil)
	return err
}

// uploadLogs uploads stdout/stderr whole when they are over the inline
// limit; it reports whether it did.
func (a *Agent) uploadLogs(ctx context.Context, cl *api.Client, r proto.Ref) (bool, error) {
	dir := a.attemptDir(r)
	any := false
	for _, n := range []string{"stdout.txt", "stderr.txt"} {
		p := filepath.Join(dir, n)
		if st, err := os.Stat(p); err != nil || st.Size() <= maxInlineLog {
			continue
		}
		if _, err := blob.UploadFile(ctx, cl, p, blob.LogRef(r.Job, r.Task, r.Attempt, n), nil); err != nil {
			return any, err
		}
		any = true
	}
	return any, nil
}

// chownTree gives a freshly unpacked checkpoint to the run-as user cred (nil:
// nothing to do), so the next attempt can rewrite it. Lchown never follows a
// link out of the tree.
func chownTree(root string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	})
}
