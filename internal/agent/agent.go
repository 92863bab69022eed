// Package agent is the node side of Lote: it dials out to the server, joins
// a pool, receives batches of assignments, runs them through the node's
// long-lived spawner, and reports starts and ends in batches. Reports are kept
// until the server acknowledges them, tasks keep running while the server is
// away, and a restarted agent adopts the tasks its spawner still runs.
//
// Task life on the agent:
//
//	assigned ──slots free──► spawned ──exit──► reported ──ack──► forgotten
//	   │  │                     ▲  │
//	   │  └─slots full──► chained  └─kill (drop, cancel, shutdown)
//	   └─revoke (not started)
//
// A chained task waits in the spawner to take the slot of a running task
// the moment that task ends (spawner.SpawnRequest.After), so a freed slot is
// filled without a round trip through the agent; the predecessor's exit says
// whether it started.
package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/blob"
	"github.com/lotehq/lote/internal/placeholder"
	"github.com/lotehq/lote/internal/proto"
	"github.com/lotehq/lote/internal/spawner"
	"github.com/lotehq/lote/internal/sysmon"
	"github.com/lotehq/lote/internal/tlsutil"
)

// Config configures an agent.
type Config struct {
	Server     string // base URL of the server
	ServerFile string // a client.json to re-read before every dial (lote up's agents follow a restarted server)
	CAFile     string
	// CertFile and KeyFile are the agent's client certificate, for a server
	// that requires mutual TLS (lote server issue-cert); its common name is
	// the node's name.
	CertFile  string
	KeyFile   string
	Pool      string
	JoinToken string
	Dir       string // node root directory
	Name      string // proposed node ID
	Slots     int
	Cores     int
	Memory    int64
	Labels    map[string]string
	// OrphanTimeout is how long the agent keeps its tasks without a server
	// before it stops them and exits.
	OrphanTimeout time.Duration
	// AdoptTimeout is how long the spawner keeps tasks running without an
	// agent, waiting for a restarted agent to adopt them. Keep it at most half
	// the server's heartbeat timeout: the server counts that timeout from the
	// agent's last frame, which may be a heartbeat interval before the agent
	// died, and then runs the tasks elsewhere, so the spawner must have
	// stopped them by then (never two live attempts).
	AdoptTimeout time.Duration
	Exe          string // the lote binary, for the spawner
	// RunAs is the user (name or numeric ID) tasks run as when the agent
	// runs as root and its pool does not allow root (DESIGN §6); empty means
	// DefaultRunAs. It must not be root itself.
	RunAs  string
	Logger *slog.Logger
}

// DefaultOrphanTimeout is DESIGN §4's "an agent with no server for 10 min
// stops its tasks and exits".
const DefaultOrphanTimeout = 10 * time.Minute

// maxInlineLog is how much of each output stream travels with a completion
// report; the rest stays on the node.
const maxInlineLog = blob.MaxInlineLog

// DefaultAdoptTimeout is half the server's default heartbeat timeout (see
// Config.AdoptTimeout).
const DefaultAdoptTimeout = 15 * time.Second

// DefaultRunAs is the user tasks run as under a root agent by default.
const DefaultRunAs = "nobody"

// ErrOrphaned is returned when the agent gave up waiting for a server.
var ErrOrphaned = errors.New("no server for too long: tasks stopped")

type identity struct {
	NodeID string `json:"node_id"`
	Token  string `json:"token"`
}

type task struct {
	ref     proto.Ref
	tpl     *proto.Template
	index   int
	line    string
	hasLine bool
	slots   int
	held    int    // slots counted in Agent.used: its slots from start until they are released
	id      string // spawner ID
	running bool   // started, staging, chained or uploading: not revocable, not in the queue
	staging bool   // inputs being staged; no process yet
	killed  bool   // dropped while staging: do not start it
	// prepFailed: the job's preparation task failed on this node, so the
	// attempt is reported without starting.
	prepFailed bool
	cancel     context.CancelFunc
	// dirsMade: its directories exist, made ahead by makeDirsAhead while
	// it was queued; dirsBusy: makeDirsAhead is making them now.
	dirsMade, dirsBusy bool
	// after is the spawner ID of the task this chained task waits on in
	// the spawner; it holds no slots until that task's exit says it
	// started. follower is the task chained on this one; depth counts the
	// chained tasks before this one in its slot.
	after    string
	follower *task
	depth    int
	ended    bool // its process has ended: nothing may be chained on it
}

type report struct {
	fin proto.Finished
	id  string // spawner ID, acknowledged to the spawner once the server has the report
	seq uint64
}

// Agent is a running node agent.
type Agent struct {
	cfg Config
	log *slog.Logger
	env []string

	sp           atomic.Pointer[spawner.Client]
	startSpawner func(context.Context) (*spawner.Client, error)

	mu        sync.Mutex
	id        identity
	templates map[string]*proto.Template
	dirMu     sync.Mutex
	jobDirs   map[string]bool  // job directories known to exist, guarded by dirMu
	spares    spares           // empty task trees to reuse (recycle.go), guarded by dirMu
	recycling []proto.Ref      // ended attempts whose trees makeDirsAhead may recycle
	aheadc    chan struct{}    // wakes makeDirsAhead
	tasks     map[string]*task // by spawner ID: queued and running
	queue     []*task
	used      int           // slots held by tasks
	bare      []*task       // tasks a queued one may be chained on (chain.go)
	runAvg    time.Duration // moving average of task run times, for chaining
	unsent    []*report
	inflight  []*report
	started   []proto.Started
	preparing []proto.Started
	revoked   []proto.RevokeAnswer
	logs      []proto.LogChunk
	seq       uint64
	notify    chan struct{}
	stopping  bool

	// runAs is the credential of Config.RunAs when the agent runs as root,
	// else nil (an unprivileged agent's tasks run as itself); allowRoot is
	// the pool's allow_root from the last Welcome.
	runAs     *syscall.Credential
	allowRoot bool

	cache *cache
	apps  appInstaller
	start startTaskState
	prep  jobPrepState
	dcMu  sync.Mutex
	dc    *api.Client // the data API client (dataClient)
	dcKey string
	certs *tlsutil.Reloader // the client certificate; nil without one
}

func (a *Agent) spawner() *spawner.Client { return a.sp.Load() }

func spawnID(r proto.Ref) string { return r.Job + "/" + r.Task + "/" + strconv.Itoa(r.Attempt) }

func parseSpawnID(id string) (proto.Ref, bool) {
	parts := strings.Split(id, "/")
	if len(parts) != 3 {
		return proto.Ref{}, false
	}
	n, err := strconv.Atoi(parts[2])
	return proto.Ref{Job: parts[0], Task: parts[1], Attempt: n}, err == nil
}

// Run runs the agent until ctx ends (stopping its tasks) or it is orphaned.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Slots <= 0 {
		cfg.Slots = runtime.NumCPU()
	}
	if cfg.Cores <= 0 {
		cfg.Cores = runtime.NumCPU()
	}
	if cfg.Memory <= 0 {
		cfg.Memory = totalMemory()
	}
	if cfg.OrphanTimeout == 0 {
		cfg.OrphanTimeout = DefaultOrphanTimeout
	}
	if cfg.AdoptTimeout == 0 {
		cfg.AdoptTimeout = DefaultAdoptTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var certs *tlsutil.Reloader
	if cfg.CertFile != "" || cfg.KeyFile != "" {
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return errors.New("agent: --cert-file and --key-file go together")
		}
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return fmt.Errorf("agent: client certificate: %w", err)
		}
		if cfg.Name == "" {
			cfg.Name = cert.Leaf.Subject.CommonName
		}
		if certs, err = tlsutil.NewReloader(cfg.CertFile, cfg.KeyFile); err != nil {
			return fmt.Errorf("agent: client certificate: %w", err)
		}
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	for _, d := range []string{"shared", "startup", "applications", "cache", "workitems"} {
		if err := os.MkdirAll(filepath.Join(cfg.Dir, d), 0o755); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	unlock, err := lockDir(cfg.Dir)
	if err != nil {
		return err
	}
	defer unlock()
	a := &Agent{
		cfg: cfg, log: cfg.Logger, env: sysmon.UserEnviron(), templates: map[string]*proto.Template{}, jobDirs: map[string]bool{},
		aheadc: make(chan struct{}, 1),
		tasks:  map[string]*task{}, notify: make(chan struct{}, 1),
		cache: &cache{dir: filepath.Join(cfg.Dir, "cache"), inflight: map[string]*flight{}},
		certs: certs,
	}
	if os.Geteuid() == 0 {
		if a.runAs, err = lookupRunAs(cfg.RunAs); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(cfg.Dir, "node.json")); err == nil {
		if err := json.Unmarshal(b, &a.id); err != nil {
			return fmt.Errorf("agent: %s: %w", filepath.Join(cfg.Dir, "node.json"), err)
		}
	}
	sock := filepath.Join(cfg.Dir, "spawner.sock")
	exe := cfg.Exe
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	a.startSpawner = func(ctx context.Context) (*spawner.Client, error) {
		sp, err := spawner.Ensure(ctx, sock, exe, "_spawner", "--socket", sock, "--state", filepath.Join(cfg.Dir, "spawner"),
			"--orphaned", cfg.AdoptTimeout.String())
		if err != nil {
			return nil, err
		}
		// Every task's environment starts with the agent's.
		if err := sp.SetBase(a.env); err != nil {
			sp.Close()
			return nil, err
		}
		return sp, nil
	}
	sp, err := a.startSpawner(ctx)
	if err != nil {
		return fmt.Errorf("agent: starting spawner: %w", err)
	}
	if err := a.adopt(ctx, sp); err != nil {
		sp.Close()
		return err
	}
	defer func() { a.spawner().Close() }()
	done := make(chan struct{})
	defer close(done)
	go a.exits(done)
	go a.makeDirsAhead(done)
	// The stream outlives ctx until shutdown has reported the stopped tasks.
	connCtx, cancelConn := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			a.shutdown(true)
			cancelConn()
		case <-connCtx.Done():
		}
	}()
	err = a.connectLoop(connCtx)
	if ctx.Err() == nil {
		// Orphaned or refused: no server will take the reports.
		a.shutdown(false)
		cancelConn()
	}
	<-stopped
	return err
}

// adopt makes sp the agent's spawner and takes over the tasks it runs that
// a previous agent (or this one, before the spawner restarted) started.
// sp's state is read before sp is stored: no spawn can go out on sp until
// the state has answered and adopt holds the lock, so a sent spawn sp does
// not know of went to an earlier spawner.
func (a *Agent) adopt(ctx context.Context, sp *spawner.Client) error {
	running, exited, err := sp.State(ctx)
	if err != nil {
		return fmt.Errorf("agent: listing spawner tasks: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.sp.Store(sp)
	alive := make(map[string]bool, len(running))
	for _, r := range running {
		alive[r.ID] = true
		ref, ok := parseSpawnID(r.ID)
		if !ok || a.tasks[r.ID] != nil {
			continue
		}
		a.tasks[r.ID] = &task{ref: ref, slots: 1, held: 1, id: r.ID, running: true}
		a.used++
	}
	// A chained task whose predecessor still runs was dropped with the
	// spawner's previous client. One whose predecessor ended learns its
	// fate from that exit, delivered again to this client.
	for _, t := range a.tasks {
		if p := a.tasks[t.after]; t.after != "" && p != nil && alive[p.id] {
			p.follower = nil
			a.requeueLocked(t)
			a.offerLocked(p)
		}
	}
	// A started task that the spawner neither runs nor holds an exit of
	// was never recorded: its spawner died between the fork and the
	// journal. No exit will come, so it is reported lost now, and the
	// server runs it again.
	if exited != nil {
		held := make(map[string]bool, len(exited))
		for _, id := range exited {
			held[id] = true
		}
		for _, t := range a.tasks {
			if t.running && !t.staging && t.after == "" && !alive[t.id] && !held[t.id] {
				a.log.Warn("task unknown to the new spawner: reporting it lost", "task", t.id)
				ex := spawner.Exit{ID: t.id, ExitCode: -1, Lost: true, EndedAt: time.Now()}
				a.chainEndedLocked(t, ex)
				a.releaseLocked(t)
				a.finishLocked(t, ex)
			}
		}
		// So is a start, job preparation or release task's attempt: it
		// ends lost, and its waiter retries it if it may.
		for id := range a.start.wait {
			if !alive[id] && !held[id] {
				a.log.Warn("node task unknown to the new spawner: its attempt is lost", "id", id)
				a.startTaskExitLocked(spawner.Exit{ID: id, ExitCode: -1, Lost: true, EndedAt: time.Now()})
			}
		}
	}
	a.startLocked()
	if len(running) > 0 {
		a.log.Info("adopted running tasks", "count", len(running))
	}
	return nil
}

// connectLoop keeps a stream to the server open, reconnecting with backoff.
func (a *Agent) connectLoop(ctx context.Context) error {
	lastConnected := time.Now()
	backoff := 100 * time.Millisecond
	for {
		connected, err := a.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			lastConnected = time.Now()
			backoff = 100 * time.Millisecond
		}
		var refused *refusedError
		if errors.As(err, &refused) {
			return err
		}
		if time.Since(lastConnected) > a.cfg.OrphanTimeout {
			a.log.Error("no server; stopping tasks", "for", a.cfg.OrphanTimeout)
			return ErrOrphaned
		}
		a.log.Info("server unreachable; retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// tlsConfig is the TLS configuration for talking to the server: trusting
// caFile when given, presenting the client certificate when the agent has
// one; nil when neither.
func (a *Agent) tlsConfig(caFile string) (*tls.Config, error) {
	if caFile == "" && a.certs == nil {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pool, err := tlsutil.Pool(caFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if a.certs != nil {
		tc.GetClientCertificate = a.certs.GetClientCertificate
	}
	return tc, nil
}

type refusedError struct{ msg string }

func (e *refusedError) Error() string { return "server refused the agent: " + e.msg }

func (a *Agent) target() (string, string, error) {
	url, ca := a.cfg.Server, a.cfg.CAFile
	if a.cfg.ServerFile != "" {
		b, err := os.ReadFile(a.cfg.ServerFile)
		if err != nil {
			return "", "", err
		}
		var c api.ClientConfig
		if err := json.Unmarshal(b, &c); err != nil {
			return "", "", fmt.Errorf("%s: %w", a.cfg.ServerFile, err)
		}
		url, ca = c.Server, c.CAFile
	}
	return url, ca, nil
}

// session runs one stream; it reports whether the server welcomed the agent.
func (a *Agent) session(ctx context.Context) (bool, error) {
	base, caFile, err := a.target()
	if err != nil {
		return false, err
	}
	hc := &http.Client{Timeout: 0}
	tc, err := a.tlsConfig(caFile)
	if err != nil {
		return false, err
	}
	if tc != nil {
		hc.Transport = &http.Transport{TLSClientConfig: tc}
	}
	wsURL := "ws" + strings.TrimPrefix(base, "http") + proto.Path
	a.mu.Lock()
	tok := a.cfg.JoinToken
	if a.id.Token != "" {
		tok = a.id.Token
	}
	a.mu.Unlock()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, _, err := websocket.Dial(dctx, wsURL, &websocket.DialOptions{
		HTTPClient: hc, HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}},
		CompressionMode: websocket.CompressionDisabled,
	})
	cancel()
	if err != nil {
		return false, err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(64 << 20)
	sctx, scancel := context.WithCancel(ctx)
	defer scancel()

	if err := writeFrame(sctx, conn, &proto.ToServer{Hello: a.hello()}); err != nil {
		return false, err
	}
	var first proto.ToAgent
	if err := readFrame(sctx, conn, &first); err != nil {
		return false, err
	}
	if first.Error != "" {
		return false, &refusedError{first.Error}
	}
	if first.Welcome == nil {
		return false, errors.New("server did not welcome the agent")
	}
	if err := a.welcome(first.Welcome); err != nil {
		return true, err
	}
	// The server's writer merges whatever queued behind the welcome into
	// the same frame (e.g. tasks the scheduler gave the node while its join
	// committed), so the rest of the first frame is handled like any other.
	a.handle(&first)
	a.log.Info("connected", "node", first.Welcome.NodeID, "server", base)
	hb := time.Duration(first.Welcome.HeartbeatInterval)
	errc := make(chan error, 2)
	go func() { errc <- a.writer(sctx, conn, hb) }()
	go func() { errc <- a.reader(sctx, conn) }()
	err = <-errc
	scancel()
	a.disconnected()
	return true, err
}

func (a *Agent) hello() *proto.Hello {
	a.mu.Lock()
	defer a.mu.Unlock()
	host, _ := os.Hostname()
	h := &proto.Hello{
		Version: proto.Version, NodeID: a.id.NodeID, Name: a.cfg.Name, Pool: a.cfg.Pool, Hostname: host,
		Slots: a.cfg.Slots, Cores: a.cfg.Cores, Memory: a.cfg.Memory, Labels: a.cfg.Labels,
	}
	for _, t := range a.tasks {
		phase := proto.PhaseQueued
		if t.running {
			phase = proto.PhaseRunning
		}
		h.Known = append(h.Known, proto.Known{Ref: t.ref, Phase: phase})
	}
	for _, r := range append(append([]*report(nil), a.inflight...), a.unsent...) {
		h.Known = append(h.Known, proto.Known{Ref: r.fin.Ref, Phase: proto.PhaseFinished})
	}
	return h
}

func (a *Agent) welcome(w *proto.Welcome) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.NodeToken != "" {
		a.id = identity{NodeID: w.NodeID, Token: w.NodeToken}
		b, _ := json.Marshal(a.id)
		path := filepath.Join(a.cfg.Dir, "node.json")
		if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
			return err
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return err
		}
	}
	a.allowRoot = w.AllowRoot
	if w.StartTask != nil {
		a.beginStartTaskLocked(*w.StartTask)
	}
	for _, r := range w.Drop {
		a.dropLocked(spawnID(r))
	}
	for _, k := range w.Keep {
		if t := a.tasks[spawnID(k.Ref)]; t != nil && t.running {
			if t.held > 0 {
				a.used += k.Slots - t.held
				t.held = k.Slots
			}
			t.slots = k.Slots
		}
	}
	// Reports not acknowledged on the last stream are sent again.
	a.unsent = append(a.inflight, a.unsent...)
	a.inflight = nil
	a.startLocked()
	a.wake()
	return nil
}

func (a *Agent) disconnected() {
	a.mu.Lock()
	a.started, a.preparing, a.revoked, a.logs = nil, nil, nil, nil
	a.templates = map[string]*proto.Template{}
	a.mu.Unlock()
}

func (a *Agent) dropLocked(id string) {
	t := a.tasks[id]
	if t == nil {
		return
	}
	if t.staging {
		t.killed = true
		t.cancel()
		return
	}
	if t.running {
		a.spawner().Kill(id, 5*time.Second)
		return
	}
	delete(a.tasks, id)
	a.removeQueued(t)
}

func (a *Agent) removeQueued(t *task) {
	for i, q := range a.queue {
		if q == t {
			a.queue = append(a.queue[:i], a.queue[i+1:]...)
			if t.dirsMade {
				go a.removeDirsMade(t.ref)
			}
			return
		}
	}
}

func (a *Agent) reader(ctx context.Context, conn *websocket.Conn) error {
	for {
		var f proto.ToAgent
		if err := readFrame(ctx, conn, &f); err != nil {
			return err
		}
		if f.Error != "" {
			return &refusedError{f.Error}
		}
		a.handle(&f)
	}
}

func (a *Agent) handle(f *proto.ToAgent) {
	var acked []string
	a.mu.Lock()
	for i := range f.Templates {
		t := f.Templates[i]
		a.templates[t.Key] = &t
	}
	for _, as := range f.Assign {
		id := spawnID(as.Ref)
		if a.tasks[id] != nil {
			continue // already here (a resend)
		}
		if a.stopping {
			// Not taken, so shutdown does not wait for it: the server
			// sends it again when this node reconnects, or requeues it
			// after the heartbeat timeout.
			continue
		}
		tpl := a.templates[as.Template]
		if tpl == nil {
			a.log.Error("assignment names an unknown template", "task", id, "template", as.Template)
			continue
		}
		t := &task{ref: as.Ref, tpl: tpl, index: as.Index, line: as.Line, hasLine: as.HasLine, slots: tpl.Slots, id: id}
		if strings.Count(as.Template, "/") == 2 {
			delete(a.templates, as.Template) // a one-off template of an explicit task
		}
		a.tasks[id] = t
		a.queue = append(a.queue, t)
	}
	for _, r := range f.Revoke {
		id := spawnID(r)
		t := a.tasks[id]
		ok := t != nil && !t.running
		if ok {
			delete(a.tasks, id)
			a.removeQueued(t)
		}
		a.revoked = append(a.revoked, proto.RevokeAnswer{Ref: r, Revoked: ok})
	}
	for _, r := range f.Kill {
		a.dropLocked(spawnID(r))
	}
	for _, r := range f.Release {
		go a.runJobRelease(r)
	}
	if f.AckReports != 0 {
		n := 0
		for n < len(a.inflight) && a.inflight[n].seq <= f.AckReports {
			acked = append(acked, a.inflight[n].id)
			n++
		}
		a.inflight = a.inflight[n:]
	}
	a.startLocked()
	a.mu.Unlock()
	for _, lr := range f.LogReqs {
		go a.serveLog(lr)
	}
	if len(acked) > 0 {
		a.spawner().Ack(acked...)
	}
	a.wake()
}

func (a *Agent) serveLog(lr proto.LogReq) {
	c := proto.LogChunk{ID: lr.ID}
	name := "stdout.txt"
	if lr.Stream == "stderr" {
		name = "stderr.txt"
	}
	path := filepath.Join(a.attemptDir(lr.Ref), name)
	f, err := os.Open(path)
	if err == nil {
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			c.Size = st.Size()
		}
		if lr.Offset < c.Size {
			buf := make([]byte, min(int64(max(lr.Max, 1)), c.Size-lr.Offset))
			n, _ := f.ReadAt(buf, lr.Offset)
			c.Data = buf[:n]
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		c.Err = err.Error()
	}
	a.mu.Lock()
	a.logs = append(a.logs, c)
	a.mu.Unlock()
	a.wake()
}

// attemptDirs names an attempt's directories (DESIGN §2's layout).
func (a *Agent) attemptDirs(r proto.Ref) (taskDir, dir, wd, ckpt string) {
	taskDir = filepath.Join(a.cfg.Dir, "workitems", r.Job, r.Task)
	dir = filepath.Join(taskDir, strconv.Itoa(r.Attempt))
	return taskDir, dir, filepath.Join(dir, "wd"), filepath.Join(taskDir, "checkpoint")
}

// makeDirs creates an attempt's directories, owned by cred where it is not
// nil, with plain mkdirs: directory creation was the agent's largest cost
// per trivial task, and MkdirAll's stats doubled it. It does not need a.mu.
func (a *Agent) makeDirs(r proto.Ref, cred *syscall.Credential) (dir, wd, ckpt string, err error) {
	a.dirMu.Lock()
	known := a.jobDirs[r.Job]
	a.dirMu.Unlock()
	if !known {
		if err := os.MkdirAll(filepath.Join(a.cfg.Dir, "workitems", r.Job), 0o755); err != nil {
			return "", "", "", err
		}
		a.dirMu.Lock()
		a.jobDirs[r.Job] = true
		a.dirMu.Unlock()
	}
	taskDir, dir, wd, ckpt := a.attemptDirs(r)
	if a.takeSpare(r, taskDir, taskUID(cred)) {
		return dir, wd, ckpt, nil
	}
	for _, d := range []string{taskDir, dir, wd, ckpt} {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			if errors.Is(err, os.ErrNotExist) {
				a.dirMu.Lock()
				delete(a.jobDirs, r.Job) // removed behind our back: recreate next time
				a.dirMu.Unlock()
			}
			return "", "", "", err
		}
	}
	// The task owns its working and checkpoint directories. The task and
	// attempt directories stay the agent's: they hold the output files the
	// agent reads as root, which a task owning them could swap for links to
	// host files.
	if cred != nil {
		for _, d := range []string{wd, ckpt} {
			if err := os.Lchown(d, int(cred.Uid), int(cred.Gid)); err != nil {
				return "", "", "", fmt.Errorf("giving %s to the run-as user: %w", d, err)
			}
		}
	}
	return dir, wd, ckpt, nil
}

// dirsAhead is how many queued tasks per slot makeDirsAhead prepares.
const dirsAhead = 2

// makeDirsAhead creates the directories of the next queued tasks while the
// slots are busy, so that a freed slot starts its next task without waiting
// for four mkdirs (each from 15 µs to hundreds on this project's disks),
// recycling the trees of ended tasks first (recycle.go). It runs until done
// is closed.
func (a *Agent) makeDirsAhead(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-a.aheadc:
		}
		a.mu.Lock()
		recycling, uid := a.takeRecyclingLocked(), taskUID(a.credLocked())
		a.mu.Unlock()
		for _, r := range recycling {
			a.recycle(r, uid)
		}
		for {
			a.mu.Lock()
			next, cred := a.claimDirsLocked(""), a.credLocked()
			a.mu.Unlock()
			if next == nil {
				break
			}
			_, _, _, err := a.makeDirs(next.ref, cred)
			a.mu.Lock()
			a.dirsDoneLocked(next, err == nil)
			a.mu.Unlock()
		}
	}
}

// claimDirsLocked returns the first of the queued tasks makeDirsAhead
// prepares whose directories are neither made nor being made, marked as
// being made; with job set, only a first attempt of that job.
func (a *Agent) claimDirsLocked(job string) *task {
	for _, t := range a.queue[:min(len(a.queue), dirsAhead*a.cfg.Slots)] {
		if !t.dirsMade && !t.dirsBusy && (job == "" || t.ref.Job == job && t.ref.Attempt == 1) {
			t.dirsBusy = true
			return t
		}
	}
	return nil
}

// dirsDoneLocked records whether the directories of a task claimed by
// claimDirsLocked were made, and removes them if it was revoked meanwhile.
func (a *Agent) dirsDoneLocked(t *task, made bool) {
	t.dirsBusy, t.dirsMade = false, made
	if a.tasks[t.id] != t && !t.running {
		go a.removeDirsMade(t.ref)
	}
}

// removeDirsMade removes the still empty directories made ahead for a task
// that was revoked before it started.
func (a *Agent) removeDirsMade(r proto.Ref) {
	taskDir, dir, wd, ckpt := a.attemptDirs(r)
	for _, d := range []string{wd, dir, ckpt, taskDir} {
		os.Remove(d) // not empty: another attempt's, which stays
	}
}

func (a *Agent) attemptDir(r proto.Ref) string {
	_, dir, _, _ := a.attemptDirs(r)
	return dir
}

// startLocked spawns queued tasks while slots are free.
func (a *Agent) startLocked() {
	defer func() {
		if len(a.queue) > 0 {
			select {
			case a.aheadc <- struct{}{}:
			default:
			}
		}
	}()
	for len(a.queue) > 0 && !a.stopping {
		t := a.queue[0]
		if a.used > 0 && a.used+t.slots > a.cfg.Slots {
			a.chainLocked()
			return
		}
		a.queue[0] = nil
		a.queue = a.queue[1:]
		a.used += t.slots
		t.held, t.running = t.slots, true
		if needsStaging(t) || !a.appsReady(t) || !a.prepReady(t) {
			ctx, cancel := context.WithCancel(context.Background())
			t.staging, t.cancel = true, cancel
			a.preparing = append(a.preparing, proto.Started{Ref: t.ref, At: time.Now().UnixNano()})
			go a.stageThenSpawn(ctx, t)
			continue
		}
		if err := a.spawn(t); err != nil {
			a.releaseLocked(t)
			if a.spawnFailedLocked(t, err) {
				return
			}
			continue
		}
		a.spawnedLocked(t, time.Now())
	}
}

// spawnFailedLocked settles a task whose spawn failed, and says whether the
// caller must stop starting tasks. When the spawner is gone the task waits
// in the queue for the new one, whose adoption starts the queue again;
// otherwise the attempt fails with the error as its start error.
func (a *Agent) spawnFailedLocked(t *task, err error) (stop bool) {
	if errors.Is(err, spawner.ErrClosed) {
		a.requeueLocked(t)
		return true
	}
	t.after = ""
	a.log.Error("spawning task", "task", t.id, "err", err)
	a.finishLocked(t, spawner.Exit{ID: t.id, ExitCode: -1, StartErr: err.Error(), EndedAt: time.Now()})
	return false
}

// spawnedLocked notes that t's process started at about at.
func (a *Agent) spawnedLocked(t *task, at time.Time) {
	a.started = append(a.started, proto.Started{Ref: t.ref, At: at.UnixNano()})
	a.offerLocked(t)
}

// releaseLocked gives back the slots t holds.
func (a *Agent) releaseLocked(t *task) {
	a.used -= t.held
	t.held = 0
}

func (a *Agent) spawn(t *task) error {
	_, dir, wd, ckpt := a.attemptDirs(t.ref)
	if !t.dirsMade {
		var err error
		if dir, wd, ckpt, err = a.makeDirs(t.ref, a.credLocked()); err != nil {
			return err
		}
	}
	v := placeholder.Values{Job: t.ref.Job, Task: t.ref.Task, Attempt: strconv.Itoa(t.ref.Attempt), Line: t.line, HasLine: t.hasLine}
	if t.index >= 0 {
		v.Index, v.HasIndex = strconv.Itoa(t.index), true
	}
	argv := make([]string, len(t.tpl.Command))
	for i, arg := range t.tpl.Command {
		s, err := placeholder.Expand(arg, v)
		if err != nil {
			return fmt.Errorf("command[%d]: %w", i, err)
		}
		argv[i] = s
	}
	if t.tpl.Shell {
		argv = []string{"/bin/sh", "-c", argv[0]}
	}
	cwd := wd
	if t.tpl.Cwd != "" {
		s, err := placeholder.Expand(t.tpl.Cwd, v)
		if err != nil {
			return fmt.Errorf("cwd: %w", err)
		}
		cwd = s
	}
	env := make([]string, 0, 16+len(t.tpl.Env))
	env = append(env,
		"LOTE_POOL_ID="+t.tpl.Pool,
		"LOTE_NODE_ID="+a.id.NodeID,
		"LOTE_JOB_ID="+t.ref.Job,
		"LOTE_TASK_ID="+t.ref.Task,
		"LOTE_ATTEMPT="+v.Attempt,
		"LOTE_TASK_DIR="+dir,
		"LOTE_TASK_WORKING_DIR="+cwd,
		"LOTE_NODE_SHARED_DIR="+filepath.Join(a.cfg.Dir, "shared"),
		"LOTE_NODE_ROOT_DIR="+a.cfg.Dir,
		"LOTE_CHECKPOINT_DIR="+ckpt,
	)
	if v.HasIndex {
		env = append(env, "LOTE_TASK_INDEX="+v.Index)
	}
	if t.hasLine {
		env = append(env, "LOTE_TASK_LINE="+t.line)
	}
	env = append(env, a.appEnv(t.tpl.Apps)...)
	for k, val := range t.tpl.Env {
		env = append(env, k+"="+val)
	}
	return a.spawner().Spawn(spawner.SpawnRequest{
		ID: t.id, After: t.after, Argv: argv, Env: env, Base: true, Dir: cwd,
		Stdout: filepath.Join(dir, "stdout.txt"), Stderr: filepath.Join(dir, "stderr.txt"),
		MaxWallClock: time.Duration(t.tpl.MaxWallClock), Credential: a.credLocked(),
	})
}

// credLocked is the credential tasks start with: nil (the agent's own) when
// the agent is not root or its pool allows root.
func (a *Agent) credLocked() *syscall.Credential {
	if a.allowRoot {
		return nil
	}
	return a.runAs
}

// lookupRunAs resolves a root agent's run-as user, refusing root: root
// tasks need a pool with allow_root, not an agent setting.
func lookupRunAs(name string) (*syscall.Credential, error) {
	if name == "" {
		name = DefaultRunAs
	}
	u, err := user.Lookup(name)
	if err != nil {
		var err2 error
		if u, err2 = user.LookupId(name); err2 != nil {
			return nil, fmt.Errorf("run-as user %q: %w", name, err)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("run-as user %q: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("run-as user %q: gid %q: %w", name, u.Gid, err)
	}
	if uid == 0 {
		return nil, fmt.Errorf("run-as user %q is root: create the pool with allow_root instead", name)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// exits turns the spawner's exits into reports. When the spawner dies, a
// new one is started: it kills what the old one left and reports those
// tasks lost, and the agent adopts whatever still runs.
func (a *Agent) exits(done <-chan struct{}) {
	for {
		a.drainExits(a.spawner())
		select {
		case <-done:
			return
		default:
		}
		a.log.Warn("spawner gone; starting a new one")
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			sp, err := a.startSpawner(ctx)
			if err == nil {
				if err = a.adopt(ctx, sp); err != nil {
					sp.Close()
				}
			}
			cancel()
			if err == nil {
				break
			}
			a.log.Error("restarting spawner", "err", err)
			select {
			case <-done:
				return
			case <-time.After(time.Second):
			}
		}
	}
}

func (a *Agent) drainExits(sp *spawner.Client) {
	exits := sp.Exits()
	for ex := range exits {
		a.mu.Lock()
		a.exitLocked(sp, ex)
		// The exits already here are handled under the same lock, so the
		// lot costs one pass over the queue and one report.
	more:
		for {
			select {
			case ex, ok := <-exits:
				if !ok {
					break more
				}
				a.exitLocked(sp, ex)
			default:
				break more
			}
		}
		a.startLocked()
		a.mu.Unlock()
		a.wake()
	}
}

// exitLocked turns one exit into a report, or into an upload first.
func (a *Agent) exitLocked(sp *spawner.Client, ex spawner.Exit) {
	if a.startTaskExitLocked(ex) {
		sp.Ack(ex.ID)
		return
	}
	t := a.tasks[ex.ID]
	if t == nil {
		ref, ok := parseSpawnID(ex.ID)
		if !ok {
			sp.Ack(ex.ID)
			return
		}
		t = &task{ref: ref, id: ex.ID} // finished while no agent ran
	} else {
		if !t.running {
			a.removeQueued(t) // a chained task queued again, whose exit came late
		}
		a.noteRunLocked(ex)
		a.chainEndedLocked(t, ex)
		if a.needsUpload(t, ex) {
			go a.uploadAfter(t, ex)
			return
		}
		a.releaseLocked(t)
		if a.recyclableLocked(t, ex) && len(a.recycling) < maxSpares*a.cfg.Slots {
			a.recycling = append(a.recycling, t.ref)
		}
	}
	a.finishLocked(t, ex)
}

func (a *Agent) finishLocked(t *task, ex spawner.Exit) { a.finishWith(t, ex, "", false) }

// finishWith queues an attempt's report; stagingErr fails it with category
// staging, logBlobs says its large logs were uploaded whole.
func (a *Agent) finishWith(t *task, ex spawner.Exit, stagingErr string, logBlobs bool) {
	delete(a.tasks, t.id)
	// A start not yet reported need not be: the end carries the start time,
	// and short tasks then cost one report instead of two.
	for i := len(a.started) - 1; i >= 0; i-- {
		if a.started[i].Ref == t.ref {
			a.started = append(a.started[:i], a.started[i+1:]...)
			break
		}
	}
	for i := len(a.preparing) - 1; i >= 0; i-- {
		if a.preparing[i].Ref == t.ref {
			a.preparing = append(a.preparing[:i], a.preparing[i+1:]...)
			break
		}
	}
	dir := a.attemptDir(t.ref)
	fin := proto.Finished{
		Ref: t.ref, ExitCode: ex.ExitCode, Signal: ex.Signal, TimedOut: ex.TimedOut,
		Lost: ex.Lost || a.stopping, StartErr: ex.StartErr, StartedAt: ex.StartedAt.UnixNano(), EndedAt: ex.EndedAt.UnixNano(),
		UserCPU: int64(ex.UserCPU), SysCPU: int64(ex.SysCPU), MaxRSS: ex.MaxRSS,
		Stdout: readLog(filepath.Join(dir, "stdout.txt"), ex, 0), Stderr: readLog(filepath.Join(dir, "stderr.txt"), ex, 1),
		StagingErr: stagingErr, LogBlobs: logBlobs, PrepFailed: t.prepFailed,
	}
	if ex.StartedAt.IsZero() {
		fin.StartedAt = 0
	}
	a.unsent = append(a.unsent, &report{fin: fin, id: ex.ID})
}

// readLog reads up to maxInlineLog bytes of an output file (stream 0 is
// stdout, 1 stderr). Most tasks write nothing, which the spawner tells;
// else one stat decides before anything is opened.
func readLog(path string, ex spawner.Exit, stream int) []byte {
	if ex.Written != nil && ex.Written[stream] == 0 {
		return nil
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() == 0 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	buf := make([]byte, min(st.Size(), maxInlineLog))
	n, _ := f.ReadAt(buf, 0)
	return buf[:n]
}

func (a *Agent) wake() {
	select {
	case a.notify <- struct{}{}:
	default:
	}
}

// writer sends what accumulated as one frame, and a heartbeat when idle.
func (a *Agent) writer(ctx context.Context, conn *websocket.Conn, hb time.Duration) error {
	if hb <= 0 {
		hb = 5 * time.Second
	}
	t := time.NewTicker(hb)
	defer t.Stop()
	for {
		heartbeat := false
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.notify:
		case <-t.C:
			heartbeat = true
		}
		f := &proto.ToServer{}
		a.mu.Lock()
		f.Started, a.started = a.started, nil
		f.Preparing, a.preparing = a.preparing, nil
		f.Revoked, a.revoked = a.revoked, nil
		f.Logs, a.logs = a.logs, nil
		f.StartTaskDone, a.start.done = a.start.done, nil
		if len(a.unsent) > 0 {
			a.seq++
			f.Seq = a.seq
			for _, r := range a.unsent {
				r.seq = a.seq
				f.Finished = append(f.Finished, r.fin)
			}
			a.inflight = append(a.inflight, a.unsent...)
			a.unsent = nil
		}
		a.mu.Unlock()
		if !heartbeat && f.Seq == 0 && f.StartTaskDone == nil && len(f.Started)+len(f.Preparing)+len(f.Revoked)+len(f.Logs) == 0 {
			continue
		}
		if err := writeFrame(ctx, conn, f); err != nil {
			return err
		}
	}
}

// shutdown stops every task and waits (bounded) for them to end and, when
// report is set, for the server to acknowledge their ends, so it requeues
// them at once instead of after the heartbeat timeout. Without a server
// (orphaned, refused) waiting for acknowledgements would only delay the exit.
func (a *Agent) shutdown(report bool) {
	a.mu.Lock()
	a.stopping = true
	a.queue = nil
	var ids []string
	for id, t := range a.tasks {
		if t.staging {
			t.cancel()
		} else if t.running {
			ids = append(ids, id)
		} else {
			delete(a.tasks, id)
		}
	}
	a.mu.Unlock()
	for _, id := range ids {
		a.spawner().Kill(id, 3*time.Second)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		a.mu.Lock()
		n := len(a.tasks)
		if report {
			n += len(a.unsent) + len(a.inflight)
		}
		a.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func readFrame(ctx context.Context, c *websocket.Conn, v any) error {
	_, b, err := c.Read(ctx)
	if err != nil {
		return err
	}
	return proto.Unmarshal(b, v)
}

func writeFrame(ctx context.Context, c *websocket.Conn, v any) error {
	b, err := proto.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(ctx, websocket.MessageBinary, b)
}

// lockDir makes sure only one agent uses a node directory.
func lockDir(dir string) (func(), error) {
	path := filepath.Join(dir, "agent.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("agent: another agent is running in %s", dir)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "%d\n", os.Getpid())
	return func() { f.Close() }, nil
}

// Locked reports whether a live agent holds dir (used by lote up to avoid
// starting a second agent on a node directory it re-adopts).
func Locked(dir string) bool {
	f, err := os.OpenFile(filepath.Join(dir, "agent.lock"), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

func totalMemory() int64 {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit)
}
