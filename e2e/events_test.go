package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// TestEventsCLI follows a job's events with `lote events -f` while the job
// runs, then lists them with `lote events`: both see every task go through
// to completed, in ID order, once.
func TestEventsCLI(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1")
	// --after 0: from the oldest event kept, so nothing is missed however
	// late the follower connects.
	logPath := filepath.Join(home, "events.log")
	startProc(t, home, logPath, "events", "-f", "--after", "0", "--job", "E", "--kind", "task", "-o", "json")
	if r := c.cli("submit", "--job", "E", "--array", "1-3", "--wait", "--", "sh", "-c", "exit $((LOTE_TASK_INDEX == 2))"); r.code != 1 {
		t.Fatalf("submit --wait with one failing task: want exit 1\n%s", r)
	}

	completed := func(evs []api.Event) map[string]api.Event {
		out := map[string]api.Event{}
		for _, ev := range evs {
			if ev.State == "completed" {
				out[ev.TaskID] = ev
			}
		}
		return out
	}
	var followed []api.Event
	waitFor(t, 30*time.Second, "the follower to print the three completions", func() error {
		b, _ := os.ReadFile(logPath)
		followed = nil
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if line == "" {
				continue
			}
			var ev struct {
				Version string `json:"version"`
				api.Event
			}
			if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Version != api.Version {
				return fmt.Errorf("not a JSON event line with a version: %q (%v)", line, err)
			}
			followed = append(followed, ev.Event)
		}
		if n := len(completed(followed)); n != 3 {
			return fmt.Errorf("%d of 3 tasks completed in %d events", n, len(followed))
		}
		return nil
	})
	for i, ev := range followed {
		if ev.Kind != "task" || ev.JobID != "E" {
			t.Errorf("followed event %+v passed --job E --kind task", ev)
		}
		if i > 0 && ev.ID <= followed[i-1].ID {
			t.Errorf("event IDs out of order or repeated: %d after %d", ev.ID, followed[i-1].ID)
		}
	}
	if ev := completed(followed)["2"]; ev.Result != "failure" || ev.ExitCode == nil || *ev.ExitCode != 1 {
		t.Errorf("task 2's completion = %+v, want failure with exit code 1", ev)
	}

	// Without -f: one JSON document with the events kept.
	var doc struct {
		Events []api.Event `json:"events"`
	}
	c.json(&doc, "events", "--job", "E", "--kind", "task")
	if len(doc.Events) != len(followed) || doc.Events[0].ID != followed[0].ID {
		t.Errorf("events --job E listed %d events from %v, the follower saw %d from %d",
			len(doc.Events), doc.Events, len(followed), followed[0].ID)
	}
	// The table, and --tail.
	r := c.must("events", "--job", "E", "--tail", "2")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(r.stdout, "E/") {
		t.Errorf("events --job E --tail 2: want a header and two rows\n%s", r)
	}
}
