package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// TestAgentRestartAdoptsTask: an agent killed with -9 and started again on
// the same directory (within its adopt timeout) takes over the task its
// spawner kept running: the task completes with its first attempt, is not
// requeued, and ran exactly once.
func TestAgentRestartAdoptsTask(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, home, "127.0.0.1:0", "--heartbeat-timeout", "30s")
	var pool api.Pool
	c.json(&pool, "pool", "create", "P", "--slots", "1", "--allow-root")
	node := filepath.Join(root, "node")
	agentArgs := []string{"agent", "--server", c.url, "--pool", "P", "--join-token", pool.JoinToken,
		"--dir", node, "--slots", "1", "--adopt-timeout", "20s"}
	ag := startProc(t, home, filepath.Join(root, "agent.log"), agentArgs...)
	c.awaitNodes("P", 1)

	runs := filepath.Join(root, "runs")
	release := filepath.Join(root, "release")
	c.must("submit", "--job", "A", "--pool", "P", "--shell", "--",
		`echo "$LOTE_ATTEMPT $$" >> '`+runs+`'; while [ ! -e '`+release+`' ]; do sleep 0.05; done; echo finished`)
	waitFor(t, 30*time.Second, "the task to start", func() error {
		_, err := os.Stat(runs)
		return err
	})

	ag.signal(syscall.SIGKILL)
	if _, ok := ag.wait(10 * time.Second); !ok {
		t.Fatal("the agent survived SIGKILL")
	}
	ag = startProc(t, home, filepath.Join(root, "agent2.log"), agentArgs...)
	waitFor(t, 30*time.Second, "the restarted agent to adopt the task", func() error {
		if !strings.Contains(ag.logText(), "adopted running tasks") {
			return os.ErrNotExist
		}
		return nil
	})
	if err := os.WriteFile(release, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	j := c.awaitJob("A", 30*time.Second)
	if j.TaskCounts.Succeeded != 1 {
		t.Fatalf("task_counts = %+v, want 1 succeeded", j.TaskCounts)
	}
	tasks := c.tasks("A", "completed")
	if len(tasks) != 1 {
		t.Fatalf("%d completed tasks, want 1", len(tasks))
	}
	task := c.task("A", tasks[0].ID)
	if task.Attempt != 1 || task.Requeues != 0 || len(task.Attempts) != 1 {
		t.Errorf("attempt %d, requeues %d, %d attempts; want the first attempt adopted, not requeued",
			task.Attempt, task.Requeues, len(task.Attempts))
	}
	b, err := os.ReadFile(runs)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != 1 || !strings.HasPrefix(lines[0], "1 ") {
		t.Errorf("the task ran %d time(s): %q; want once, as attempt 1", len(lines), b)
	}
	out := c.must("task", "logs", "A", tasks[0].ID)
	if got := strings.TrimSpace(out.stdout); got != "finished" {
		t.Errorf("task logs = %q, want %q", got, "finished")
	}
}
