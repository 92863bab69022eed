package e2e

import (
	"bytes"
	"context"
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
	"github.com/lotehq/lote/internal/provider"
)

// TestNetnsProviderScript drives the example exec provider
// examples/providers/netns/lote-provider-netns through the exec provider
// itself: a server listens over TLS on the script's bridge address; create
// makes two namespaces whose agents join a static pool; tasks run in both,
// each on its own address; status reports both running; delete stops the
// agents (they leave the server), removes the namespaces and kills every
// process, and ignores an ID it never made.
func TestNetnsProviderScript(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	tag := "nsp" + strconv.Itoa(os.Getpid()%100000)
	ids := []string{tag + "-1", tag + "-2"}
	ns := newNetnsScript(t, root, 0, func() []string {
		return []string{"lote-" + ids[0], "lote-" + ids[1]}
	})
	subnet, state, args, runScript := ns.subnet, ns.state, ns.args, ns.run
	p, err := provider.NewExec(provider.ExecConfig{Command: "env", Args: args, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}

	hostIP := strings.TrimSpace(runScript("host-address"))
	if hostIP != subnet+".1" {
		t.Fatalf("host-address = %q, want %s.1", hostIP, subnet)
	}
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, home, hostIP+":0")
	if !strings.HasPrefix(c.url, "https://"+hostIP+":") {
		t.Fatalf("server URL %s: want https on %s", c.url, hostIP)
	}
	ca, err := os.ReadFile(filepath.Join(home, "tls", "ca.pem"))
	if err != nil {
		t.Fatalf("no generated CA: %v", err)
	}
	var pool api.Pool
	c.json(&pool, "pool", "create", "NS", "--slots", "2", "--allow-root")

	ctx := context.Background()
	ms, err := p.Create(ctx, provider.CreateRequest{Pool: "NS", Server: c.url, JoinToken: pool.JoinToken,
		CAPEM: string(ca), Slots: 2, Nodes: []provider.NodeRequest{{ID: ids[0]}, {ID: ids[1]}}})
	if err != nil {
		t.Fatalf("create: %v (machines %+v)", err, ms)
	}
	addr := map[string]string{} // node ID → its address
	for _, m := range ms {
		if m.State != provider.StateRunning || !strings.HasPrefix(m.Address, subnet+".") {
			t.Errorf("created machine %+v: want running on %s.0/24", m, subnet)
		}
		addr[m.ID] = m.Address
	}
	if len(addr) != 2 || addr[ids[0]] == addr[ids[1]] {
		t.Fatalf("created machines %+v: want two, on distinct addresses", ms)
	}
	c.awaitNodes("NS", 2)

	// Four slots in all and tasks of a second: both nodes take some.
	c.must("submit", "--job", "A", "--pool", "NS", "--array", "1-8", "--wait", "--shell", "--",
		"ip -o -4 addr show dev eth0 | tr -s ' ' | cut -d' ' -f4 | cut -d/ -f1; sleep 1")
	ranOn := map[string]bool{}
	for i := 1; i <= 8; i++ {
		tk := c.task("A", strconv.Itoa(i))
		if tk.State != "completed" || tk.ExitCode == nil || *tk.ExitCode != 0 {
			t.Errorf("task %d: %+v", i, tk)
		}
		got := strings.TrimSpace(c.must("task", "logs", "A", strconv.Itoa(i)).stdout)
		if want, ok := addr[tk.NodeID]; !ok || got != want {
			t.Errorf("task %d ran on node %q with address %q; the nodes are %v", i, tk.NodeID, got, addr)
		}
		ranOn[tk.NodeID] = true
	}
	if len(ranOn) != 2 {
		t.Errorf("tasks ran on %v, want both nodes", ranOn)
	}

	ms, err = p.Status(ctx, "NS")
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ms, func(a, b provider.Machine) int { return strings.Compare(a.ID, b.ID) })
	want := []provider.Machine{{ID: ids[0], State: "running", Address: addr[ids[0]]},
		{ID: ids[1], State: "running", Address: addr[ids[1]]}}
	if !slices.Equal(ms, want) {
		t.Errorf("status NS = %+v, want %+v", ms, want)
	}
	if ms, err := p.Status(ctx, "OTHER"); err != nil || len(ms) != 0 {
		t.Errorf("status OTHER = %+v, %v; want none", ms, err)
	}

	var pids []int
	for _, id := range ids {
		b, _ := os.ReadFile(filepath.Join(state, id, "pid"))
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || !alive(pid) {
			t.Fatalf("agent of %s: pid %d (%v) not alive", id, pid, err)
		}
		pids = append(pids, pid)
	}
	if err := p.Delete(ctx, "NS", append(slices.Clone(ids), "never-made")); err != nil {
		t.Fatal(err)
	}
	netnsList, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range ids {
		if bytes.Contains(netnsList, []byte("lote-"+id+" ")) || bytes.HasSuffix(bytes.TrimSpace(netnsList), []byte("lote-"+id)) {
			t.Errorf("namespace lote-%s survives delete:\n%s", id, netnsList)
		}
		if alive(pids[i]) {
			t.Errorf("agent of %s (pid %d) survives delete", id, pids[i])
		}
		if _, err := os.Stat(filepath.Join(state, id)); !os.IsNotExist(err) {
			t.Errorf("state of %s survives delete: %v", id, err)
		}
	}
	if ps := procsMentioning(state); len(ps) > 0 {
		t.Errorf("processes survive delete: %+v", ps)
	}
	if ms, err := p.Status(ctx, "NS"); err != nil || len(ms) != 0 {
		t.Errorf("status NS after delete = %+v, %v; want none", ms, err)
	}
	// The agents stopped gracefully: the server saw them leave.
	waitFor(t, 10*time.Second, "the deleted nodes to disconnect", func() error {
		for _, n := range c.nodes("NS") {
			if n.Connected {
				return fmt.Errorf("node %s still connected", n.ID)
			}
		}
		return nil
	})
}

// netnsScript is the example netns provider set up for one test: a free
// subnet of its own, a state directory, and its settings; a cleanup tears
// down what it made, and deletes the namespaces names lists in case the
// script left any.
type netnsScript struct {
	t      *testing.T
	path   string   // the script
	state  string   // its state directory
	env    []string // its settings, KEY=VALUE
	args   []string // env -i ... path: the script in a clean environment
	subnet string   // A.B.C of its /24
}

// newNetnsScript checks for root and the script's tools (failing in CI
// where they are missing) and sets the script up under root. Tests that
// run at once pass different offsets, so they get different subnets.
func newNetnsScript(t *testing.T, root string, offset int, names func() []string) *netnsScript {
	t.Helper()
	if os.Geteuid() != 0 {
		requireCI(t, "the netns provider needs root")
	}
	for _, tool := range []string{"ip", "ss", "jq", "flock", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			requireCI(t, "the netns provider needs %s: %v", tool, err)
		}
	}
	path, err := filepath.Abs("../examples/providers/netns/lote-provider-netns")
	if err != nil {
		t.Fatal(err)
	}
	subnet, bridge := freeSubnet(t, offset)
	state := filepath.Join(root, "netns-state")
	ns := &netnsScript{t: t, path: path, subnet: subnet, state: state, env: []string{
		"LOTE_NETNS_SUBNET=" + subnet + ".0/24", "LOTE_NETNS_STATE=" + state,
		"LOTE_NETNS_LOTE=" + lote, "LOTE_NETNS_STOP_TIMEOUT=10",
	}}
	// env -i: the script and its agents see a clean environment, without
	// the LOTE_ settings of whoever runs the tests.
	ns.args = append(append([]string{"-i"}, childEnv(root, ns.env...)...), path)
	t.Cleanup(func() {
		if out, err := exec.Command("env", append(ns.args, "teardown")...).CombinedOutput(); err != nil {
			t.Errorf("lote-provider-netns teardown: %v\n%s", err, out)
		}
		for _, n := range names() {
			exec.Command("ip", "netns", "del", n).Run()
		}
		exec.Command("ip", "link", "del", bridge).Run()
	})
	return ns
}

// run runs one operation of the script with no input.
func (ns *netnsScript) run(op string) string {
	ns.t.Helper()
	out, err := exec.Command("env", append(ns.args, op)...).CombinedOutput()
	if err != nil {
		ns.t.Fatalf("lote-provider-netns %s: %v\n%s", op, err, out)
	}
	return string(out)
}

// freeSubnet picks A.B.C of a 10.232.C.0/24 no interface on the host uses,
// starting offset subnets away from this process's first pick, and the
// netns script's default bridge name for it.
func freeSubnet(t *testing.T, offset int) (prefix, bridge string) {
	t.Helper()
	used, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		t.Fatalf("ip addr show: %v", err)
	}
	start := (os.Getpid() + offset) % 250
	for i := range 250 {
		s := (start+i)%250 + 1
		if !bytes.Contains(used, fmt.Appendf(nil, " 10.232.%d.", s)) {
			return fmt.Sprintf("10.232.%d", s), fmt.Sprintf("lb-10-232-%d", s)
		}
	}
	t.Fatal("no free 10.232.x.0/24 subnet")
	return "", ""
}
