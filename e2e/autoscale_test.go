package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// awaitPool polls a pool until cond holds.
func (c *cluster) awaitPool(id, what string, timeout time.Duration, cond func(p api.Pool, nodes []api.Node) error) api.Pool {
	c.t.Helper()
	var p api.Pool
	waitFor(c.t, timeout, "pool "+id+": "+what, func() error {
		c.json(&p, "pool", "show", id)
		return cond(p, c.nodes(id))
	})
	return p
}

// joined counts connected nodes.
func joined(nodes []api.Node) int {
	n := 0
	for _, nd := range nodes {
		if nd.Connected {
			n++
		}
	}
	return n
}

// noAgentsOf checks that no process runs in the node directories of a
// pool's (removed) nodes.
func noAgentsOf(t *testing.T, home string, ids []string) {
	t.Helper()
	for _, id := range ids {
		dir := filepath.Join(home, "nodes", id)
		waitFor(t, 30*time.Second, "the agent of "+id+" to stop", func() error {
			if ps := procsMentioning(dir); len(ps) > 0 {
				return fmt.Errorf("still running: %v", ps)
			}
			return nil
		})
	}
}

// TestAutoscaleLocalPool: a local pool with min 0, max 4 and a formula on
// pending tasks, evaluated every 2 s, grows to 4 agents for a 200-task job,
// runs it, and goes back to 0 once the queue drained, stopping its agents;
// the job is charged the node time its tasks used at the pool's price.
func TestAutoscaleLocalPool(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")
	c.must("pool", "create", "auto", "--provider", "local", "--allow-root", "--slots", "1", "--price", "3.6",
		"--autoscale", "pending_tasks", "--autoscale-interval", "2s", "--max-nodes", "4")
	c.must("submit", "--job", "A", "--pool", "auto", "--array", "1-200", "--", "sleep", "0.2")
	var seen []string
	c.awaitPool("auto", "4 nodes joined", 60*time.Second, func(p api.Pool, nodes []api.Node) error {
		if p.TargetNodes != 4 {
			return fmt.Errorf("target %d", p.TargetNodes)
		}
		if n := joined(nodes); n != 4 {
			return fmt.Errorf("%d of %d nodes joined", n, len(nodes))
		}
		for _, n := range nodes {
			seen = append(seen, n.ID)
		}
		return nil
	})
	j := c.awaitJob("A", 2*time.Minute)
	if j.TaskCounts.Succeeded != 200 {
		t.Fatalf("task counts %+v, want 200 succeeded", j.TaskCounts)
	}
	p := c.awaitPool("auto", "back to 0 nodes", 60*time.Second, func(p api.Pool, nodes []api.Node) error {
		if len(nodes) != 0 || p.TargetNodes != 0 {
			return fmt.Errorf("target %d, %d nodes", p.TargetNodes, len(nodes))
		}
		return nil
	})
	noAgentsOf(t, home, seen)
	if len(p.AutoscaleRuns) == 0 || p.AutoscaleRuns[len(p.AutoscaleRuns)-1].Vars["pending_tasks"] != 0 {
		t.Errorf("pool show lists no evaluation with pending_tasks 0: %+v", p.AutoscaleRuns)
	}
	if p.Usage.NodeSeconds <= 0 || p.Usage.Cost <= 0 {
		t.Errorf("pool usage %+v, want node time and its cost", p.Usage)
	}
	c.json(&j, "job", "show", "A")
	// 200 tasks of at least 0.2 s on one-slot nodes at 3.6 an hour.
	if j.NodeSeconds < 40 || j.Cost < 0.04 || j.Cost > p.Usage.Cost {
		t.Errorf("job usage %.1f node-s, cost %.4f; want ≥ 40 node-s, ≥ 0.04 and at most the pool's %.4f", j.NodeSeconds, j.Cost, p.Usage.Cost)
	}
	if r := c.must("job", "show", "A"); !strings.Contains(r.stdout, "node-seconds, cost 0.") {
		t.Errorf("job show prints no cost:\n%s", r.stdout)
	}
}

// TestBurstPool: a job on pool local (one node) that may burst to an
// autoscaled pool: the backlog grows the burst pool, tasks run on both, and
// the burst pool returns to 0 nodes afterwards.
func TestBurstPool(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1", "--slots", "1")
	c.awaitNodes("local", 1)
	c.must("pool", "create", "burst", "--provider", "local", "--allow-root", "--slots", "1",
		"--autoscale", "min(3, pending_tasks)", "--autoscale-interval", "1s")
	c.must("submit", "--job", "B", "--pool", "local,burst", "--array", "1-40", "--wait", "--", "sleep", "0.3")
	on := map[string]int{}
	for i := 1; i <= 40; i++ {
		tk := c.task("B", strconv.Itoa(i))
		if tk.Result != "success" {
			t.Errorf("task %d: %s", i, tk.Result)
		}
		pool, _, _ := strings.Cut(tk.NodeID, "-")
		on[pool]++
	}
	if on["local"] == 0 || on["burst"] == 0 {
		t.Errorf("tasks ran on %v, want both pools", on)
	}
	var j api.Job
	c.json(&j, "job", "show", "B")
	if len(j.BurstPoolIDs) != 1 || j.BurstPoolIDs[0] != "burst" {
		t.Errorf("job burst pools %v", j.BurstPoolIDs)
	}
	c.awaitPool("burst", "back to 0 nodes", 60*time.Second, func(p api.Pool, nodes []api.Node) error {
		if len(nodes) != 0 {
			return fmt.Errorf("%d nodes", len(nodes))
		}
		return nil
	})
	if n := c.nodes("local"); len(n) != 1 {
		t.Errorf("pool local has %d nodes, want its 1", len(n))
	}
}

// TestSpotPreemption: a task on a spot node is preempted mid-run: it gets
// SIGTERM, its checkpoint is saved, and it resumes from the checkpoint on
// another node with its retry count unchanged; the preempted node is
// replaced.
func TestSpotPreemption(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")
	c.must("pool", "create", "S", "--provider", "local", "--allow-root", "--slots", "1", "--spot-nodes", "2", "--spot-price", "0.5")
	c.awaitPool("S", "2 spot nodes joined", 60*time.Second, func(p api.Pool, nodes []api.Node) error {
		if n := joined(nodes); n != 2 || p.CurrentSpotNodes != 2 {
			return fmt.Errorf("%d joined, %d spot", n, p.CurrentSpotNodes)
		}
		for _, n := range nodes {
			if !n.Spot {
				return fmt.Errorf("node %s is not spot", n.ID)
			}
		}
		return nil
	})
	script := `p=$(cat "$LOTE_CHECKPOINT_DIR/progress" 2>/dev/null || echo 0); echo "start $p on $LOTE_NODE_ID"; ` +
		`while [ "$p" -lt 40 ]; do p=$((p+1)); echo $p > "$LOTE_CHECKPOINT_DIR/progress"; echo "step $p"; sleep 0.1; done`
	c.must("submit", "--job", "P", "--pool", "S", "--max-retries", "0", "--shell", "--", script)
	var first string
	waitFor(t, 30*time.Second, "the task to make progress", func() error {
		tk := c.task("P", "task-1")
		if tk.State != "running" {
			return fmt.Errorf("task %s", tk.State)
		}
		first = tk.NodeID
		if r := c.cli("task", "logs", "P", "task-1"); !strings.Contains(r.stdout, "step 5\n") {
			return fmt.Errorf("log so far %q", r.stdout)
		}
		return nil
	})
	var n api.Node
	c.json(&n, "node", "preempt", first)
	if n.State != "preempted" {
		t.Errorf("preempted node is %s", n.State)
	}
	j := c.awaitJob("P", 60*time.Second)
	tk := c.task("P", "task-1")
	if j.TaskCounts.Succeeded != 1 || tk.Retries != 0 || len(tk.Attempts) < 2 {
		t.Fatalf("task %s retries %d attempts %d, want success on a later attempt with no retry used", tk.Result, tk.Retries, len(tk.Attempts))
	}
	if tk.NodeID == first {
		t.Errorf("the task resumed on %s, the preempted node", first)
	}
	logs := c.must("task", "logs", "P", "task-1").stdout
	start, _, _ := strings.Cut(logs, "\n")
	var from int
	if _, err := fmt.Sscanf(start, "start %d on", &from); err != nil || from < 5 {
		t.Errorf("last attempt began %q, want it to resume from a checkpoint of at least 5 steps", start)
	}
	c.awaitPool("S", "the preempted node replaced", 60*time.Second, func(p api.Pool, nodes []api.Node) error {
		for _, nd := range nodes {
			if nd.ID == first {
				return fmt.Errorf("%s still listed (%s)", first, nd.State)
			}
		}
		if n := joined(nodes); n != 2 {
			return fmt.Errorf("%d nodes joined", n)
		}
		return nil
	})
	noAgentsOf(t, home, []string{first})
}

// TestResizeDeallocation: shrinking a local pool under a running task, by
// each deallocation option. requeue kills the task and requeues it with no
// retry used (it completes once the pool has a node again); terminate
// kills it and it fails; task_completion lets it finish (never kills it)
// and removes the node after.
func TestResizeDeallocation(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	up := startUp(t, home, "--nodes", "1")
	for _, mode := range []string{"requeue", "terminate", "task_completion"} {
		t.Run(mode, func(t *testing.T) {
			c := *up
			c.t = t
			pool, job := "D-"+mode, "T-"+mode
			release := filepath.Join(home, "release-"+mode)
			c.must("pool", "create", pool, "--provider", "local", "--allow-root", "--slots", "1", "--nodes", "1")
			c.awaitNodes(pool, 1)
			c.must("submit", "--job", job, "--pool", pool, "--max-retries", "0", "--shell", "--",
				`while [ ! -e `+release+` ]; do sleep 0.05; done; echo finished`)
			var first string
			waitFor(t, 30*time.Second, "the task to run", func() error {
				tk := c.task(job, "task-1")
				if tk.State != "running" {
					return fmt.Errorf("task %s", tk.State)
				}
				first = tk.NodeID
				return nil
			})
			c.must("pool", "resize", pool, "--nodes", "0", "--deallocation", mode)
			if mode == "task_completion" {
				c.awaitPool(pool, "its node leaving", 30*time.Second, func(p api.Pool, nodes []api.Node) error {
					if len(nodes) != 1 || nodes[0].State != "leaving" {
						return fmt.Errorf("nodes %+v", nodes)
					}
					return nil
				})
				if st := c.task(job, "task-1").State; st != "running" {
					t.Fatalf("task %s after the resize, want still running", st)
				}
				os.WriteFile(release, nil, 0o644)
			}
			c.awaitPool(pool, "no nodes", 30*time.Second, func(p api.Pool, nodes []api.Node) error {
				if len(nodes) != 0 {
					return fmt.Errorf("%d nodes", len(nodes))
				}
				return nil
			})
			noAgentsOf(t, home, []string{first})
			if mode == "requeue" {
				if tk := c.task(job, "task-1"); tk.State != "active" || tk.Retries != 0 {
					t.Errorf("requeued task %s, retries %d; want active, none used", tk.State, tk.Retries)
				}
				c.must("pool", "resize", pool, "--nodes", "1")
			}
			os.WriteFile(release, nil, 0o644)
			c.awaitJob(job, 60*time.Second)
			tk := c.task(job, "task-1")
			switch mode {
			case "terminate":
				if tk.Result != "failure" || tk.FailureCategory != "infra" || len(tk.Attempts) != 1 {
					t.Errorf("terminated task: %s (%s), %d attempts; want one attempt failed as infra", tk.Result, tk.FailureCategory, len(tk.Attempts))
				}
			default:
				if tk.Result != "success" || tk.Retries != 0 {
					t.Errorf("task %s with %d retries, want success with none used", tk.Result, tk.Retries)
				}
			}
			if mode == "requeue" && (len(tk.Attempts) != 2 || tk.NodeID == first) {
				t.Errorf("requeued task: %d attempts, last on %s; want a second attempt on a new node", len(tk.Attempts), tk.NodeID)
			}
		})
	}
}
