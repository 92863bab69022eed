package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/server"
)

// TestIdempotencyAcrossCrash (F3, F9): the server dies (SIGKILL) after a
// keyed submission committed and before the client got the answer, so the
// client cannot know whether it took. After a restart the same submission
// with the same --idempotency-key creates nothing new: it answers the
// original job, again on every retry, and exactly one job with its tasks
// exists.
func TestIdempotencyAcrossCrash(t *testing.T) {
	t.Parallel()
	root := testRoot(t)
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(home, "server.log")
	srv := startWrapped(t, home, log, []string{"env", server.CrashAfterCommitEnv + "=/v1/submit"},
		"server", "--dir", home, "--listen", "127.0.0.1:0")
	c := awaitServer(t, home, srv, 0, "lote server at ")
	c.must("pool", "create", "P", "--slots", "1")

	submit := []string{"submit", "--pool", "P", "--idempotency-key", "nightly-42", "--array", "1-5", "--", "true"}
	if r := c.cli(submit...); r.code == 0 {
		t.Fatalf("the submission was answered although the server was to die before replying:\n%s", r)
	}
	if _, ok := srv.wait(20 * time.Second); !ok {
		t.Fatal("the server did not die after committing the submission")
	}
	if !strings.Contains(srv.logText(), "killing the server between commit and reply") {
		t.Fatalf("the server died, but not at the crash point:\n%s", srv.logText())
	}

	c = startServer(t, home, "127.0.0.1:0")
	var first, again api.TaskAddResult
	c.json(&first, submit...)
	c.json(&again, submit...)
	if first.JobID == "" || first.Added != 5 || again != first {
		t.Fatalf("retries after the crash answered %+v then %+v; want the original job with 5 tasks, twice", first, again)
	}
	ids := lines(c.must("job", "list", "-q").stdout)
	if len(ids) != 1 || ids[0] != first.JobID {
		t.Fatalf("jobs after the crash and two retries: %v; want only %s", ids, first.JobID)
	}
	if n := c.job(first.JobID).TaskCounts.Total(); n != 5 {
		t.Errorf("job %s has %d tasks, want 5", first.JobID, n)
	}
}
