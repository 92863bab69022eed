package sim_test

import (
	"testing"
	"time"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
	"github.com/lotehq/lote/internal/sim"
)

// TestPoolFollowsTheQueue is issue 5's scenario in simulated time: a pool
// with min 0, max 4 and a formula on pending tasks, evaluated every 2 s,
// has 4 nodes within two evaluations of a 200-task submission and is back
// to 0 within a few evaluations after the queue drained.
func TestPoolFollowsTheQueue(t *testing.T) {
	s := sim.New(sim.Config{JoinDelay: time.Second})
	p, err := s.AutoscalePool("burst", 1, "pending_tasks", 2*time.Second, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	// Idle before anything is submitted: nothing to pay for.
	if err := s.Run(5*time.Second, func() bool { return len(s.Evals) >= 2 }); err != nil {
		t.Fatal(err)
	}
	if n := len(p.Nodes); n != 0 {
		t.Fatalf("%d nodes with an empty queue, want 0", n)
	}
	j := coretest.Job(s.C, p, "J")
	coretest.Array(s.C, j, "1-200")
	submitted, before := s.Elapsed(), len(s.Evals)
	if err := s.Run(10*time.Second, func() bool { return len(s.Evals) == before+2 }); err != nil {
		t.Fatal(err)
	}
	if e := s.Evals[before]; e.Target != 4 {
		t.Errorf("first evaluation after the submission set %d nodes, want 4 (max)", e.Target)
	}
	joined := 0
	for _, n := range p.Nodes {
		if !n.Provisioned && n.Connected {
			joined++
		}
	}
	if joined != 4 {
		t.Errorf("%d nodes joined at the second evaluation (%s after submission), want 4", joined, s.Elapsed()-submitted)
	}
	if err := s.Run(10*time.Minute, func() bool { return j.Counts[core.TaskCompleted] == 200 }); err != nil {
		t.Fatal(err)
	}
	// 200 one-second tasks on 4 one-slot nodes: about 50 s.
	if took := s.Elapsed() - submitted; took > 60*time.Second {
		t.Errorf("the job took %s, want about 50s on 4 nodes", took)
	}
	drained := len(s.Evals)
	if err := s.Run(10*time.Second, func() bool { return len(p.Nodes) == 0 }); err != nil {
		t.Fatalf("%v: %d nodes left", err, len(p.Nodes))
	}
	if n := len(s.Evals) - drained; n > 3 {
		t.Errorf("back to 0 nodes after %d evaluations, want at most 3", n)
	}
	if j.Succeeded != 200 {
		t.Errorf("%d tasks succeeded, want 200", j.Succeeded)
	}
}
