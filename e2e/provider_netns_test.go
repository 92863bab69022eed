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
	if os.Geteuid() != 0 {
		requireCI(t, "the netns provider needs root")
	}
	for _, tool := range []string{"ip", "ss", "jq", "flock", "setsid"} {
		if _, err := exec.LookPath(tool); err != nil {
			requireCI(t, "the netns provider needs %s: %v", tool, err)
		}
	}
	script, err := filepath.Abs("../examples/providers/netns/lote-provider-netns")
	if err != nil {
		t.Fatal(err)
	}
	root := testRoot(t)
	state := filepath.Join(root, "netns-state")
	subnet, bridge := providerSubnet(t)
	tag := "nsp" + strconv.Itoa(os.Getpid()%100000)
	ids := []string{tag + "-1", tag + "-2"}
	// env -i: the script and its agents see a clean environment, without
	// the LOTE_ settings of whoever runs the tests.
	args := append([]string{"-i"}, childEnv(root, "LOTE_NETNS_SUBNET="+subnet+".0/24",
		"LOTE_NETNS_STATE="+state, "LOTE_NETNS_LOTE="+lote, "LOTE_NETNS_STOP_TIMEOUT=10")...)
	args = append(args, script)
	runScript := func(op string) string {
		t.Helper()
		out, err := exec.Command("env", append(args, op)...).CombinedOutput()
		if err != nil {
			t.Fatalf("lote-provider-netns %s: %v\n%s", op, err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("env", append(args, "teardown")...).CombinedOutput(); err != nil {
			t.Errorf("lote-provider-netns teardown: %v\n%s", err, out)
		}
		// Whatever the script left behind.
		for _, id := range ids {
			exec.Command("ip", "netns", "del", "lote-"+id).Run()
		}
		exec.Command("ip", "link", "del", bridge).Run()
	})
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

// providerSubnet picks A.B.C of a 10.232.C.0/24 no interface on the host uses,
// and the script's default bridge name for it.
func providerSubnet(t *testing.T) (prefix, bridge string) {
	t.Helper()
	used, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		t.Fatalf("ip addr show: %v", err)
	}
	start := os.Getpid() % 250
	for i := range 250 {
		s := (start+i)%250 + 1
		if !bytes.Contains(used, fmt.Appendf(nil, " 10.232.%d.", s)) {
			return fmt.Sprintf("10.232.%d", s), fmt.Sprintf("lb-10-232-%d", s)
		}
	}
	t.Fatal("no free 10.232.x.0/24 subnet")
	return "", ""
}
