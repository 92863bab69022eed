package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLateReportRejected (F4): an agent cut off from the server for longer
// than the heartbeat timeout (here: stopped with SIGSTOP) has its task
// requeued to another node; when it comes back its report of the old
// attempt is rejected, and the task's result is the new attempt's.
func TestLateReportRejected(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "2", "--slots", "1", "--heartbeat-timeout", "3s")
	c.awaitNodes("local", 2)
	c.must("submit", "--job", "P", "--shell", "--", `sleep 2; echo "attempt $LOTE_ATTEMPT on $LOTE_NODE_ID"`)
	var first string
	waitFor(t, 30*time.Second, "the task to run", func() error {
		tk := c.task("P", "task-1")
		if tk.State != "running" {
			return fmt.Errorf("state %s", tk.State)
		}
		first = tk.NodeID
		return nil
	})
	pid := agentPID(t, filepath.Join(home, "nodes", first))
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	waitFor(t, 30*time.Second, "the task to be requeued to the other node", func() error {
		tk := c.task("P", "task-1")
		if tk.Attempt < 2 || tk.NodeID == first {
			return fmt.Errorf("attempt %d on %s", tk.Attempt, tk.NodeID)
		}
		return nil
	})
	resume() // the old attempt's process has ended by now; its report is late
	j := c.awaitJob("P", 30*time.Second)
	if j.TaskCounts.Succeeded != 1 {
		t.Fatalf("task_counts = %+v", j.TaskCounts)
	}
	tk := c.task("P", "task-1")
	if len(tk.Attempts) != 2 || tk.Attempts[0].NodeID != first || tk.Attempts[0].FailureCategory != "infra" ||
		tk.Attempts[1].NodeID == first || tk.Attempts[1].Result != "success" {
		t.Errorf("attempts = %+v; want infra on %s, then success on the other node", tk.Attempts, first)
	}
	out := strings.TrimSpace(c.must("task", "logs", "P", "task-1").stdout)
	if !strings.HasPrefix(out, "attempt 2 on ") || strings.HasSuffix(out, first) {
		t.Errorf("task logs = %q; want the second attempt's output, from the other node", out)
	}
	// The stopped agent comes back and rejoins: its node is usable again.
	waitFor(t, 30*time.Second, "the cut-off node to rejoin", func() error {
		for _, n := range c.nodes("local") {
			if n.ID == first && n.State != "idle" {
				return fmt.Errorf("%s is %s", n.ID, n.State)
			}
		}
		return nil
	})
}
