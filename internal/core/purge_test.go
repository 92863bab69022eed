package core_test

import (
	"slices"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

// TestPurge: completed jobs go oldest first, past an age or beyond a task
// bound; active jobs stay whatever their age.
func TestPurge(t *testing.T) {
	tests := []struct {
		name     string
		maxAge   time.Duration
		maxTasks int
		want     []string // purged, in order
	}{
		{"no limits", 0, 0, nil},
		{"age", 90 * time.Minute, 0, []string{"old", "mid"}},
		{"task bound", 0, 15, []string{"old", "mid"}},
		{"task bound already met", 0, 40, nil},
		{"both", 150 * time.Minute, 35, []string{"old"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 1)
			// Completed 3h, 2h and 1h before now, 10 tasks each; one active job.
			for _, id := range []string{"old", "mid", "new"} {
				j := coretest.Job(w.c, p, id)
				coretest.Array(w.c, j, "1-10")
				w.c.TerminateJob(j, "done", w.now)
				w.advance(time.Hour)
			}
			active := coretest.Job(w.c, p, "active")
			coretest.Array(w.c, active, "1-10")
			got := w.c.Purge(w.now, tt.maxAge, tt.maxTasks)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("purged %v, want %v", got, tt.want)
			}
			for _, id := range got {
				if w.c.Job(id) != nil {
					t.Errorf("purged job %s is still there", id)
				}
			}
			if j := w.c.Job("active"); j == nil || j.State != core.JobActive {
				t.Error("the active job was purged")
			}
			w.fx.Commit()
		})
	}
}
