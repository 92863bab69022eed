package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/lotehq/lote/internal/agent"
	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/server"
	"github.com/lotehq/lote/internal/simagent"
	"github.com/lotehq/lote/internal/spawner"
	"github.com/lotehq/lote/internal/sysmon"
	"github.com/lotehq/lote/internal/tlsutil"
	"github.com/lotehq/lote/internal/up"
)

// serverGC trades memory for CPU in the server process: the core keeps
// many small objects live, and at the default GOGC=100 the collector took
// about half of the server's CPU under load (1M stubbed tasks ran at 32k/s
// with it and 62k/s with GOGC=400). GOGC in the environment still wins.
func serverGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
}

func (a *app) upCmd() *cobra.Command {
	var cfg up.Config
	c := &cobra.Command{
		Use:   "up",
		Short: "Run a server and a local pool of agents on this machine",
		Long: `Run a server with its embedded store and a pool "local" of agent processes on this machine.

State lives in --dir (default $LOTE_HOME or ~/.lote); client.json there tells the CLI how to reach the
server. Ctrl-C stops the agents (their running tasks are requeued) and then the server; a later
'lote up' on the same directory resumes every job.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if cfg.Nodes < 1 {
				return usageErr("--nodes must be at least 1")
			}
			if cfg.Slots < 0 {
				return usageErr("--slots must not be negative")
			}
			if cfg.Slots == 0 {
				cfg.Slots = runtime.NumCPU()
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			cfg.Exe = exe
			cfg.Logger = slog.New(slog.NewTextHandler(a.stderr, nil))
			keepMonitorAwake(cfg.Logger)
			serverGC()
			cfg.Ready = func(s *server.Server) {
				fmt.Fprintf(a.stderr, "lote is up at %s with %d node(s) of %d slot(s) in pool %q\n", s.URL(), cfg.Nodes, cfg.Slots, up.PoolID)
				fmt.Fprintf(a.stderr, "try: lote submit --array 1-10 --wait -- echo hello {index}\n")
			}
			return up.Run(c.Context(), cfg)
		},
	}
	f := c.Flags()
	serverFlags(f, &cfg.Config)
	f.IntVar(&cfg.Nodes, "nodes", 1, "number of local agent processes")
	f.IntVar(&cfg.Slots, "slots", 0, "task slots per node (default: number of CPUs)")
	return c
}

// serverFlags are the flags `lote up` and `lote server` share: both run a
// server.
func serverFlags(f *pflag.FlagSet, cfg *server.Config) {
	f.StringVar(&cfg.Dir, "dir", home(), "data directory")
	f.StringVar(&cfg.Listen, "listen", server.DefaultListen, "API address (TLS is generated when not loopback)")
	f.StringVar(&cfg.Store, "store", "", "store URL (default: SQLite in --dir)")
	f.StringVar(&cfg.Blob, "blob", "", "data store URL: s3://BUCKET?endpoint=…&region=…, file:///PATH, mem:// (default: a folder in --dir)")
	f.DurationVar(&cfg.HeartbeatTimeout, "heartbeat-timeout", 30*time.Second, "time before a silent node is unreachable and its tasks requeued")
	f.Float64Var(&cfg.RateLimit, "rate-limit", server.DefaultRateLimit, "API requests per second per token (bursts of twice that; 0 = unlimited)")
	f.BoolVar(&cfg.Pprof, "pprof", false, "serve Go's profiler at /debug/pprof/ (admin token only)")
	f.DurationVar(&cfg.CommitInterval, "commit-interval", 0, "least time between group commits (default 2ms): longer batches more changes per transaction and fsync, at the cost of latency")
	f.DurationVar(&cfg.ReportCommitInterval, "report-commit-interval", 0, "least time between group commits that carry only agent reports, which no request waits on (default 20ms): under a stream of short tasks, longer batches cut the store's cost per task")
	f.DurationVar(&cfg.CompletedJobRetention, "completed-job-retention", 0, "delete completed jobs (records and logs) this long after they complete (0 = keep)")
	f.IntVar(&cfg.MaxQueuedTasksPerUser, "max-queued-tasks-per-user", 0, "refuse (429) a submission that would give its user more waiting tasks than this (0 = no quota)")
	f.IntVar(&cfg.MaxRunningTasksPerUser, "max-running-tasks-per-user", 0, "dispatch at most this many tasks of one user at a time; the rest wait with pending reason quota (0 = no quota)")
	f.IntVar(&cfg.MaxCompletedTasks, "max-completed-tasks", server.DefaultMaxCompletedTasks, "keep at most this many tasks of completed jobs; the oldest completed jobs go first (-1 = no bound)")
}

// keepMonitorAwake re-executes a long-running process (lote up, server,
// agent) with the Go runtime's monitor kept from its deep sleep, which
// costs these processes a fifth to a third of their CPU under short tasks
// (internal/sysmon). It returns only if that is done already, or cannot be.
func keepMonitorAwake(log *slog.Logger) {
	if err := sysmon.Reexec(); err != nil {
		log.Warn("running with the Go runtime's default monitor, which costs more CPU per task", "err", err)
	}
}

func (a *app) serverCmd() *cobra.Command {
	var cfg server.Config
	c := &cobra.Command{
		Use:   "server",
		Short: "Run the Lote server (API, scheduler, store)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg.Logger = slog.New(slog.NewTextHandler(a.stderr, nil))
			keepMonitorAwake(cfg.Logger)
			serverGC()
			s, err := server.Start(c.Context(), cfg)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "lote server at %s (client config in %s)\n", s.URL(), cfg.Dir)
			<-c.Context().Done()
			return s.Close()
		},
	}
	f := c.Flags()
	serverFlags(f, &cfg)
	f.StringVar(&cfg.CertFile, "cert-file", "", "TLS certificate (default: generated when not loopback)")
	f.StringVar(&cfg.KeyFile, "key-file", "", "TLS key")
	f.BoolVar(&cfg.AgentMTLS, "agent-mtls", false, "require agents to present a client certificate issued by the agent CA (see lote server issue-cert); needs TLS")
	f.StringVar(&cfg.AgentCAFile, "agent-ca-file", "", "CA that issues agents' client certificates, with --agent-mtls (default: the generated CA in --dir/tls)")
	c.AddCommand(a.issueCertCmd())
	return c
}

func (a *app) issueCertCmd() *cobra.Command {
	var dir, node, out string
	var valid time.Duration
	c := &cobra.Command{
		Use:   "issue-cert",
		Short: "Issue an agent's client certificate from the server's CA, for --agent-mtls",
		Long: `Issue a client certificate for the agent of one node from the CA in --dir/tls (the server
creates it on its first start with TLS or --agent-mtls). Writes agent.pem, agent.key and a copy
of the CA as ca.pem to --out; give them to the agent as --cert-file, --key-file and --ca-file.
The certificate's common name is the node's name: the agent joins under it.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if !core.ValidID(node) {
				return usageErr("--node must be 1-64 characters of letters, digits, '_' and '-'")
			}
			if out == "" {
				return usageErr("--out is required")
			}
			if valid <= 0 {
				return usageErr("--valid must be positive")
			}
			m, err := tlsutil.IssueClient(filepath.Join(dir, "tls"), node, out, valid)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "certificate for node %s: --cert-file %s --key-file %s --ca-file %s\n", node, m.CertFile, m.KeyFile, m.CAFile)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&dir, "dir", home(), "the server's data directory")
	f.StringVar(&node, "node", "", "the node's name (the certificate's common name)")
	f.StringVar(&out, "out", "", "directory to write agent.pem, agent.key and ca.pem to")
	f.DurationVar(&valid, "valid", 365*24*time.Hour, "how long the certificate is valid")
	return c
}

func (a *app) agentCmd() *cobra.Command {
	var cfg agent.Config
	var labels []string
	var retention time.Duration
	c := &cobra.Command{
		Use:   "agent",
		Short: "Run a node agent that joins a pool",
		Long: `Run a node agent: it dials out to the server, joins --pool with its join token (or, once joined,
with the node credential kept in --dir/node.json), and runs the tasks it is given.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if cfg.Server == "" && cfg.ServerFile == "" {
				return usageErr("--server is required")
			}
			if cfg.JoinToken == "" {
				cfg.JoinToken = os.Getenv("LOTE_JOIN_TOKEN")
			}
			var err error
			if cfg.Labels, err = parseKV("--label", labels); err != nil {
				return err
			}
			if cfg.Dir == "" {
				cfg.Dir = home() + "/agent"
			}
			if retention <= 0 {
				return usageErr("--retention must be positive")
			}
			cfg.Logger = slog.New(slog.NewTextHandler(a.stderr, nil))
			keepMonitorAwake(cfg.Logger)
			sweep, stop := context.WithCancel(c.Context())
			defer stop()
			go (&agent.Sweeper{Dir: cfg.Dir, Retention: retention, Logger: cfg.Logger}).Run(sweep)
			return agent.Run(c.Context(), cfg)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Server, "server", "", "server URL")
	f.StringVar(&cfg.ServerFile, "server-file", "", "client.json to read the server URL and CA from before each connection")
	f.StringVar(&cfg.CAFile, "ca-file", "", "CA certificate to trust")
	f.StringVar(&cfg.CertFile, "cert-file", "", "client certificate, for a server with --agent-mtls (lote server issue-cert); its name is the node's")
	f.StringVar(&cfg.KeyFile, "key-file", "", "the client certificate's key")
	f.StringVar(&cfg.Pool, "pool", "", "pool to join")
	f.StringVar(&cfg.JoinToken, "join-token", "", "the pool's join token (env LOTE_JOIN_TOKEN)")
	f.StringVar(&cfg.Dir, "dir", "", "node directory (default $LOTE_HOME/agent)")
	f.StringVar(&cfg.Name, "name", "", "node ID to ask for (default: host name)")
	f.IntVar(&cfg.Slots, "slots", 0, "concurrent task slots (default: number of CPUs)")
	f.IntVar(&cfg.Cores, "cores", 0, "cores offered (default: number of CPUs)")
	f.Int64Var(&cfg.Memory, "memory-bytes", 0, "memory offered (default: physical memory)")
	f.StringArrayVar(&labels, "label", nil, "node label K=V (repeatable)")
	f.DurationVar(&retention, "retention", agent.DefaultRetention, "remove a task's directory on this node this long after its last write (sooner when the disk is over 90% full)")
	f.DurationVar(&cfg.OrphanTimeout, "orphan-timeout", agent.DefaultOrphanTimeout, "stop tasks and exit after this long without a server")
	f.StringVar(&cfg.RunAs, "run-as", agent.DefaultRunAs, "user (name or ID) tasks run as when the agent runs as root, unless the pool allows root")
	f.DurationVar(&cfg.AdoptTimeout, "adopt-timeout", agent.DefaultAdoptTimeout, "if this agent dies, how long its tasks wait for a restarted agent to adopt them before they are killed (keep it at most half the server's heartbeat timeout)")
	return c
}

func simAgentsCmd() *cobra.Command {
	var cfg simagent.Config
	c := &cobra.Command{
		Use:    "_simagents",
		Short:  "Internal: simulated agents that finish every task at once, for benchmarks",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if cfg.JoinToken == "" {
				cfg.JoinToken = os.Getenv("LOTE_JOIN_TOKEN")
			}
			var st simagent.Stats
			return simagent.Run(c.Context(), cfg, &st)
		},
	}
	f := c.Flags()
	f.StringVar(&cfg.Server, "server", "", "server URL")
	f.StringVar(&cfg.Pool, "pool", "", "pool to join")
	f.StringVar(&cfg.JoinToken, "join-token", "", "join token (env LOTE_JOIN_TOKEN)")
	f.IntVar(&cfg.Nodes, "nodes", 1000, "simulated nodes")
	f.IntVar(&cfg.Slots, "slots", 4, "slots per simulated node")
	f.StringVar(&cfg.Name, "name", "sim", "node name prefix")
	return c
}

func spawnerCmd() *cobra.Command {
	var cfg spawner.ServeConfig
	c := &cobra.Command{
		Use:    "_spawner",
		Short:  "Internal: the per-node process that starts and reaps tasks",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			// One P: the spawner's work is serial (forks and journal
			// writes take one lock), and with a second P every handoff
			// between its goroutines (socket reader, reaper, output
			// copiers, writer) woke another thread. On a busy 2-core
			// node that was half of its context switches and a fifth of
			// its CPU per task.
			runtime.GOMAXPROCS(1)
			return spawner.Serve(c.Context(), cfg)
		},
	}
	c.Flags().StringVar(&cfg.SocketPath, "socket", "", "unix socket")
	c.Flags().StringVar(&cfg.StateDir, "state", "", "state directory")
	c.Flags().DurationVar(&cfg.Orphaned, "orphaned", 0, "stop tasks and exit after this long without an agent")
	return c
}

// parseKV reads K=V flag values.
func parseKV(flag string, vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(vals))
	for _, v := range vals {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return nil, usageErr("%s %q: want KEY=VALUE", flag, v)
		}
		m[k] = val
	}
	return m, nil
}
