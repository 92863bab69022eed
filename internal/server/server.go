// Package server is Lote's imperative shell around the core: the HTTP API,
// the agents' streams, the group-committing writer to the store, timers, and
// start-up (load the store, rebuild the core, wait for agents to reconnect).
package server

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/blob"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/store"
	"github.com/lotehq/lote/internal/store/sqlite"
	"github.com/lotehq/lote/internal/tlsutil"
)

// Config configures a server.
type Config struct {
	Dir              string        // data directory: database, TLS material, client.json
	Listen           string        // host:port; default 127.0.0.1:7411
	Store            string        // store URL; default sqlite in Dir
	Blob             string        // data store URL (gocloud.dev/blob: s3://, file://, mem://); default a folder in Dir
	HeartbeatTimeout time.Duration // default 30 s
	CommitInterval   time.Duration // minimum time between group commits; default 2 ms
	// ReportCommitInterval is the minimum time between commits that carry
	// only agent reports; default 20 ms.
	ReportCommitInterval time.Duration
	// CompletedJobRetention deletes completed jobs (records and logs) this
	// long after they completed; 0 keeps them until deleted.
	CompletedJobRetention time.Duration
	// MaxCompletedTasks bounds the tasks of completed jobs kept: past it the
	// oldest completed jobs are deleted. 0 means DefaultMaxCompletedTasks;
	// negative means no bound.
	MaxCompletedTasks int
	// Pprof serves Go's profiler at /debug/pprof/ to admin tokens.
	Pprof bool
	// RateLimit is each token's sustained API requests per second (bursts
	// of twice that); 0 means no limit.
	RateLimit float64
	// MaxQueuedTasksPerUser and MaxRunningTasksPerUser are the per-user
	// quotas of core.Config; 0 means none.
	MaxQueuedTasksPerUser  int
	MaxRunningTasksPerUser int
	// Exe is the lote binary that pools with provider local start agents
	// with; default this process's executable.
	Exe string
	// AdvertiseURL is the address providers hand to the machines they
	// create; default the server's own URL.
	AdvertiseURL string
	CertFile     string // TLS certificate; generated in Dir when listening off loopback
	KeyFile      string
	// AgentMTLS requires agents to present a client certificate issued by
	// AgentCAFile (default: the generated CA in Dir/tls) on their stream and
	// with their node credential; needs TLS.
	AgentMTLS   bool
	AgentCAFile string
	Logger      *slog.Logger
	Now         func() time.Time
}

// DefaultMaxCompletedTasks bounds the memory completed jobs hold (about
// 200 bytes a task): past it the oldest completed jobs are deleted.
const DefaultMaxCompletedTasks = 10_000_000

// DefaultRateLimit is each token's default sustained API request rate: far
// above what the CLI or a polling workflow engine needs, low enough that one
// runaway client cannot starve the others.
const DefaultRateLimit = 500

// DefaultListen is the default API address.
const DefaultListen = "127.0.0.1:7411"

// Server is a running Lote server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	eng      *engine
	st       store.Store
	blob     *blob.Store
	ln       net.Listener
	http     *http.Server
	url      string
	caFile   string
	adminTok string
	tokens   *tokens
	scaler   *scaler
	stopping chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	// crashAfterCommit is CrashAfterCommitEnv's request path, for fault tests.
	crashAfterCommit string
}

// Meta keys.
const metaAdminHash = "admin_token_sha256"

// Start opens the store, rebuilds the core, ensures an admin token and
// starts serving.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Dir == "" {
		return nil, errors.New("server: a data directory is required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxCompletedTasks == 0 {
		cfg.MaxCompletedTasks = DefaultMaxCompletedTasks
	}
	if cfg.CommitInterval == 0 {
		cfg.CommitInterval = 2 * time.Millisecond
	}
	if cfg.ReportCommitInterval == 0 {
		cfg.ReportCommitInterval = 20 * time.Millisecond
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	bs, err := blob.Open(ctx, cfg.Blob, cfg.Dir)
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("server: --blob: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, st: st, blob: bs, stopping: make(chan struct{}), crashAfterCommit: os.Getenv(CrashAfterCommitEnv)}
	s.scaler = newScaler(s)
	if err := s.load(ctx); err != nil {
		st.Close()
		return nil, err
	}
	if err := s.listen(); err != nil {
		st.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.eng.run(runCtx)
	}()
	if err := s.checkStoreID(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.ensureAdminToken(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.http = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server", "err", err)
		}
	}()
	if err := s.writeClientConfig(); err != nil {
		s.Close()
		return nil, err
	}
	// After client.json: agents of local pools find the server through it.
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.scaler.run(runCtx)
	}()
	s.log.Info("lote server listening", "url", s.url, "dir", cfg.Dir)
	return s, nil
}

func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	u := cfg.Store
	if u == "" {
		return sqlite.Open(ctx, filepath.Join(cfg.Dir, "lote.db"), sqlite.Options{})
	}
	rest, ok := strings.CutPrefix(u, "sqlite://")
	if !ok {
		return nil, fmt.Errorf("server: --store %q: only sqlite://PATH[?synchronous=normal] is supported", u)
	}
	path, query, _ := strings.Cut(rest, "?")
	var o sqlite.Options
	for _, kv := range strings.Split(query, "&") {
		if k, v, _ := strings.Cut(kv, "="); k == "synchronous" {
			o.Synchronous = v
		}
	}
	return sqlite.Open(ctx, path, o)
}

func (s *Server) load(ctx context.Context) error {
	snap, err := s.st.Load(ctx)
	if err != nil {
		return fmt.Errorf("server: loading state: %w", err)
	}
	s.eng = &engine{
		store: s.st, log: s.log, now: s.cfg.Now,
		kickc: make(chan struct{}, 1), reportc: make(chan struct{}, 1), waitc: make(chan struct{}), open: newBatch(1), seq: 1,
		minInterval: s.cfg.CommitInterval, reportInterval: max(s.cfg.ReportCommitInterval, s.cfg.CommitInterval),
		purgeAge: s.cfg.CompletedJobRetention, purgeTasks: max(s.cfg.MaxCompletedTasks, 0),
		events: newHub(), obs: noObserver{}, nodeState: map[*core.Node]core.NodeState{},
	}
	s.eng.obs = newMetrics(s.eng)
	rs, err := core.NewRestorer(core.Config{
		HeartbeatTimeout:      s.cfg.HeartbeatTimeout,
		MaxQueuedTasksPerUser: s.cfg.MaxQueuedTasksPerUser, MaxRunningTasksPerUser: s.cfg.MaxRunningTasksPerUser,
	}, s.eng, snap, s.cfg.Now())
	if err != nil {
		return fmt.Errorf("server: rebuilding state: %w", err)
	}
	if err := s.st.LoadTasks(ctx, rs.AddTasks); err != nil {
		return fmt.Errorf("server: loading tasks: %w", err)
	}
	s.eng.core = rs.Core()
	idem, err := s.st.Idempotency(ctx, s.cfg.Now().Add(-idempotencyTTL).UnixNano())
	if err != nil {
		return fmt.Errorf("server: loading idempotency keys: %w", err)
	}
	toks, err := s.st.Tokens(ctx)
	if err != nil {
		return fmt.Errorf("server: loading tokens: %w", err)
	}
	s.tokens = newTokens(toks, s.cfg.RateLimit)
	owners, err := s.st.DataOwners(ctx)
	if err != nil {
		return fmt.Errorf("server: loading data owners: %w", err)
	}
	if err := s.adoptContainers(ctx, owners); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	s.eng.idem = make(map[string]store.Idempotent, len(idem))
	for _, i := range idem {
		s.eng.idem[i.Key] = i
	}
	return nil
}

func (s *Server) listen() error {
	host, _, err := net.SplitHostPort(s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: --listen %q: %w", s.cfg.Listen, err)
	}
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	useTLS := s.cfg.CertFile != "" || !isLoopback(host)
	if !useTLS && s.cfg.AgentMTLS {
		ln.Close()
		return errors.New("server: --agent-mtls needs TLS: listen off loopback or give --cert-file")
	}
	if !useTLS {
		s.ln = ln
		s.url = "http://" + addr.String()
		return nil
	}
	certFile, keyFile := s.cfg.CertFile, s.cfg.KeyFile
	if certFile == "" {
		m, err := tlsutil.Ensure(filepath.Join(s.cfg.Dir, "tls"), addr.IP, host)
		if err != nil {
			ln.Close()
			return fmt.Errorf("server: %w", err)
		}
		certFile, keyFile, s.caFile = m.CertFile, m.KeyFile, m.CAFile
	}
	certs, err := tlsutil.NewReloader(certFile, keyFile)
	if err != nil {
		ln.Close()
		return fmt.Errorf("server: loading TLS certificate: %w", err)
	}
	tc := &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	if s.cfg.AgentMTLS {
		// Only agents must present a certificate; the CLI and browsers on
		// the same port need none, so the handshake asks without requiring.
		caFile := s.cfg.AgentCAFile
		if caFile == "" {
			if caFile, err = tlsutil.EnsureCA(filepath.Join(s.cfg.Dir, "tls")); err != nil {
				ln.Close()
				return fmt.Errorf("server: %w", err)
			}
		}
		if tc.ClientCAs, err = tlsutil.Pool(caFile); err != nil {
			ln.Close()
			return fmt.Errorf("server: --agent-ca-file: %w", err)
		}
		tc.ClientAuth = tls.VerifyClientCertIfGiven
	}
	s.ln = tls.NewListener(ln, tc)
	urlHost := addr.String()
	if addr.IP.IsUnspecified() {
		urlHost = net.JoinHostPort("127.0.0.1", fmt.Sprint(addr.Port))
	}
	s.url = "https://" + urlHost
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// ErrWrongStore means the store opened is not the one this data directory
// was using: emptied, truncated to nothing, or replaced.
var ErrWrongStore = errors.New("store does not match this data directory")

const metaStoreID = "store_id"

// checkStoreID refuses to start on a store that is not the one the data
// directory was last used with. SQLite reads a file truncated to nothing as
// a new, empty database; without this check the server would silently start
// with no jobs. The ID lives both in the store and in DIR/store-id.
func (s *Server) checkStoreID(ctx context.Context) error {
	marker := filepath.Join(s.cfg.Dir, "store-id")
	want, err := os.ReadFile(marker)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("server: %w", err)
	}
	have, err := s.st.Meta(ctx, metaStoreID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("server: %w", err)
	}
	switch {
	case len(want) > 0 && strings.TrimSpace(string(want)) != have:
		return fmt.Errorf("server: %w: %s names store %s but the store holds %q (truncated, emptied or replaced?); "+
			"restore it from a backup, or move %s aside to start with an empty store (see docs/reliability.md)",
			ErrWrongStore, marker, strings.TrimSpace(string(want)), have, s.cfg.Dir)
	case have == "":
		have = newSecret()[:16]
		if err := s.eng.wait(ctx, s.eng.setMeta(metaStoreID, have)); err != nil {
			return err
		}
	}
	if len(want) == 0 {
		if err := os.WriteFile(marker, []byte(have+"\n"), 0o600); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	}
	return nil
}

// ensureAdminToken keeps the admin token of an existing client.json when it
// still matches the stored hash, and otherwise creates a new one.
func (s *Server) ensureAdminToken(ctx context.Context) error {
	hash, err := s.st.Meta(ctx, metaAdminHash)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("server: %w", err)
	}
	if prev, err := ReadClientConfig(filepath.Join(s.cfg.Dir, "client.json")); err == nil && hash != "" &&
		subtle.ConstantTimeCompare([]byte(hashToken(prev.Token)), []byte(hash)) == 1 {
		s.adminTok = prev.Token
		return nil
	}
	s.adminTok = "lote_" + newSecret()
	seq := s.eng.setMeta(metaAdminHash, hashToken(s.adminTok))
	return s.eng.wait(ctx, seq)
}

func (s *Server) writeClientConfig() error {
	b, err := json.MarshalIndent(api.ClientConfig{Server: s.url, Token: s.adminTok, CAFile: s.caFile}, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.cfg.Dir, "client.json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("server: writing client.json: %w", err)
	}
	return os.Rename(tmp, path)
}

// ReadClientConfig reads a client.json.
func ReadClientConfig(path string) (api.ClientConfig, error) {
	var c api.ClientConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	return c, json.Unmarshal(b, &c)
}

// URL is the server's base URL.
func (s *Server) URL() string { return s.url }

// AdminToken is the admin bearer token.
func (s *Server) AdminToken() string { return s.adminTok }

// CAFile is the CA certificate clients trust, when TLS was generated.
func (s *Server) CAFile() string { return s.caFile }

// EnsurePool creates a pool unless it exists and returns its join token.
func (s *Server) EnsurePool(ctx context.Context, spec core.PoolSpec) (string, error) {
	var tok string
	var err error
	seq := s.eng.do(func(c *core.Core, now time.Time) {
		if p := c.Pool(spec.ID); p != nil {
			tok = p.JoinToken
			return
		}
		if spec.JoinToken == "" {
			spec.JoinToken = "join_" + newSecret()
		}
		var p *core.Pool
		if p, err = c.CreatePool(spec, now); err == nil {
			tok = p.JoinToken
		}
	})
	if err != nil {
		return "", err
	}
	return tok, s.eng.wait(ctx, seq)
}

// Close stops serving, lets the last batch commit and closes the store.
func (s *Server) Close() error {
	select {
	case <-s.stopping:
		return nil
	default:
	}
	close(s.stopping)
	var err error
	if s.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = s.http.Shutdown(ctx)
		cancel()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	if s.eng != nil && s.eng.failed.Load() == nil && s.cancel != nil {
		err = errors.Join(err, s.eng.commitOnce(context.Background()))
	}
	if s.ln != nil {
		s.ln.Close()
	}
	if s.blob != nil {
		err = errors.Join(err, s.blob.Close())
	}
	return errors.Join(err, s.st.Close())
}
