package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/lotehq/lote/api"
)

// TestFreshDirectoriesUnderRecycling: the agent reuses the empty trees of
// tasks that left nothing behind (internal/agent/recycle.go). Under a
// stream of short tasks, every attempt must still start in an empty working
// directory, with an empty checkpoint directory on its first attempt and
// the last attempt's checkpoint on a retry; what a task left stays where
// it left it; and the node does not keep one empty tree per task.
func TestFreshDirectoriesUnderRecycling(t *testing.T) {
	env, dir := chainEnv(t)
	cl := env.Client
	const n = 300
	// Exit 3 says the task found its directories not as promised. Odd
	// tasks leave a file in their working directory; every tenth fails its
	// first attempt after saving a checkpoint, which the retry must find.
	script := `
[ "$PWD" = "$LOTE_TASK_WORKING_DIR" ] && [ -z "$(ls -A .)" ] || exit 3
[ "$(ls -A "$LOTE_TASK_DIR")" = wd ] || exit 3
[ -d "$LOTE_CHECKPOINT_DIR" ] || exit 3
if [ "$LOTE_ATTEMPT" = 1 ]; then
	[ -z "$(ls -A "$LOTE_CHECKPOINT_DIR")" ] || exit 3
	if [ $((LOTE_TASK_INDEX % 10)) = 0 ]; then echo "$LOTE_TASK_INDEX" > "$LOTE_CHECKPOINT_DIR/at"; exit 1; fi
else
	[ "$(cat "$LOTE_CHECKPOINT_DIR/at")" = "$LOTE_TASK_INDEX" ] || exit 3
fi
if [ $((LOTE_TASK_INDEX % 2)) = 1 ]; then echo "$LOTE_TASK_INDEX" > left; fi
`
	one := 1
	_, err := cl.Submit(context.Background(), api.Submit{
		Job: api.JobCreate{ID: "fresh", PoolID: "p"},
		Tasks: api.TaskAdd{Array: "1-" + strconv.Itoa(n), Template: &api.TaskSpec{
			Command: []string{script}, Shell: true, MaxRetries: &one,
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	j := waitJob(t, cl, "fresh", "job fresh done", func(j api.Job) bool { return j.TaskCounts.Completed == n })
	if j.TaskCounts.Succeeded != n {
		for _, tk := range allTasks(t, cl, "fresh") {
			if tk.Result != "success" && tk.ExitCode != nil {
				t.Errorf("task %s attempt %d: exit %d", tk.ID, tk.Attempt, *tk.ExitCode)
			}
		}
		t.Fatalf("counts = %+v, want %d succeeded", j.TaskCounts, n)
	}

	work := filepath.Join(dir, "workitems", "fresh")
	trees := 0
	ents, err := os.ReadDir(work)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			trees++
		}
	}
	for _, tk := range allTasks(t, cl, "fresh") {
		i := *tk.Index
		left := filepath.Join(work, tk.ID, strconv.Itoa(tk.Attempt), "wd", "left")
		b, err := os.ReadFile(left)
		if i%2 == 1 && (err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(i)) {
			t.Errorf("task %d: %s = %q, %v; want what it left there", i, left, b, err)
		}
		if i%10 == 0 && tk.Attempt != 2 {
			t.Errorf("task %d succeeded at attempt %d, want 2", i, tk.Attempt)
		}
	}
	// Odd tasks and retried ones keep their trees; most of the other half
	// were reused.
	if most := n/2 + n/4; trees > most {
		t.Errorf("%d task directories left for %d tasks, %d of them empty; want at most %d", trees, n, n/2-n/10, most)
	}
}
