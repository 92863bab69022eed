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

// TestDataWorkflow is issue 4's must-show: upload 50 inputs, run an array
// of 50 tasks that each turn one input into one result, bring the results
// back.
func TestDataWorkflow(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "2", "--slots", "2")
	in := filepath.Join(home, "in")
	os.MkdirAll(filepath.Join(in, "sub"), 0o755)
	for i := range 50 {
		os.WriteFile(filepath.Join(in, fmt.Sprintf("%d.txt", i)), []byte(fmt.Sprintf("frame %d\n", i)), 0o644)
	}
	os.WriteFile(filepath.Join(in, "sub", "nested.txt"), []byte("nested\n"), 0o644)
	c.must("data", "put", in, "data://inputs/")
	if r := c.must("data", "ls", "data://inputs/sub/", "-q"); strings.TrimSpace(r.stdout) != "data://inputs/sub/nested.txt" {
		t.Fatalf("data ls: %s", r)
	}
	c.must("job", "create", "J", "--pool", "local")
	c.must("submit", "--job", "J", "--array", "0-49", "--wait",
		"--input", "data://inputs/{index}.txt=in.txt",
		"--output", "out.txt=data://results/{job}/{index}.txt",
		"--shell", "--", "tr a-z A-Z < in.txt > out.txt")
	j := c.job("J")
	if j.TaskCounts.Succeeded != 50 {
		t.Fatalf("counts %+v", j.TaskCounts)
	}
	out := filepath.Join(home, "out")
	c.must("data", "get", "data://results/J/", out)
	for i := range 50 {
		b, err := os.ReadFile(filepath.Join(out, fmt.Sprintf("%d.txt", i)))
		if want := fmt.Sprintf("FRAME %d\n", i); err != nil || string(b) != want {
			t.Errorf("result %d = %q, %v; want %q", i, b, err, want)
		}
	}
	// A single file, and rm.
	c.must("data", "get", "data://results/J/7.txt", filepath.Join(home, "seven.txt"))
	if b, _ := os.ReadFile(filepath.Join(home, "seven.txt")); string(b) != "FRAME 7\n" {
		t.Errorf("get one file: %q", b)
	}
	c.must("data", "rm", "data://results/J/7.txt")
	if r := c.cli("data", "get", "data://results/J/7.txt", filepath.Join(home, "x")); r.code == 0 {
		t.Errorf("get after rm succeeded: %s", r)
	}
	// A local input is uploaded by the CLI first; a prefix input stages a tree.
	params := filepath.Join(home, "params.json")
	os.WriteFile(params, []byte(`{"a":1}`), 0o644)
	c.must("submit", "--job", "J", "--wait", "--input", params+"=p.json", "--input", "data://inputs/sub/=cfg/",
		"--output", "**/*.out=data://results/tree/",
		"--shell", "--", "mkdir -p d/e && cat p.json cfg/nested.txt > d/e/all.out")
	c.must("data", "get", "data://results/tree/d/e/all.out", filepath.Join(home, "all.out"))
	if b, _ := os.ReadFile(filepath.Join(home, "all.out")); string(b) != "{\"a\":1}nested\n" {
		t.Errorf("tree output: %q", b)
	}
}

// TestNodeCache: 200 tasks sharing one input download it once per node.
func TestNodeCache(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "2", "--slots", "4")
	big := filepath.Join(home, "shared.bin")
	os.WriteFile(big, []byte(strings.Repeat("lote", 1<<18)), 0o644) // 1 MiB
	c.must("data", "put", big, "data://inputs/shared.bin")
	c.must("job", "create", "C", "--pool", "local")
	c.must("submit", "--job", "C", "--array", "1-200", "--wait",
		"--input", "data://inputs/shared.bin=shared.bin", "--", "test", "-s", "shared.bin")
	if j := c.job("C"); j.TaskCounts.Succeeded != 200 {
		t.Fatalf("counts %+v", j.TaskCounts)
	}
	total := 0
	for _, n := range []string{"local-1", "local-2"} {
		b, _ := os.ReadFile(filepath.Join(home, "nodes", n, "agent.log"))
		got := strings.Count(string(b), "input downloaded into the node cache")
		t.Logf("node %s: %d download(s)", n, got)
		if got > 1 {
			t.Errorf("node %s downloaded the shared input %d times, want at most once", n, got)
		}
		total += got
	}
	if total == 0 {
		t.Errorf("no downloads logged")
	}
}

// TestCheckpointResume: an attempt that fails after writing progress into
// its checkpoint directory resumes from it in the next attempt, restored
// from the data store.
func TestCheckpointResume(t *testing.T) {
	t.Parallel()
	c := startUp(t, testRoot(t), "--nodes", "1")
	c.must("job", "create", "K", "--pool", "local")
	script := `n=$(cat "$LOTE_CHECKPOINT_DIR/progress" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$LOTE_CHECKPOINT_DIR/progress"; ` +
		`if [ "$LOTE_ATTEMPT" = 1 ]; then exit 7; fi; echo "attempt $LOTE_ATTEMPT resumed at step $n"`
	c.must("submit", "--job", "K", "--id-prefix", "ck", "--array", "1", "--task-max-retries", "1", "--wait", "--shell", "--", script)
	tk := c.task("K", "ck1")
	if tk.Result != "success" || len(tk.Attempts) != 2 {
		t.Fatalf("task = %+v", tk)
	}
	if r := c.must("task", "logs", "K", "ck1"); r.stdout != "attempt 2 resumed at step 2\n" {
		t.Errorf("logs: %s", r)
	}
	if r := c.must("data", "ls", "-r", "data://_lote/checkpoints/K/", "-q"); !strings.Contains(r.stdout, "ck1.tar") {
		t.Errorf("no checkpoint saved: %s", r)
	}
}

// TestStagingPathsConfined: bad paths are rejected at submission naming
// the field, and an output symlink pointing outside the working directory
// fails the task with category staging, uploading nothing.
func TestStagingPathsConfined(t *testing.T) {
	t.Parallel()
	c := startUp(t, testRoot(t), "--nodes", "1")
	c.must("job", "create", "P", "--pool", "local")
	for _, tc := range []struct {
		flag, val, field string
	}{
		{"--input", "data://inputs/a.txt=../escape.txt", "inputs[0].path"},
		{"--input", "data://inputs/a.txt=/etc/escape", "inputs[0].path"},
		{"--input", "data://../etc/passwd=x", "inputs[0].source"},
		{"--input", "ftp://host/x=x", "inputs[0].source"},
		{"--output", "../*.txt=data://r/", "outputs[0].pattern"},
		{"--output", "/etc/passwd=data://r/p", "outputs[0].pattern"},
		{"--output", "a.txt=data://r/../../x", "outputs[0].destination"},
	} {
		r := c.cli("-o", "json", "submit", "--job", "P", tc.flag, tc.val, "--", "true")
		if r.code != 2 || !strings.Contains(r.stderr, tc.field) {
			t.Errorf("%s %s: want exit 2 naming %s\n%s", tc.flag, tc.val, tc.field, r)
		}
	}
	r := c.cli("submit", "--job", "P", "--wait", "--id-prefix", "s", "--array", "1",
		"--output", "out.txt=data://results/leak.txt", "--", "ln", "-s", "/etc/passwd", "out.txt")
	if r.code != 1 {
		t.Fatalf("symlink out: want exit 1\n%s", r)
	}
	tk := c.task("P", "s1")
	if tk.FailureCategory != "staging" || tk.ExitCode == nil || *tk.ExitCode != 0 {
		t.Errorf("task = %s/%s exit %v; want staging with exit 0 kept", tk.Result, tk.FailureCategory, deref(tk.ExitCode))
	}
	if r := c.cli("data", "get", "data://results/leak.txt", filepath.Join(c.home, "leak")); r.code == 0 {
		t.Errorf("the symlink's target was uploaded")
	}
	// A missing input fails staging too, before the process runs.
	c.cli("submit", "--job", "P", "--wait", "--id-prefix", "m", "--array", "1", "--input", "data://inputs/none.txt=x", "--", "true")
	if tk := c.task("P", "m1"); tk.FailureCategory != "staging" {
		t.Errorf("missing input: %+v", tk)
	}
}

// TestLargeLogKept: a log over the inline limit is readable whole from the
// data store.
func TestLargeLogKept(t *testing.T) {
	t.Parallel()
	c := startUp(t, testRoot(t), "--nodes", "1")
	c.must("job", "create", "L", "--pool", "local")
	c.must("submit", "--job", "L", "--id-prefix", "l", "--array", "1", "--wait", "--shell", "--", "head -c 3000000 /dev/zero | tr '\\0' x")
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := c.must("task", "logs", "L", "l1")
		if len(r.stdout) == 3000000 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task logs: %d bytes, want 3000000", len(r.stdout))
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = api.Version
}

// TestLogsOutliveNode: a task's logs, small (stored inline) and large
// (uploaded whole), stay readable after its node was drained, stopped,
// deleted from the pool and its directory wiped.
func TestLogsOutliveNode(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	c := startServer(t, home, "127.0.0.1:0")
	var pool api.Pool
	c.json(&pool, "pool", "create", "P", "--slots", "1", "--allow-root")
	nodeDir := filepath.Join(root, "node")
	ag := startProc(t, home, filepath.Join(root, "agent.log"), "agent", "--server", c.url, "--pool", "P",
		"--join-token", pool.JoinToken, "--dir", nodeDir, "--slots", "1", "--name", "gone")
	c.awaitNodes("P", 1)
	c.must("submit", "--job", "L", "--pool", "P", "--id-prefix", "t", "--array", "1-2", "--wait", "--shell", "--",
		`if [ {index} = 1 ]; then echo small; echo oops >&2; else head -c 1500000 /dev/zero | tr '\0' x; fi`)
	c.must("node", "drain", "gone")
	ag.signal(syscall.SIGTERM)
	if _, ok := ag.wait(20 * time.Second); !ok {
		t.Fatal("the agent did not stop")
	}
	c.must("node", "delete", "gone")
	if err := os.RemoveAll(nodeDir); err != nil {
		t.Fatal(err)
	}
	if n := c.nodes("P"); len(n) != 0 {
		t.Fatalf("nodes after delete: %+v", n)
	}
	if r := c.must("task", "logs", "L", "t1"); r.stdout != "small\n" {
		t.Errorf("small log: %s", r)
	}
	if r := c.must("task", "logs", "L", "t1", "--stderr"); r.stdout != "oops\n" {
		t.Errorf("small stderr: %s", r)
	}
	if r := c.must("task", "logs", "L", "t2"); len(r.stdout) != 1500000 || strings.Trim(r.stdout, "x") != "" {
		t.Errorf("large log: %d bytes, want 1500000 of x", len(r.stdout))
	}
}
