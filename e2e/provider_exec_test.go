package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// TestExecProviderNetnsAutoscale runs an autoscaled exec pool whose
// provider is the example netns script, through the server's scaler: the
// server listens over TLS on the script's bridge address, a job's backlog
// grows the pool to two namespaces, each with its own address, that run
// its tasks, and once the queue drained the pool returns to 0 nodes with
// no namespace and no agent left.
func TestExecProviderNetnsAutoscale(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	pool := "nsx" + strconv.Itoa(os.Getpid()%100000)
	// Away from TestNetnsProviderScript's subnet: both run at once.
	ns := newNetnsScript(t, root, 125, func() []string { return netnsOf(t, pool) })
	subnet, state, env, script, runScript := ns.subnet, ns.state, ns.env, ns.path, ns.run
	hostIP := strings.TrimSpace(runScript("host-address"))
	if hostIP != subnet+".1" {
		t.Fatalf("host-address = %q, want %s.1", hostIP, subnet)
	}
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	// The script runs with the server's environment: its settings go there.
	c := startServerEnv(t, home, hostIP+":0", env)
	if !strings.HasPrefix(c.url, "https://"+hostIP+":") {
		t.Fatalf("server URL %s: want https on %s", c.url, hostIP)
	}
	c.must("pool", "create", pool, "--provider", "exec", "--provider-command", script,
		"--allow-root", "--slots", "2", "--autoscale", "min(2, pending_tasks)", "--autoscale-interval", "1s")

	// The tasks wait for release, so that all four slots fill before any
	// ends and both nodes take some.
	release := filepath.Join(root, "release")
	c.must("submit", "--job", "A", "--pool", pool, "--array", "1-8", "--shell", "--",
		"while [ ! -e "+release+" ]; do sleep 0.05; done; "+
			"ip -o -4 addr show dev eth0 | tr -s ' ' | cut -d' ' -f4 | cut -d/ -f1")
	var ids []string
	c.awaitPool(pool, "2 nodes joined, running 4 tasks", 2*time.Minute, func(p api.Pool, nodes []api.Node) error {
		running := 0
		ids = ids[:0]
		for _, n := range nodes {
			running += n.RunningTasks
			ids = append(ids, n.ID)
		}
		if p.TargetNodes != 2 || joined(nodes) != 2 || running != 4 {
			return fmt.Errorf("target %d, %d of %d nodes joined, %d tasks running", p.TargetNodes, joined(nodes), len(nodes), running)
		}
		return nil
	})
	var pids []int
	for _, id := range ids {
		b, _ := os.ReadFile(filepath.Join(state, id, "pid"))
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || !alive(pid) {
			t.Fatalf("agent of %s: pid %d (%v) not alive", id, pid, err)
		}
		pids = append(pids, pid)
	}
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j := c.awaitJob("A", 2*time.Minute)
	if j.TaskCounts.Succeeded != 8 {
		t.Fatalf("task counts %+v, want 8 succeeded", j.TaskCounts)
	}
	addrOf := map[string]string{} // node → the address its tasks printed
	for i := 1; i <= 8; i++ {
		tk := c.task("A", strconv.Itoa(i))
		addr := strings.TrimSpace(c.must("task", "logs", "A", strconv.Itoa(i)).stdout)
		if !strings.HasPrefix(addr, subnet+".") || addr == hostIP {
			t.Errorf("task %d on %s printed address %q, want one of %s.0/24 other than the host's", i, tk.NodeID, addr, subnet)
		}
		if prev, ok := addrOf[tk.NodeID]; ok && prev != addr {
			t.Errorf("node %s has tasks on addresses %s and %s", tk.NodeID, prev, addr)
		}
		addrOf[tk.NodeID] = addr
	}
	if len(addrOf) != 2 || addrOf[ids[0]] == addrOf[ids[1]] {
		t.Errorf("tasks ran on %v, want both nodes %v, each on its own address", addrOf, ids)
	}

	p := c.awaitPool(pool, "back to 0 nodes", 2*time.Minute, func(p api.Pool, nodes []api.Node) error {
		if p.TargetNodes != 0 || len(nodes) != 0 {
			return fmt.Errorf("target %d, %d nodes", p.TargetNodes, len(nodes))
		}
		return nil
	})
	if len(p.ResizeErrors) > 0 {
		t.Errorf("resize errors: %+v", p.ResizeErrors)
	}
	waitFor(t, 30*time.Second, "the namespaces and agents to go", func() error {
		if ns := netnsOf(t, pool); len(ns) > 0 {
			return fmt.Errorf("namespaces left: %v", ns)
		}
		for i, pid := range pids {
			if alive(pid) {
				return fmt.Errorf("agent of %s (pid %d) still alive", ids[i], pid)
			}
		}
		// The server names the state directory in its environment.
		for _, ps := range procsMentioning(state) {
			if ps.pid != c.srv.pid() {
				return fmt.Errorf("process left: %+v", ps)
			}
		}
		for _, id := range ids {
			if _, err := os.Stat(filepath.Join(state, id)); !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("state of %s left: %v", id, err)
			}
		}
		return nil
	})
}

// TestExecProviderJoinTimeoutAndLeaks: with a provider whose machines never
// run an agent, the server deletes a machine it has no node for (a crash's
// leftover, there before the pool), and a node that does not join within
// the join timeout, reporting both as resize errors, then tries again.
func TestExecProviderJoinTimeoutAndLeaks(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	fp := newFakeProvider(t, root)
	fp.setMode("H", "idle")
	fp.record("H", "H-99")
	c := startServer(t, root, "127.0.0.1:0")
	c.must("pool", "create", "H", "--provider", "exec", "--provider-command", fp.script,
		"--provider-arg", fp.modeFile("H"), "--nodes", "1", "--join-timeout", "2s", "--allow-root", "--slots", "1")

	c.awaitPool("H", "the leftover H-99 deleted, H-1 timed out and deleted, H-2 made", time.Minute, func(p api.Pool, _ []api.Node) error {
		if err := hasResizeError(p, "machine H-99 has no node in pool H"); err != nil {
			return err
		}
		if err := hasResizeError(p, "node H-1 did not join within 2s"); err != nil {
			return err
		}
		if deleted := fp.lines("deleted.log"); !slices.Contains(deleted, "H-99") || !slices.Contains(deleted, "H-1") {
			return fmt.Errorf("deleted %v, want H-99 and H-1", deleted)
		}
		if created := fp.lines("created.log"); !slices.Contains(created, "H-2") {
			return fmt.Errorf("created %v, want H-2 after H-1", created)
		}
		return nil
	})
	for _, id := range []string{"H-99", "H-1"} {
		if fp.exists(id) {
			t.Errorf("machine %s survives its deletion", id)
		}
	}
	if n := len(c.nodes("H")); n > 1 {
		t.Errorf("pool H has %d nodes, want at most its target 1", n)
	}
	c.must("pool", "list")
	if c.srv.exited() {
		t.Fatalf("server exited: %s", c.srv.logText())
	}
}

// TestExecProviderCallsDoNotOverlap: a node whose join timeout passes
// while the provider is still creating its machine is deleted only after
// that create returned: the provider never has two calls in flight for a
// pool (the protocol promises that calls for one node do not overlap).
func TestExecProviderCallsDoNotOverlap(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	fp := newFakeProvider(t, root)
	fp.setMode("O", "slow")
	c := startServer(t, root, "127.0.0.1:0")
	c.must("pool", "create", "O", "--provider", "exec", "--provider-command", fp.script,
		"--provider-arg", fp.modeFile("O"), "--nodes", "1", "--join-timeout", "1s", "--allow-root", "--slots", "1")
	c.awaitPool("O", "O-1 timed out and deleted, O-2 made", time.Minute, func(p api.Pool, _ []api.Node) error {
		if err := hasResizeError(p, "node O-1 did not join within 1s"); err != nil {
			return err
		}
		if deleted := fp.lines("deleted.log"); !slices.Contains(deleted, "O-1") {
			return fmt.Errorf("deleted %v, want O-1", deleted)
		}
		if created := fp.lines("created.log"); !slices.Contains(created, "O-2") {
			return fmt.Errorf("created %v, want O-2 after O-1", created)
		}
		return nil
	})
	b, _ := os.ReadFile(filepath.Join(fp.dir, "calls-O.log"))
	var inFlight []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		ev, op, _ := strings.Cut(line, " ")
		if ev == "begin" {
			if len(inFlight) > 0 {
				t.Errorf("%s began while %v was in flight; calls:\n%s", op, inFlight, b)
				break
			}
			inFlight = append(inFlight, op)
		} else if i := slices.Index(inFlight, op); i >= 0 {
			inFlight = slices.Delete(inFlight, i, i+1)
		}
	}
}

// TestExecProviderFailures: each way a provider's create can fail (non-zero
// exit, a hang past the time-out, malformed JSON, fewer machines than asked
// for) becomes a resize error that says what went wrong, the server keeps
// answering, and once the provider works the pool reaches its target.
func TestExecProviderFailures(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	fp := newFakeProvider(t, root)
	c := startServer(t, root, "127.0.0.1:0")
	for _, tc := range []struct {
		mode, pool string
		nodes      int
		args       []string
		want       []string
	}{
		{mode: "fail", pool: "F", nodes: 1, want: []string{"exit status 3", "stderr: quota exceeded"}},
		{mode: "hang", pool: "T", nodes: 1, args: []string{"--provider-timeout", "1s"}, want: []string{"timed out after 1s"}},
		{mode: "garbage", pool: "G", nodes: 1, want: []string{"malformed JSON reply", `{not json`}},
		{mode: "short", pool: "S", nodes: 2, want: []string{"asked for 2 machines, got 1"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			fp.setMode(tc.pool, tc.mode)
			args := append([]string{"pool", "create", tc.pool, "--provider", "exec", "--provider-command", fp.script,
				"--provider-arg", fp.modeFile(tc.pool), "--nodes", strconv.Itoa(tc.nodes), "--allow-root", "--slots", "1"}, tc.args...)
			c.must(args...)
			c.awaitPool(tc.pool, "a resize error", time.Minute, func(p api.Pool, _ []api.Node) error {
				for _, w := range tc.want {
					if err := hasResizeError(p, w); err != nil {
						return err
					}
				}
				return nil
			})
			if r := c.must("pool", "list", "-q"); !slices.Contains(strings.Fields(r.stdout), tc.pool) {
				t.Errorf("pool list does not list %s:\n%s", tc.pool, r.stdout)
			}
			if tc.mode == "hang" {
				// The time-out killed the call's whole process group.
				waitFor(t, 30*time.Second, "the hung call to be killed", func() error {
					if ps := procsMentioning(fp.hangMarker()); len(ps) > 0 {
						return fmt.Errorf("still running: %+v", ps)
					}
					return nil
				})
			}
			fp.setMode(tc.pool, "ok")
			c.awaitPool(tc.pool, "its target reached", 2*time.Minute, func(p api.Pool, nodes []api.Node) error {
				if p.TargetNodes != tc.nodes || len(nodes) != tc.nodes || joined(nodes) != tc.nodes {
					return fmt.Errorf("target %d, %d of %d nodes joined", p.TargetNodes, joined(nodes), len(nodes))
				}
				return nil
			})
		})
	}
	if c.srv.exited() {
		t.Fatalf("server exited: %s", c.srv.logText())
	}
}

// fakeProvider is an exec provider script for tests whose machines are
// directories under dir/machines. What its create does is the mode in the
// file it gets as its first argument (one per pool):
//
//	ok       record the machines and start their agents on this host
//	idle     record them as running and start nothing
//	fail     exit 3 saying "quota exceeded" on stderr
//	hang     sleep 30 s
//	garbage  reply `{not json`
//	short    as ok, but only for the first node asked for
//	slow     as idle, after 3 s
//
// status lists the pool's recorded machines as running; delete stops their
// agents and removes them. created.log and deleted.log list the IDs each
// was asked for; calls-POOL.log has a line as each call begins and ends.
type fakeProvider struct {
	t      *testing.T
	dir    string
	script string
}

const fakeProviderScript = `#!/usr/bin/env bash
set -euo pipefail
STATE=@STATE@
LOTE=@LOTE@
mode=$(cat "$1" 2>/dev/null || echo ok)
op=$2
req=$(cat)
pool=$(jq -r '.pool' <<<"$req")
echo "begin $op" >>"$STATE/calls-$pool.log"
trap 'echo "end $op" >>"$STATE/calls-$pool.log"' EXIT

alive() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

case $op in
create)
	case $mode in
	fail) echo "quota exceeded" >&2; exit 3 ;;
	hang) HANG_MARKER=$STATE/hang sleep 30; exit 0 ;;
	garbage) echo '{not json'; exit 0 ;;
	slow) sleep 3; mode=idle ;;
	esac
	mapfile -t f < <(jq -r '.server, .join_token, (.slots // 0 | tostring), (.nodes[]?.id)' <<<"$req")
	server=${f[0]} token=${f[1]} slots=${f[2]}
	ids=("${f[@]:3}")
	if [[ $mode == short ]]; then ids=("${ids[@]:0:1}"); fi
	for id in "${ids[@]}"; do
		d=$STATE/machines/$id
		mkdir -p "$d/node"
		echo "$pool" >"$d/pool"
		echo "$id" >>"$STATE/created.log"
		if [[ $mode != idle ]]; then
			LOTE_JOIN_TOKEN=$token setsid "$LOTE" agent --server "$server" --pool "$pool" \
				--dir "$d/node" --name "$id" --slots "$slots" </dev/null >>"$d/agent.log" 2>&1 &
			echo $! >"$d/pid"
		fi
		printf '{"id":"%s","state":"running"}\n' "$id"
	done | jq -sc '{machines: .}'
	;;
status)
	for d in "$STATE"/machines/*/; do
		[[ -f $d/pool && $(cat "$d/pool") == "$pool" ]] || continue
		printf '{"id":"%s","state":"running"}\n' "$(basename "$d")"
	done | jq -sc '{machines: .}'
	;;
delete)
	for id in $(jq -r '.ids[]' <<<"$req"); do
		d=$STATE/machines/$id
		if [[ -f $d/pid ]]; then
			pid=$(cat "$d/pid")
			kill -TERM "$pid" 2>/dev/null || true
			for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
			kill -KILL "$pid" 2>/dev/null || true
		fi
		rm -rf "$d"
		echo "$id" >>"$STATE/deleted.log"
	done
	echo '{}'
	;;
*) echo "unknown op $op" >&2; exit 2 ;;
esac
`

// newFakeProvider writes the script into root/provider.
func newFakeProvider(t *testing.T, root string) *fakeProvider {
	t.Helper()
	for _, tool := range []string{"bash", "jq", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			requireCI(t, "the fake provider needs %s: %v", tool, err)
		}
	}
	fp := &fakeProvider{t: t, dir: filepath.Join(root, "provider")}
	fp.script = filepath.Join(fp.dir, "provider")
	if err := os.MkdirAll(filepath.Join(fp.dir, "machines"), 0o755); err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("@STATE@", strconv.Quote(fp.dir), "@LOTE@", strconv.Quote(lote)).Replace(fakeProviderScript)
	if err := os.WriteFile(fp.script, []byte(text), 0o755); err != nil {
		t.Fatal(err)
	}
	return fp
}

func (fp *fakeProvider) modeFile(pool string) string { return filepath.Join(fp.dir, "mode-"+pool) }

// hangMarker is in the environment of a hung create's sleep.
func (fp *fakeProvider) hangMarker() string { return filepath.Join(fp.dir, "hang") }

func (fp *fakeProvider) setMode(pool, mode string) {
	fp.t.Helper()
	// Renamed into place: a call never reads half a mode.
	tmp := fp.modeFile(pool) + ".tmp"
	if err := os.WriteFile(tmp, []byte(mode+"\n"), 0o644); err != nil {
		fp.t.Fatal(err)
	}
	if err := os.Rename(tmp, fp.modeFile(pool)); err != nil {
		fp.t.Fatal(err)
	}
}

// record makes a machine the server never asked for.
func (fp *fakeProvider) record(pool, id string) {
	fp.t.Helper()
	d := filepath.Join(fp.dir, "machines", id)
	if err := os.MkdirAll(d, 0o755); err != nil {
		fp.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "pool"), []byte(pool+"\n"), 0o644); err != nil {
		fp.t.Fatal(err)
	}
}

func (fp *fakeProvider) exists(id string) bool {
	_, err := os.Stat(filepath.Join(fp.dir, "machines", id))
	return err == nil
}

// lines reads one of the script's logs.
func (fp *fakeProvider) lines(name string) []string {
	b, _ := os.ReadFile(filepath.Join(fp.dir, name))
	return strings.Fields(string(b))
}

// hasResizeError says whether one of the pool's resize errors contains want.
func hasResizeError(p api.Pool, want string) error {
	var msgs []string
	for _, e := range p.ResizeErrors {
		if strings.Contains(e.Message, want) {
			return nil
		}
		msgs = append(msgs, e.Message)
	}
	return fmt.Errorf("no resize error contains %q; errors: %q", want, msgs)
}

// startServerEnv is startServer with env (KEY=VALUE) added to the server's
// environment, and so to its exec providers'.
func startServerEnv(t *testing.T, home, listen string, env []string) *cluster {
	t.Helper()
	log := filepath.Join(home, "server.log")
	from := fileSize(log)
	p := startWrapped(t, home, log, append([]string{"env"}, env...), "server", "--dir", home, "--listen", listen)
	return awaitServer(t, home, p, from, "lote server at ")
}

// netnsOf lists the network namespaces of a pool's netns machines.
func netnsOf(t *testing.T, pool string) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	var ns []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "lote-"+pool+"-") {
			ns = append(ns, f[0])
		}
	}
	return ns
}
