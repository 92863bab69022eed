package e2e

import (
	"os"
	"os/user"
	"path/filepath"
	"testing"

	"github.com/lotehq/lote/api"
)

// TestTasksRunAsUnprivilegedUser: a root agent runs the tasks of a pool
// without allow_root as its run-as user (default nobody), who owns the
// working directory, cannot write to a root-only directory and cannot read
// the agent's node credential; a pool with allow_root runs them as root.
func TestTasksRunAsUnprivilegedUser(t *testing.T) {
	if os.Geteuid() != 0 {
		requireCI(t, "running tasks as another user needs root")
	}
	t.Parallel()
	nobody, err := user.Lookup("nobody")
	if err != nil {
		requireCI(t, "no user nobody: %v", err)
	}
	root := testRoot(t)
	// t.TempDir's directories are 0700: let other users reach the node
	// directories below them, as they could under /var/lib.
	for _, d := range []string{filepath.Dir(root), root} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := filepath.Join(root, "secret")
	if err := os.Mkdir(secret, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, home, "127.0.0.1:0")
	script := `id -u; stat -c %u .; touch '` + secret + `'/"$LOTE_POOL_ID" 2>/dev/null && echo wrote || echo denied; ` +
		`cat "$LOTE_NODE_ROOT_DIR/node.json" >/dev/null 2>&1 && echo read-node-credential || echo private`
	for _, tc := range []struct {
		pool string
		args []string
		want string
	}{
		{"U", nil, nobody.Uid + "\n" + nobody.Uid + "\ndenied\nprivate\n"},
		{"R", []string{"--allow-root"}, "0\n0\nwrote\nread-node-credential\n"},
	} {
		var pool api.Pool
		// The start task writes in its working directory: it must be the
		// run-as user's, as a task's is.
		c.json(&pool, append([]string{"pool", "create", tc.pool, "--slots", "1", "--start-task", "echo ready > started"}, tc.args...)...)
		if pool.AllowRoot != (tc.args != nil) {
			t.Errorf("pool %s: allow_root = %v", tc.pool, pool.AllowRoot)
		}
		node := filepath.Join(root, "node-"+tc.pool)
		startProc(t, home, filepath.Join(root, "agent-"+tc.pool+".log"), "agent", "--server", c.url, "--pool", tc.pool,
			"--join-token", pool.JoinToken, "--dir", node, "--name", "n-"+tc.pool, "--slots", "1")
		c.awaitNodes(tc.pool, 1)
		c.must("submit", "--job", "J"+tc.pool, "--pool", tc.pool, "--array", "1-1", "--wait", "--shell", "--", script)
		if cnt := c.job("J" + tc.pool).TaskCounts; cnt.Succeeded != 1 {
			t.Errorf("pool %s: task_counts = %+v, want 1 succeeded", tc.pool, cnt)
		}
		if r := c.must("task", "logs", "J"+tc.pool, "1"); r.stdout != tc.want {
			t.Errorf("pool %s: task printed %q, want %q", tc.pool, r.stdout, tc.want)
		}
	}
}
