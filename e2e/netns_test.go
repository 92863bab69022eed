package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// TestAgentInNetnsOverTLS: a server listening off loopback generates TLS
// material; an agent in its own network namespace, reaching the server over
// a veth pair, trusts it through the CA file, joins a pool with the pool's
// join token and runs the pool's tasks.
func TestAgentInNetnsOverTLS(t *testing.T) {
	t.Parallel()
	ns := newNetns(t)
	root := testRoot(t)
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, home, ns.hostIP+":0")
	if !strings.HasPrefix(c.url, "https://"+ns.hostIP+":") {
		t.Fatalf("server URL %s: want https on %s", c.url, ns.hostIP)
	}
	ca := filepath.Join(home, "tls", "ca.pem")
	if _, err := os.Stat(ca); err != nil {
		t.Fatalf("no generated CA: %v", err)
	}
	var pool api.Pool
	c.json(&pool, "pool", "create", "P", "--slots", "2", "--allow-root")
	if pool.JoinToken == "" {
		t.Fatal("pool create -o json printed no join token")
	}
	// The agent's LOTE_HOME is its own node directory: it must find the
	// server by its flags alone, not through the server's client.json.
	node := filepath.Join(root, "node")
	startWrapped(t, node, filepath.Join(root, "agent.log"), []string{"ip", "netns", "exec", ns.name},
		"agent", "--server", c.url, "--ca-file", ca, "--pool", "P", "--join-token", pool.JoinToken,
		"--dir", node, "--name", "ns-node", "--slots", "2")
	c.awaitNodes("P", 1)
	c.must("submit", "--job", "N", "--pool", "P", "--array", "1-20", "--wait", "--shell", "--",
		`ip -o -4 addr show 2>/dev/null | grep -q ' `+ns.nsIP+`/' && echo "in netns $LOTE_TASK_INDEX"`)
	if cnt := c.job("N").TaskCounts; cnt.Succeeded != 20 {
		t.Errorf("task_counts = %+v, want 20 succeeded", cnt)
	}
	tk := c.task("N", "7")
	if tk.NodeID != "ns-node" {
		t.Errorf("task 7 ran on %q, want ns-node", tk.NodeID)
	}
	if r := c.must("task", "logs", "N", "7"); r.stdout != "in netns 7\n" {
		t.Errorf("task logs N 7 = %q: the task did not run inside the namespace", r.stdout)
	}
	nodes := c.nodes("P")
	if len(nodes) != 1 || nodes[0].ID != "ns-node" {
		t.Errorf("pool P nodes = %+v, want ns-node alone", nodes)
	}
}

var netnsSeq atomic.Int32

// netns is a network namespace joined to the host by a veth pair.
type netns struct {
	name           string
	hostIP, nsIP   string
	hostIf, peerIf string
}

// newNetns creates a namespace with a veth pair on a /24 of 10.231.0.0/16
// no interface on the host uses yet, and removes both in cleanup. It skips
// the test (fails it when CI=true) without root or iproute2.
func newNetns(t *testing.T) *netns {
	t.Helper()
	if os.Geteuid() != 0 {
		requireCI(t, "network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		requireCI(t, "network namespaces need iproute2's ip: %v", err)
	}
	ipCmd := func(args ...string) error {
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	used, err := exec.Command("ip", "-o", "-4", "addr", "show").Output()
	if err != nil {
		requireCI(t, "ip addr show: %v", err)
	}
	// Names and subnet derive from the pid and a counter, so concurrent
	// runs and repeated tests do not clash.
	id := (os.Getpid()*7 + int(netnsSeq.Add(1))) % 100000
	var subnet int
	for i := range 250 {
		s := (id+i)%250 + 1
		if !strings.Contains(string(used), fmt.Sprintf(" 10.231.%d.", s)) {
			subnet = s
			break
		}
	}
	if subnet == 0 {
		t.Fatal("no free 10.231.x.0/24 subnet")
	}
	n := &netns{
		name:   "lote-e2e-" + strconv.Itoa(id),
		hostIf: "lte" + strconv.Itoa(id) + "h",
		peerIf: "lte" + strconv.Itoa(id) + "n",
		hostIP: fmt.Sprintf("10.231.%d.1", subnet),
		nsIP:   fmt.Sprintf("10.231.%d.2", subnet),
	}
	if err := ipCmd("netns", "add", n.name); err != nil {
		requireCI(t, "cannot create a network namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := ipCmd("link", "del", n.hostIf); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
			t.Errorf("cleanup: %v", err)
		}
		if err := ipCmd("netns", "del", n.name); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	for _, args := range [][]string{
		{"link", "add", n.hostIf, "type", "veth", "peer", "name", n.peerIf},
		{"link", "set", n.peerIf, "netns", n.name},
		{"addr", "add", n.hostIP + "/24", "dev", n.hostIf},
		{"link", "set", n.hostIf, "up"},
		{"-n", n.name, "addr", "add", n.nsIP + "/24", "dev", n.peerIf},
		{"-n", n.name, "link", "set", n.peerIf, "up"},
		{"-n", n.name, "link", "set", "lo", "up"},
	} {
		if err := ipCmd(args...); err != nil {
			t.Fatal(err)
		}
	}
	// The veth pair needs a moment before it carries traffic (DAD is off
	// for IPv4; the link must come up on both ends).
	waitFor(t, 10*time.Second, "the veth pair to come up", func() error {
		out, err := exec.Command("ip", "-n", n.name, "-o", "link", "show", n.peerIf).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if !strings.Contains(string(out), "LOWER_UP") {
			return fmt.Errorf("link not up: %s", out)
		}
		return nil
	})
	return n
}
