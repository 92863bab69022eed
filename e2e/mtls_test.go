package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// TestAgentMutualTLS: a server started with --agent-mtls refuses an agent
// without a client certificate with a clear error; an agent with one from
// `lote server issue-cert` joins under the certificate's name, stages an
// input and uploads an output through the data API, and runs its task; the
// node's credential alone, without the certificate, is refused there; the
// CLI needs no certificate.
func TestAgentMutualTLS(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, home, "0.0.0.0:0", "--agent-mtls")
	if !strings.HasPrefix(c.url, "https://") {
		t.Fatalf("server URL %s: want https", c.url)
	}
	ca := filepath.Join(home, "tls", "ca.pem")
	var pool api.Pool
	c.json(&pool, "pool", "create", "P", "--slots", "1", "--allow-root")

	bare := startProc(t, home, filepath.Join(root, "agent-bare.log"), "agent", "--server", c.url, "--ca-file", ca,
		"--pool", "P", "--join-token", pool.JoinToken, "--dir", filepath.Join(root, "bare"), "--slots", "1")
	code, ok := bare.wait(30 * time.Second)
	if !ok {
		t.Fatal("an agent without a client certificate is still running against an --agent-mtls server")
	}
	if log := bare.logText(); code == 0 || !strings.Contains(log, "requires agents to present a client certificate") {
		t.Errorf("agent without a certificate: exit %d, log:\n%s", code, log)
	}

	certs := filepath.Join(root, "certs")
	c.must("server", "issue-cert", "--dir", home, "--node", "n1", "--out", certs)
	nodeDir := filepath.Join(root, "n1")
	startProc(t, home, filepath.Join(root, "agent.log"), "agent", "--server", c.url, "--ca-file", filepath.Join(certs, "ca.pem"),
		"--cert-file", filepath.Join(certs, "agent.pem"), "--key-file", filepath.Join(certs, "agent.key"),
		"--pool", "P", "--join-token", pool.JoinToken, "--dir", nodeDir, "--slots", "1")
	c.awaitNodes("P", 1)
	if n := c.nodes("P"); n[0].ID != "n1" {
		t.Errorf("the node joined as %q, want n1 (the certificate's name)", n[0].ID)
	}

	in := filepath.Join(root, "in.txt")
	if err := os.WriteFile(in, []byte("over mutual TLS\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.must("data", "put", in, "data://inputs/in.txt")
	c.must("submit", "--job", "M", "--pool", "P", "--wait", "--input", "data://inputs/in.txt=in.txt",
		"--output", "out.txt=data://results/out.txt", "--", "cp", "in.txt", "out.txt")
	if tk := c.task("M", "task-1"); tk.State != api.TaskCompleted || tk.Result != api.ResultSuccess || tk.NodeID != "n1" {
		t.Fatalf("task = %+v, want a success on n1", tk)
	}
	out := filepath.Join(root, "out.txt")
	c.must("data", "get", "data://results/out.txt", out)
	if b, _ := os.ReadFile(out); string(b) != "over mutual TLS\n" {
		t.Errorf("output = %q", b)
	}

	// The node's credential without its certificate gets nothing.
	b, err := os.ReadFile(filepath.Join(nodeDir, "node.json"))
	if err != nil {
		t.Fatal(err)
	}
	var id struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(b, &id); err != nil || id.Token == "" {
		t.Fatalf("node.json: %v", err)
	}
	cl, err := api.NewClient(c.url, id.Token, ca)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.GetData(context.Background(), "inputs", "in.txt", true); !api.IsStatus(err, http.StatusUnauthorized) {
		t.Errorf("the node token without the certificate: %v, want 401", err)
	}
}
