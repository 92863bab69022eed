package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// awaitNodeState waits until the pool's one node is in state.
func (c *cluster) awaitNodeState(pool, state string) api.Node {
	c.t.Helper()
	var n api.Node
	waitFor(c.t, 30*time.Second, "node of "+pool+" to be "+state, func() error {
		nodes := c.nodes(pool)
		if len(nodes) != 1 {
			return fmt.Errorf("%d nodes", len(nodes))
		}
		if n = nodes[0]; n.State != state {
			return fmt.Errorf("node is %s", n.State)
		}
		return nil
	})
	return n
}

// TestStartTask: a pool's start task runs on each node as it joins; until
// it succeeds the node is waiting_for_start_task and gets no task; when it
// fails after its retries the node is start_task_failed and gets none.
func TestStartTask(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, home, "127.0.0.1:0")
	release := filepath.Join(root, "release")
	agent := func(pool, token string) string {
		dir := filepath.Join(root, "node-"+pool)
		startProc(t, home, filepath.Join(root, "agent-"+pool+".log"), "agent", "--server", c.url, "--pool", pool,
			"--join-token", token, "--dir", dir, "--slots", "1")
		return dir
	}

	t.Run("success", func(t *testing.T) {
		var pool api.Pool
		c.json(&pool, "pool", "create", "S", "--slots", "1", "--allow-root", "--start-task-env", "GREETING=prepared",
			"--start-task", `while [ ! -e '`+release+`' ]; do sleep 0.05; done; echo "$GREETING" > "$LOTE_NODE_SHARED_DIR/ready"`)
		if pool.StartTask == nil || !*pool.StartTask.WaitForSuccess {
			t.Fatalf("pool start task = %+v, want wait_for_success by default", pool.StartTask)
		}
		dir := agent("S", pool.JoinToken)
		c.awaitNodeState("S", "waiting_for_start_task")
		c.must("submit", "--job", "SJ", "--pool", "S", "--id-prefix", "t", "--array", "1", "--shell", "--", `cat "$LOTE_NODE_SHARED_DIR/ready"`)
		time.Sleep(500 * time.Millisecond)
		if tk := c.task("SJ", "t1"); tk.State != "active" {
			t.Fatalf("task %s while the start task runs, want active", tk.State)
		}
		os.WriteFile(release, nil, 0o644)
		c.awaitJob("SJ", 30*time.Second)
		if r := c.must("task", "logs", "SJ", "t1"); r.stdout != "prepared\n" {
			t.Errorf("task logs: %s", r)
		}
		c.awaitNodeState("S", "idle")
		if _, err := os.Stat(filepath.Join(dir, "startup", "wd")); err != nil {
			t.Errorf("start task working dir: %v", err)
		}
	})

	t.Run("failure", func(t *testing.T) {
		var pool api.Pool
		c.json(&pool, "pool", "create", "F", "--slots", "1", "--allow-root", "--start-task-retries", "1",
			"--start-task", `echo "attempt $LOTE_ATTEMPT" >> "$LOTE_NODE_ROOT_DIR/attempts"; exit 3`)
		dir := agent("F", pool.JoinToken)
		c.awaitNodeState("F", "start_task_failed")
		if b, _ := os.ReadFile(filepath.Join(dir, "attempts")); string(b) != "attempt 1\nattempt 2\n" {
			t.Errorf("start task attempts: %q, want two (one retry)", b)
		}
		c.must("submit", "--job", "FJ", "--pool", "F", "--id-prefix", "t", "--array", "1", "--", "true")
		time.Sleep(500 * time.Millisecond)
		if tk := c.task("FJ", "t1"); tk.State != "active" {
			t.Errorf("task %s on a start_task_failed node, want active", tk.State)
		}
	})
}

// TestJobPrep: a job's preparation task runs once per node before the
// job's first task there; where it fails the node is barred from the job
// and the tasks run elsewhere without using retries.
func TestJobPrep(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "2", "--slots", "2")
	// Both nodes must have joined before the tasks are placed, or the
	// first one can take all eight and local-2 never meets the job.
	c.awaitNodes("local", 2)
	c.must("job", "create", "P", "--pool", "local", "--prep-task-retries", "1",
		"--prep-task", `echo "$LOTE_JOB_ID" >> "$LOTE_NODE_ROOT_DIR/prep-runs"; [ "$LOTE_NODE_ID" != local-2 ]`)
	c.must("submit", "--job", "P", "--id-prefix", "t", "--array", "1-8", "--wait", "--shell", "--",
		`grep -q P "$LOTE_NODE_ROOT_DIR/prep-runs" && echo "$LOTE_NODE_ID"`)
	if j := c.job("P"); j.TaskCounts.Succeeded != 8 {
		t.Fatalf("counts %+v", j.TaskCounts)
	}
	for i := 1; i <= 8; i++ {
		tk := c.task("P", fmt.Sprintf("t%d", i))
		if tk.NodeID != "local-1" {
			t.Errorf("t%d ran on %s, want local-1 (local-2 is barred)", i, tk.NodeID)
		}
		for _, a := range tk.Attempts[:len(tk.Attempts)-1] {
			if a.NodeID != "local-2" || a.FailureCategory != "staging" {
				t.Errorf("t%d earlier attempt %+v, want a staging failure on local-2", i, a)
			}
		}
	}
	for node, want := range map[string]string{"local-1": "P\n", "local-2": "P\nP\n"} {
		b, _ := os.ReadFile(filepath.Join(home, "nodes", node, "prep-runs"))
		if string(b) != want {
			t.Errorf("%s ran the prep task %q, want %q (once, plus one retry where it fails)", node, b, want)
		}
	}
}

// TestJobPrepRelease: on a node, the job's preparation task runs before the
// job's first task and its release task after the job ended.
func TestJobPrepRelease(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1", "--slots", "2")
	order := filepath.Join(home, "nodes", "local-1", "order")
	c.must("job", "create", "R", "--pool", "local", "--on-all-tasks-complete", "terminate_job",
		"--prep-task", `echo prep >> "$LOTE_NODE_ROOT_DIR/order"`,
		"--release-task", `echo "release $LOTE_JOB_ID" >> "$LOTE_NODE_ROOT_DIR/order"`)
	c.must("submit", "--job", "R", "--array", "1-3", "--wait", "--shell", "--", `echo task >> "$LOTE_NODE_ROOT_DIR/order"`)
	waitFor(t, 30*time.Second, "the release task", func() error {
		b, _ := os.ReadFile(order)
		if want := "prep\ntask\ntask\ntask\nrelease R\n"; string(b) != want {
			return fmt.Errorf("order %q, want %q", b, want)
		}
		return nil
	})
}

// TestStartTaskInputs: the inputs of a pool's start task and of a job's
// preparation and release tasks are staged into their working directories
// through the node cache (one download of content they share with a task),
// survive a server restart, and a staging failure fails the attempt: the
// node is start_task_failed after the retries, the prep task's failure bars
// the node with the missing input named in the task's attempt.
func TestStartTaskInputs(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, home, "127.0.0.1:0")
	files := map[string]string{"greeting.txt": "hello from the store\n", "a.txt": "A\n", "b.txt": "B\n", "IJ.txt": "job file\n",
		"tool.sh": "#!/bin/sh\necho tool ran\n"}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.must("data", "put", filepath.Join(root, "greeting.txt"), "data://tools/greeting.txt")
	c.must("data", "put", filepath.Join(root, "a.txt"), "data://ref/a.txt")
	c.must("data", "put", filepath.Join(root, "b.txt"), "data://ref/b.txt")
	c.must("data", "put", filepath.Join(root, "IJ.txt"), "data://jobs/IJ.txt")

	var pool api.Pool
	c.json(&pool, "pool", "create", "I", "--slots", "1", "--allow-root",
		"--start-task-input", "data://tools/greeting.txt=greeting.txt",
		"--start-task-input", filepath.Join(root, "tool.sh")+"=bin/tool.sh:0755",
		"--start-task", `cat greeting.txt > "$LOTE_NODE_SHARED_DIR/start" && bin/tool.sh >> "$LOTE_NODE_SHARED_DIR/start"`)
	if in := pool.StartTask.Inputs; len(in) != 2 || !strings.HasPrefix(in[1].Source, "data://_lote/uploads/") || in[1].Mode != "0755" {
		t.Fatalf("start task inputs = %+v, want the local tool uploaded, mode 0755", in)
	}
	c.must("job", "create", "IJ", "--pool", "I", "--on-all-tasks-complete", "terminate_job",
		"--prep-task-input", "data://ref/=ref/", "--prep-task-input", "data://jobs/{job}.txt=job.txt",
		"--prep-task", `cat ref/a.txt ref/b.txt job.txt > "$LOTE_NODE_SHARED_DIR/prep"`,
		"--release-task-input", "data://tools/greeting.txt=greeting.txt",
		"--release-task", `cat greeting.txt > "$LOTE_NODE_SHARED_DIR/release"`)
	c.must("submit", "--job", "IJ", "--id-prefix", "t", "--array", "1", "--input", "data://tools/greeting.txt=g.txt",
		"--shell", "--", `cat "$LOTE_NODE_SHARED_DIR/start" "$LOTE_NODE_SHARED_DIR/prep" g.txt`)

	// The pool and the job come back from the store alone.
	c.srv.signal(syscall.SIGKILL)
	c.srv.wait(10 * time.Second)
	c = startServer(t, home, "127.0.0.1:0")
	agentLog := filepath.Join(root, "agent-I.log")
	dir := filepath.Join(root, "node-I")
	startProc(t, home, agentLog, "agent", "--server", c.url, "--pool", "I", "--join-token", pool.JoinToken, "--dir", dir, "--slots", "1")
	c.awaitJob("IJ", 30*time.Second)
	if r := c.must("task", "logs", "IJ", "t1"); r.stdout != "hello from the store\ntool ran\nA\nB\njob file\nhello from the store\n" {
		t.Errorf("task logs: %s", r)
	}
	waitFor(t, 30*time.Second, "the release task", func() error {
		if b, _ := os.ReadFile(filepath.Join(dir, "shared", "release")); string(b) != files["greeting.txt"] {
			return fmt.Errorf("release task wrote %q", b)
		}
		return nil
	})
	b, _ := os.ReadFile(agentLog)
	if n := strings.Count(string(b), `input downloaded into the node cache" source=data://tools/greeting.txt `); n != 1 {
		t.Errorf("greeting.txt downloaded %d times by the node, want once (start, task and release task share the cache)\n%s", n, b)
	}

	t.Run("start task staging failure", func(t *testing.T) {
		var pool api.Pool
		c.json(&pool, "pool", "create", "F", "--slots", "1", "--allow-root", "--start-task-retries", "1",
			"--start-task-input", "data://tools/missing.txt=x", "--start-task", "true")
		log := filepath.Join(root, "agent-F.log")
		startProc(t, home, log, "agent", "--server", c.url, "--pool", "F", "--join-token", pool.JoinToken,
			"--dir", filepath.Join(root, "node-F"), "--slots", "1")
		c.awaitNodeState("F", "start_task_failed")
		b, _ := os.ReadFile(log)
		if n := strings.Count(string(b), "startup task attempt ended"); n != 2 || !strings.Contains(string(b), "staging inputs: data://tools/missing.txt") {
			t.Errorf("agent log: %d start task attempts, want 2 failing on the missing input\n%s", n, b)
		}
	})

	t.Run("prep task staging failure", func(t *testing.T) {
		c.must("job", "create", "PF", "--pool", "I", "--prep-task-input", "data://tools/missing.txt=x", "--prep-task", "true")
		c.must("submit", "--job", "PF", "--id-prefix", "t", "--array", "1", "--", "true")
		waitFor(t, 30*time.Second, "the barred node's staging failure", func() error {
			tk := c.task("PF", "t1")
			for _, a := range tk.Attempts {
				if a.FailureCategory == "staging" && strings.Contains(a.Message, "staging inputs: data://tools/missing.txt") {
					return nil
				}
			}
			return fmt.Errorf("task %s attempts %+v", tk.State, tk.Attempts)
		})
		c.must("job", "terminate", "PF")
	})
}
