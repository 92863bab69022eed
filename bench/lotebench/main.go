// Command lotebench drives the real lote binary, as separate processes over
// loopback, through the measures of DESIGN §7 that need more than a shell
// stopwatch: stubbed execution, a big array (with the restart after kill -9),
// and submit → running latency. bench/run.sh builds and runs it; each
// measure appends "key value" lines to --out and logs to stderr.
//
//	lotebench -lote bin/lote -work DIR -out FILE stubbed  [-tasks N -nodes N -slots N]
//	lotebench -lote bin/lote -work DIR -out FILE bigarray [-tasks N]
//	lotebench -lote bin/lote -work DIR -out FILE latency  [-jobs N -slots N]
//
// It imports only the public API client; the server, agents and simulated
// agents are the `lote` binary itself, started here and stopped (with every
// process they started) before it exits.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/lotehq/lote/api"
)

var (
	loteBin = flag.String("lote", "bin/lote", "the lote binary")
	workDir = flag.String("work", "", "scratch directory (required)")
	outFile = flag.String("out", "", "file to append results to (default stdout)")
	tasks   = flag.Int("tasks", 1_000_000, "tasks in the array (stubbed, bigarray)")
	nodes   = flag.Int("nodes", 1000, "simulated nodes (stubbed)")
	slots   = flag.Int("slots", 0, "slots per node (stubbed: 4; latency: number of CPUs)")
	jobs    = flag.Int("jobs", 1000, "single-task jobs (latency)")
	restart = flag.String("restart-agent", "real", "agent that runs the first task after the restart (bigarray): real (lote agent) or sim (lote _simagents)")
)

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: lotebench -work DIR [-lote BIN] [-out FILE] stubbed|bigarray|latency")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 || *workDir == "" {
		flag.Usage()
		os.Exit(2)
	}
	if *restart != "real" && *restart != "sim" {
		flag.Usage()
		os.Exit(2)
	}
	bin, err := filepath.Abs(*loteBin)
	if err != nil {
		fatal(err)
	}
	*loteBin = bin
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var run func(context.Context) error
	switch flag.Arg(0) {
	case "stubbed":
		run = stubbed
	case "bigarray":
		run = bigArray
	case "latency":
		run = latency
	default:
		flag.Usage()
		os.Exit(2)
	}
	err = run(ctx)
	stopAll()
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "lotebench:", err)
	stopAll()
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "  lotebench: "+format+"\n", args...)
}

// result records one figure for run.sh.
func result(key string, v any) {
	line := fmt.Sprintf("%s %v\n", key, v)
	if *outFile == "" {
		fmt.Print(line)
		return
	}
	f, err := os.OpenFile(*outFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		fatal(err)
	}
}

func ms(d time.Duration) string { return strconv.FormatFloat(d.Seconds()*1000, 'f', 2, 64) }
func secs(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 3, 64)
}

// ---------------------------------------------------------------- processes

// proc is a lote process started by the bench.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

var (
	procsMu sync.Mutex
	procs   []*proc
)

// start runs the lote binary with args in its own process group, its output
// in a log file under the work dir.
func start(name string, env []string, args ...string) (*proc, error) {
	logPath := filepath.Join(*workDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(*loteBin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGINT (a clean stop: `lote up` stops its agents first), waits,
// and kills the process group when it takes longer than grace.
func (p *proc) stop(grace time.Duration) {
	if p.exited() {
		return
	}
	p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(grace):
		logf("%s did not stop in %s; killing it", p.name, grace)
		syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
}

// kill9 kills the process alone with SIGKILL and reaps it.
func (p *proc) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// tail returns the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// stopAll stops every process still running, newest first.
func stopAll() {
	procsMu.Lock()
	ps := slices.Clone(procs)
	procsMu.Unlock()
	for i := len(ps) - 1; i >= 0; i-- {
		ps[i].stop(15 * time.Second)
	}
	reapStrays()
}

// reapStrays ends processes the bench's processes left behind, found by the
// work directory in their command line: an agent's spawner outlives a
// stopped agent by its orphan timeout (15 s) by design.
func reapStrays() {
	if *workDir == "" {
		return
	}
	find := func() []int {
		var pids []int
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			pid, err := strconv.Atoi(e.Name())
			if err != nil || pid == os.Getpid() {
				continue
			}
			b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
			if err == nil && strings.Contains(string(b), *workDir) {
				pids = append(pids, pid)
			}
		}
		return pids
	}
	pids := find()
	if len(pids) == 0 {
		return
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	for range 30 {
		time.Sleep(100 * time.Millisecond)
		if len(find()) == 0 {
			return
		}
	}
	for _, pid := range find() {
		logf("killing stray process %d", pid)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// freeAddr returns a loopback address with a port free right now, so a
// restarted server can listen where the first one did.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// ---------------------------------------------------------------- server

type server struct {
	p    *proc
	dir  string
	addr string
	url  string
	cl   *api.Client
}

// startServer runs `lote server` on dir and waits until it answers.
func startServer(ctx context.Context, name, dir, addr string) (*server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p, err := start(name, nil, "server", "--dir", dir, "--listen", addr)
	if err != nil {
		return nil, err
	}
	s := &server{p: p, dir: dir, addr: addr, url: "http://" + addr}
	if err := s.waitHealthy(ctx, 60*time.Second, 10*time.Millisecond); err != nil {
		return nil, err
	}
	if s.cl, err = clientFor(dir); err != nil {
		return nil, err
	}
	return s, nil
}

// waitHealthy polls /healthz until it answers 200.
func (s *server) waitHealthy(ctx context.Context, limit, every time.Duration) error {
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(limit)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.url+"/healthz", nil)
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if s.p.exited() {
			return fmt.Errorf("%s exited: %v\n%s", s.p.name, s.p.err, s.p.tail())
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s not healthy after %s\n%s", s.p.name, limit, s.p.tail())
		}
		time.Sleep(every)
	}
}

// clientFor reads dir/client.json, waiting for it to appear.
func clientFor(dir string) (*api.Client, error) {
	path := filepath.Join(dir, "client.json")
	for i := 0; ; i++ {
		b, err := os.ReadFile(path)
		if err == nil {
			var cfg api.ClientConfig
			if err := json.Unmarshal(b, &cfg); err != nil {
				return nil, err
			}
			return api.NewClient(cfg.Server, cfg.Token, cfg.CAFile)
		}
		if i > 600 {
			return nil, fmt.Errorf("no %s: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// procStatus reads fields of /proc/PID/status in bytes (VmRSS, VmHWM).
func procStatus(pid int, field string) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// cpuTime is the user+system CPU a process has used (clock ticks of 10 ms).
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func mb(b int64) string { return strconv.FormatFloat(float64(b)/(1<<20), 'f', 1, 64) }

// waitJob long-polls until the job's first task group has completed.
func waitJob(ctx context.Context, cl *api.Client, id string, limit time.Duration) (api.Job, error) {
	deadline := time.Now().Add(limit)
	for {
		j, err := cl.WaitJob(ctx, id, 1, time.Second)
		if err != nil {
			return j, err
		}
		if j.Done {
			return j, nil
		}
		if time.Now().After(deadline) {
			return j, fmt.Errorf("job %s not done after %s: %+v", id, limit, j.TaskCounts)
		}
	}
}

func arraySubmit(pool string, n int) api.Submit {
	return api.Submit{
		Job: api.JobCreate{PoolID: pool},
		Tasks: api.TaskAdd{Array: fmt.Sprintf("1-%d", n),
			Template: &api.TaskSpec{Command: []string{"true"}, Requirements: api.Requirements{Slots: 1}}},
	}
}

// startSimAgents starts `lote _simagents` and waits until the pool has that
// many idle nodes.
func startSimAgents(ctx context.Context, s *server, name, pool, token string, n, perNode int) (*proc, error) {
	p, err := start(name, []string{"LOTE_JOIN_TOKEN=" + token}, "_simagents", "--server", s.url, "--pool", pool,
		"--nodes", strconv.Itoa(n), "--slots", strconv.Itoa(perNode))
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(120 * time.Second)
	for {
		pl, err := s.cl.Pool(ctx, pool, false)
		if err != nil {
			return nil, err
		}
		if pl.NodeCounts["idle"] >= n {
			return p, nil
		}
		if p.exited() {
			return nil, fmt.Errorf("simulated agents exited: %v\n%s", p.err, p.tail())
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("only %v of %d simulated nodes idle after 120s", pl.NodeCounts, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---------------------------------------------------------------- stubbed

// stubbed: the real server with its durable store, 1,000 simulated nodes in
// another process, N tasks from submit to the job done.
func stubbed(ctx context.Context) error {
	if *slots == 0 {
		*slots = 4
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	s, err := startServer(ctx, "stubbed-server", filepath.Join(*workDir, "stubbed"), addr)
	if err != nil {
		return err
	}
	pool, err := s.cl.CreatePool(ctx, api.PoolCreate{ID: "sim", SlotsPerNode: *slots})
	if err != nil {
		return err
	}
	t0 := time.Now()
	sim, err := startSimAgents(ctx, s, "stubbed-simagents", "sim", pool.JoinToken, *nodes, *slots)
	if err != nil {
		return err
	}
	logf("stubbed: %d simulated nodes of %d slots joined in %s", *nodes, *slots, time.Since(t0).Round(time.Millisecond))

	// Warm-up: one task per slot, so every node has had a task and the
	// server's code paths have run once.
	warm := *nodes * *slots
	res, err := s.cl.Submit(ctx, arraySubmit("sim", warm))
	if err != nil {
		return err
	}
	if _, err := waitJob(ctx, s.cl, res.JobID, 60*time.Second); err != nil {
		return err
	}

	srvCPU, simCPU := cpuTime(s.p.pid()), cpuTime(sim.pid())
	t0 = time.Now()
	res, err = s.cl.Submit(ctx, arraySubmit("sim", *tasks))
	if err != nil {
		return err
	}
	ack := time.Since(t0)
	j, err := waitJob(ctx, s.cl, res.JobID, 10*time.Minute)
	if err != nil {
		return err
	}
	el := time.Since(t0)
	srvCPU, simCPU = cpuTime(s.p.pid())-srvCPU, cpuTime(sim.pid())-simCPU
	if j.TaskCounts.Succeeded != *tasks {
		return fmt.Errorf("stubbed: %d of %d tasks succeeded: %+v", j.TaskCounts.Succeeded, *tasks, j.TaskCounts)
	}
	rate := float64(*tasks) / el.Seconds()
	logf("stubbed: %d tasks in %s (submit acknowledged in %s): %.0f tasks/s; CPU: server %s, simulated agents %s; server peak RSS %s MB",
		*tasks, el.Round(time.Millisecond), ack.Round(time.Millisecond), rate, srvCPU, simCPU, mb(procStatus(s.p.pid(), "VmHWM")))
	result("stubbed_tasks", *tasks)
	result("stubbed_nodes", *nodes)
	result("stubbed_slots", *slots)
	result("stubbed_seconds", secs(el))
	result("stubbed_rate", fmt.Sprintf("%.0f", rate))
	result("stubbed_server_cpu_s", secs(srvCPU))
	result("stubbed_sim_cpu_s", secs(simCPU))
	result("stubbed_server_hwm_mb", mb(procStatus(s.p.pid(), "VmHWM")))
	sim.stop(15 * time.Second)

	// The same restart as after the big array, on a store that now also
	// holds a row for each of the tasks that ran: N queued behind N finished.
	res, err = s.cl.Submit(ctx, arraySubmit("sim", *tasks))
	if err != nil {
		return err
	}
	apiUp, first, dbSize, err := restartServer(ctx, s, "stubbed", "sim", pool.JoinToken, res.JobID, *tasks)
	if err != nil {
		return err
	}
	result("restart_full_db_mb", mb(dbSize))
	result("restart_full_api_s", secs(apiUp))
	result("restart_full_s", secs(first))
	return nil
}

// ---------------------------------------------------------------- big array + restart

// bigArray submits N tasks to a pool with no nodes: time to acknowledge,
// server RSS while queued, time to list the first page. Then it kills the
// server with SIGKILL and measures the restart: from the exec of the new
// server until a simulated agent that connects as soon as the API answers
// has had its first task finished.
func bigArray(ctx context.Context) error {
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	dir := filepath.Join(*workDir, "bigarray")
	s, err := startServer(ctx, "bigarray-server", dir, addr)
	if err != nil {
		return err
	}
	pool, err := s.cl.CreatePool(ctx, api.PoolCreate{ID: "idle", SlotsPerNode: 4})
	if err != nil {
		return err
	}
	base := procStatus(s.p.pid(), "VmRSS")

	t0 := time.Now()
	res, err := s.cl.Submit(ctx, arraySubmit("idle", *tasks))
	if err != nil {
		return err
	}
	ack := time.Since(t0)
	if res.Added != *tasks {
		return fmt.Errorf("bigarray: added %d of %d", res.Added, *tasks)
	}
	// RSS while queued: the largest of a few samples over two seconds after
	// the acknowledgement (the submit's garbage may not be collected yet).
	var rss int64
	for range 5 {
		time.Sleep(400 * time.Millisecond)
		rss = max(rss, procStatus(s.p.pid(), "VmRSS"))
	}
	hwm := procStatus(s.p.pid(), "VmHWM")
	j, err := s.cl.Job(ctx, res.JobID)
	if err != nil {
		return err
	}
	if j.TaskCounts.Active != *tasks {
		return fmt.Errorf("bigarray: job counts %+v, want %d active", j.TaskCounts, *tasks)
	}
	logf("bigarray: %d tasks acknowledged in %s; server RSS %s MB before, %s MB queued (peak %s MB)",
		*tasks, ack.Round(time.Millisecond), mb(base), mb(rss), mb(hwm))

	// First page, through the CLI as a user runs it (process start included)
	// and through the API alone.
	var cliTimes, apiTimes []time.Duration
	for range 5 {
		cmd := exec.CommandContext(ctx, *loteBin, "task", "list", res.JobID, "--limit", "100")
		cmd.Env = append(os.Environ(), "LOTE_HOME="+dir)
		t := time.Now()
		out, err := cmd.Output()
		cliTimes = append(cliTimes, time.Since(t))
		if err != nil {
			return fmt.Errorf("lote task list: %w", err)
		}
		if n := strings.Count(string(out), "\n"); n < 101 {
			return fmt.Errorf("lote task list printed %d lines:\n%s", n, out)
		}
		t = time.Now()
		page, err := s.cl.Tasks(ctx, res.JobID, "", 100, "")
		apiTimes = append(apiTimes, time.Since(t))
		if err != nil {
			return err
		}
		if len(page.Tasks) != 100 {
			return fmt.Errorf("first page has %d tasks", len(page.Tasks))
		}
	}
	logf("bigarray: first page of 100 tasks: CLI %v (first %s), API %v", roundAll(cliTimes), ms(cliTimes[0]), roundAll(apiTimes))
	result("big_tasks", *tasks)
	result("big_ack_s", secs(ack))
	result("big_rss_mb", mb(rss))
	result("big_rss_base_mb", mb(base))
	result("big_hwm_mb", mb(hwm))
	result("big_list_ms", ms(median(cliTimes)))
	result("big_list_api_ms", ms(median(apiTimes)))

	// Restart: kill -9 with N queued, start again on the same directory and
	// address.
	apiUp, first, dbSize, err := restartServer(ctx, s, "bigarray", "idle", pool.JoinToken, res.JobID, *tasks)
	if err != nil {
		return err
	}
	result("restart_agent", *restart)
	result("restart_db_mb", mb(dbSize))
	result("restart_api_s", secs(apiUp))
	result("restart_s", secs(first))
	return nil
}

// restartServer kills s with SIGKILL and starts a server again on the same
// directory and address. It returns the time from the exec of the new server
// until its API answered, and until the first task of job finished on an
// agent (-restart-agent) started as soon as the API answered and joined to
// pool. The job must then still hold total tasks. Everything it started is
// stopped before it returns.
func restartServer(ctx context.Context, s *server, name, pool, token, job string, total int) (apiUp, first time.Duration, dbSize int64, err error) {
	s.p.kill9()
	for _, f := range []string{"lote.db", "lote.db-wal"} {
		dbSize += fileSize(filepath.Join(s.dir, f))
	}
	t0 := time.Now()
	p, err := start(name+"-server-restarted", nil, "server", "--dir", s.dir, "--listen", s.addr)
	if err != nil {
		return 0, 0, 0, err
	}
	defer p.stop(30 * time.Second)
	s2 := &server{p: p, dir: s.dir, addr: s.addr, url: s.url, cl: s.cl}
	if err := s2.waitHealthy(ctx, 120*time.Second, time.Millisecond); err != nil {
		return 0, 0, 0, err
	}
	apiUp = time.Since(t0)
	var ag *proc
	env := []string{"LOTE_JOIN_TOKEN=" + token}
	if *restart == "sim" {
		ag, err = start(name+"-restart-simagent", env, "_simagents", "--server", s.url, "--pool", pool,
			"--name", name+"-restart", "--nodes", "1", "--slots", "4")
	} else {
		ag, err = start(name+"-restart-agent", env, "agent", "--server", s.url, "--pool", pool, "--name", name+"-restart",
			"--slots", "4", "--dir", filepath.Join(*workDir, name+"-restart-agent"))
	}
	if err != nil {
		return 0, 0, 0, err
	}
	defer ag.stop(15 * time.Second)
	for {
		j, err := s.cl.Job(ctx, job)
		if err == nil && j.TaskCounts.Completed > 0 {
			first = time.Since(t0)
			break
		}
		if ag.exited() {
			return 0, 0, 0, fmt.Errorf("restart: the agent exited: %v\n%s", ag.err, ag.tail())
		}
		if time.Since(t0) > 120*time.Second {
			return 0, 0, 0, fmt.Errorf("restart: no task finished 120s after exec (last error %v)", err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	j, err := s.cl.Job(ctx, job)
	if err != nil {
		return 0, 0, 0, err
	}
	if j.TaskCounts.Total() != total {
		return 0, 0, 0, fmt.Errorf("restart: job %s has %d tasks, want %d", job, j.TaskCounts.Total(), total)
	}
	logf("%s restart: database %s MB; API answered %s after exec, first task finished (%s agent) %s after exec",
		name, mb(dbSize), apiUp.Round(time.Millisecond), *restart, first.Round(time.Millisecond))
	return apiUp, first, dbSize, nil
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(10 * time.Microsecond)
	}
	return out
}

// ---------------------------------------------------------------- latency

// latency: `lote up` with one real agent; N single-task jobs one after
// another, each submitted once the previous one completed (the pool is
// idle). Latency is the attempt's started_at, recorded by the agent, minus
// the time just before the client sent the submit (same clock).
func latency(ctx context.Context) error {
	if *slots == 0 {
		*slots = runtime.NumCPU()
	}
	dir := filepath.Join(*workDir, "latency")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	up, err := start("latency-up", []string{"LOTE_HOME=" + dir}, "up", "--dir", dir, "--nodes", "1",
		"--slots", strconv.Itoa(*slots), "--listen", addr)
	if err != nil {
		return err
	}
	s := &server{p: up, dir: dir, addr: addr, url: "http://" + addr}
	if err := s.waitHealthy(ctx, 60*time.Second, 10*time.Millisecond); err != nil {
		return err
	}
	if s.cl, err = clientFor(dir); err != nil {
		return err
	}
	for i := 0; ; i++ {
		ns, err := s.cl.PoolNodes(ctx, "local")
		if err == nil && len(ns) == 1 && ns[0].State == "idle" && ns[0].Connected {
			break
		}
		if i > 600 {
			return fmt.Errorf("latency: the local node is not idle: %+v %v\n%s", ns, err, up.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	one := api.Submit{Job: api.JobCreate{PoolID: "local"},
		Tasks: api.TaskAdd{Tasks: []api.TaskSpec{{Command: []string{"true"}, Requirements: api.Requirements{Slots: 1}}}}}
	measure := func() (toRun, toDone time.Duration, err error) {
		sent := time.Now()
		res, err := s.cl.Submit(ctx, one)
		if err != nil {
			return 0, 0, err
		}
		if _, err := waitJob(ctx, s.cl, res.JobID, 30*time.Second); err != nil {
			return 0, 0, err
		}
		toDone = time.Since(sent)
		t, err := s.cl.Task(ctx, res.JobID, res.FirstID)
		if err != nil {
			return 0, 0, err
		}
		if len(t.Attempts) == 0 || t.Attempts[0].StartedAt == nil {
			return 0, 0, fmt.Errorf("task %s/%s has no started_at: %+v", res.JobID, res.FirstID, t)
		}
		if t.Result != api.ResultSuccess {
			return 0, 0, fmt.Errorf("task %s/%s: %s %s", res.JobID, res.FirstID, t.Result, t.FailureCategory)
		}
		return t.Attempts[0].StartedAt.Sub(sent), toDone, nil
	}
	for range 20 { // warm-up
		if _, _, err := measure(); err != nil {
			return err
		}
	}
	var run, done []time.Duration
	t0 := time.Now()
	for range *jobs {
		r, d, err := measure()
		if err != nil {
			return err
		}
		run, done = append(run, r), append(done, d)
	}
	el := time.Since(t0)
	slices.Sort(run)
	slices.Sort(done)
	pct := func(s []time.Duration, p float64) time.Duration {
		return s[min(len(s)-1, int(float64(len(s))*p))]
	}
	if run[0] < 0 {
		logf("latency: WARNING: a started_at precedes its submit by %s", -run[0])
	}
	logf("latency: %d jobs in %s; submit → running p50 %s p90 %s p99 %s max %s; submit → done seen by client p50 %s p99 %s",
		*jobs, el.Round(time.Millisecond), ms(pct(run, .5)), ms(pct(run, .9)), ms(pct(run, .99)), ms(run[len(run)-1]),
		ms(pct(done, .5)), ms(pct(done, .99)))
	result("lat_jobs", *jobs)
	result("lat_p50_ms", ms(pct(run, .5)))
	result("lat_p90_ms", ms(pct(run, .9)))
	result("lat_p99_ms", ms(pct(run, .99)))
	result("lat_max_ms", ms(run[len(run)-1]))
	result("lat_done_p50_ms", ms(pct(done, .5)))
	result("lat_done_p99_ms", ms(pct(done, .99)))
	up.stop(30 * time.Second)
	if !up.exited() {
		return errors.New("lote up did not stop")
	}
	return nil
}
