package server

import (
	"context"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
)

// A change someone waits on is not held back by the longer spacing of
// report-only commits: it ends the wait for company at once. Nor is a batch
// that already has plenty of company.
func TestWaitedChangeEndsReportSpacing(t *testing.T) {
	for _, tt := range []struct {
		name       string
		lastCommit time.Time
		kick       bool
		tasks      int // changed tasks in the open batch
	}{
		{"an API change arrives while reports wait", time.Now(), true, 1},
		{"reports alone, the last commit long ago", time.Now().Add(-2 * time.Hour), false, 1},
		{"reports of many tasks", time.Now(), false, crowdedBatch},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tick := time.NewTicker(time.Hour)
			defer tick.Stop()
			// The kick may land before waitForWork takes the report kick,
			// and then either channel may be chosen: repeat so that a wait
			// the kick does not end is all but sure to show.
			for range 20 {
				e := &engine{
					kickc: make(chan struct{}, 1), reportc: make(chan struct{}, 1), open: newBatch(1),
					reportInterval: time.Hour, lastCommit: tt.lastCommit,
				}
				for range tt.tasks {
					e.open.tasks[&core.Task{}] = struct{}{}
				}
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				e.kickReports()
				done := make(chan struct{})
				go func() {
					e.waitForWork(ctx, tick)
					close(done)
				}()
				if tt.kick {
					e.kick()
				}
				<-done
				err := ctx.Err()
				cancel()
				if err != nil {
					t.Fatal("the committer still waited for company after 30 s")
				}
			}
		})
	}
}
