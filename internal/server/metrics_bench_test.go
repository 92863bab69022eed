package server

import (
	"strconv"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/store"
)

// BenchmarkMetricsCommitted is the committer's bookkeeping for metrics
// over a batch of 10,000 tasks that finished, as a stream of short tasks
// gives it. It runs on the committer, between one commit and the next.
func BenchmarkMetricsCommitted(b *testing.B) {
	const n = 10000
	m := newMetrics(&engine{})
	m.seeded = true
	now := time.Now().UnixNano()
	f := m.newFacts("pool", 1)
	f.submitted[1] = now - int64(time.Second)
	m.jobs["job-1"] = f
	batch := &store.Batch{Tasks: make([]core.TaskRecord, n)}
	for i := range batch.Tasks {
		batch.Tasks[i] = core.TaskRecord{
			Num: int64(i), JobID: "Job-1", ID: strconv.Itoa(i), GroupSeq: 1, State: core.TaskCompleted, Attempt: 1,
			Cur: core.AttemptRecord{Number: 1, NodeID: "n1", AssignedAt: now, StartedAt: now, EndedAt: now + 1e6, Result: core.ResultSuccess},
		}
	}
	for b.Loop() {
		for i := range batch.Tasks {
			m.live[int64(i)] = liveAttempt{1, "job-1"}
		}
		m.committed(time.Millisecond, batch)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/task")
}
