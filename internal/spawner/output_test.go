package spawner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// outputTask spawns script with its output to files in a new directory,
// and returns their paths.
func outputTask(t *testing.T, c *Client, id, script string) (stdout, stderr string) {
	t.Helper()
	dir := t.TempDir()
	req := sh(id, dir, script)
	req.Stdout, req.Stderr = filepath.Join(dir, "out"), filepath.Join(dir, "err")
	mustSpawn(t, c, req)
	return req.Stdout, req.Stderr
}

func checkOutput(t *testing.T, e Exit, stdout, stderr string, want [2]string) {
	t.Helper()
	for i, path := range []string{stdout, stderr} {
		got, err := os.ReadFile(path)
		if err != nil || string(got) != want[i] {
			t.Errorf("%s of %s: %d bytes (%v), want %d: %.40q", filepath.Base(path), e.ID, len(got), err, len(want[i]), want[i])
		}
	}
	if w := [2]int64{int64(len(want[0])), int64(len(want[1]))}; e.Written == nil || *e.Written != w {
		t.Errorf("exit of %s says %v bytes written, want %v", e.ID, e.Written, w)
	}
}

// TestOutputBeyondAPipe: a short task that writes more than a pipe holds
// at once gets all of it into its files, though its pipes are not read
// during its first outputWindow.
func TestOutputBeyondAPipe(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	stdout, stderr := outputTask(t, c, "big", `head -c 1048576 /dev/zero | tr '\0' o; head -c 300000 /dev/zero | tr '\0' e >&2`)
	e := waitExit(t, c, "big")
	checkOutput(t, e, stdout, stderr, [2]string{strings.Repeat("o", 1<<20), strings.Repeat("e", 300000)})
}

// TestOutputWhileRunning: a task's output reaches its file while it still
// runs (logs are tailed live), once it has run outputWindow.
func TestOutputWhileRunning(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	stdout, _ := outputTask(t, c, "live", `echo first; sleep 60`)
	deadline := time.Now().Add(waitTimeout)
	for {
		if b, _ := os.ReadFile(stdout); string(b) == "first\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still lacks the running task's output after %v", stdout, waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := c.Kill("live", 0); err != nil {
		t.Fatal(err)
	}
	waitExit(t, c, "live")
}

// TestOutputHeldByDescendant: when a task ends while a descendant that
// left its process group still holds its output pipes, what both write
// reaches the files, whether the task wrote before it ended or not.
func TestOutputHeldByDescendant(t *testing.T) {
	f := newFixture(t)
	f.serve(t, ServeConfig{})
	c := f.dial(t)
	// The task ends once the descendant is in its own session, beyond
	// the kill of the task's process group.
	late := `setsid sh -c 'touch escaped; sleep 0.3; echo late; echo late2 >&2' & until [ -e escaped ]; do sleep 0.01; done`
	out1, err1 := outputTask(t, c, "wrote", `echo early; `+late)
	out2, err2 := outputTask(t, c, "silent", late)
	exits := map[string]Exit{}
	for len(exits) < 2 {
		e := waitExit(t, c, "")
		exits[e.ID] = e
	}
	for _, tc := range []struct {
		id, stdout, stderr string
		want               [2]string
	}{
		{"wrote", out1, err1, [2]string{"early\nlate\n", "late2\n"}},
		{"silent", out2, err2, [2]string{"late\n", "late2\n"}},
	} {
		checkOutput(t, exits[tc.id], tc.stdout, tc.stderr, tc.want)
	}
}
