package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestMonitorKeptAwake: lote up re-executes itself with the Go runtime's
// monitor kept out of its deep sleep (internal/sysmon), its agent and the
// agent's spawner inherit that, and the tasks they run see the GODEBUG the
// user gave lote up, and nothing of Lote's own.
func TestMonitorKeptAwake(t *testing.T) {
	// Not parallel: t.Setenv gives lote up (childEnv) the user's GODEBUG.
	t.Setenv("GODEBUG", "madvdontneed=1")
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")
	c.awaitNodes("local", 1)
	const awake = "GODEBUG=madvdontneed=1,schedtrace=2147483647"
	node := filepath.Join(home, "nodes", "local-1")
	if env := environOf(t, c.srv.pid()); !slices.Contains(env, awake) {
		t.Errorf("lote up's environment has no %s:\n%q", awake, env)
	}
	agent := agentPID(t, node)
	if env := environOf(t, agent); !slices.Contains(env, awake) {
		t.Errorf("agent %d's environment has no %s:\n%q", agent, awake, env)
	}
	var spawners int
	for _, p := range procsMentioning(node) {
		if strings.Contains(p.cmdline, " _spawner ") {
			spawners++
			if env := environOf(t, p.pid); !slices.Contains(env, awake) {
				t.Errorf("spawner %d's environment has no %s:\n%q", p.pid, awake, env)
			}
		}
	}
	if spawners != 1 {
		t.Errorf("%d spawners for %s, want 1", spawners, node)
	}
	c.must("submit", "--job", "G", "--wait", "--", "env")
	var godebug []string
	for _, kv := range strings.Split(c.must("task", "logs", "G", "task-1").stdout, "\n") {
		if strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, "LOTE_USER_GODEBUG=") {
			godebug = append(godebug, kv)
		}
	}
	if !slices.Equal(godebug, []string{"GODEBUG=madvdontneed=1"}) {
		t.Errorf("the task's environment has %q, want the user's GODEBUG alone", godebug)
	}
}

func environOf(t *testing.T, pid int) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
}
