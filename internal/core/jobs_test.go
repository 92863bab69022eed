package core_test

import (
	"errors"
	"testing"

	"github.com/lotehq/lote/internal/core"
	"github.com/lotehq/lote/internal/core/coretest"
)

func TestCreateJobWithTasksAllOrNothing(t *testing.T) {
	tests := []struct {
		name string
		spec func(p *core.Pool) core.JobSpec
		add  core.TaskAdd
		ok   bool
	}{
		{"valid", func(p *core.Pool) core.JobSpec { return coretest.JobSpec(p, "j") },
			coretest.ArrayAdd("0-9"), true},
		{"no tasks", func(p *core.Pool) core.JobSpec { return coretest.JobSpec(p, "j") },
			coretest.ItemsAdd(nil), false},
		{"duplicate task IDs", func(p *core.Pool) core.JobSpec { return coretest.JobSpec(p, "j") },
			coretest.ItemsAdd([]string{"a", "b", "A"}), false},
		{"bad job ID", func(p *core.Pool) core.JobSpec { return coretest.JobSpec(p, "j/1") },
			coretest.ArrayAdd("0-9"), false},
		{"unknown pool", func(*core.Pool) core.JobSpec { return core.JobSpec{ID: "j", PoolID: "nope"} },
			coretest.ArrayAdd("0-9"), false},
		{"priority out of range", func(p *core.Pool) core.JobSpec {
			return coretest.JobSpec(p, "j", coretest.Priority(core.MaxPriority+1))
		}, coretest.ArrayAdd("0-9"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 1)
			w.fx.Calls = nil
			j, g, err := w.c.CreateJobWithTasks(tt.spec(p), tt.add, w.now)
			if tt.ok {
				if err != nil || j == nil || g == nil || w.c.Job("j") != j || len(j.Groups) != 1 || j.Counts[core.TaskActive] != 10 {
					t.Fatalf("job %v group %v error %v", j, g, err)
				}
				if snap := w.fx.Snapshot(); len(snap.Jobs) != 1 || len(snap.Groups) != 1 {
					t.Errorf("saved %d jobs and %d groups, want one each", len(snap.Jobs), len(snap.Groups))
				}
				return
			}
			if err == nil || j != nil || g != nil {
				t.Fatalf("refused request returned job %v group %v error %v", j, g, err)
			}
			if len(w.c.Jobs()) != 0 || w.c.Job("j") != nil {
				t.Errorf("refused request left jobs %v", w.c.Jobs())
			}
			if len(w.fx.Calls) != 0 {
				t.Errorf("refused request had effects %v", w.fx.Calls)
			}
			next, err := w.c.CreateJob(coretest.JobSpec(p, ""), w.now)
			if err != nil || next.ID != "job-1" || next.Seq != 1 {
				t.Errorf("next job got ID %q seq %d (error %v), want job-1 and 1: the refused job used up a number", next.ID, next.Seq, err)
			}
		})
	}
}

func TestAddTasksConflicts(t *testing.T) {
	lines := func(prefix string) core.TaskAdd {
		return core.TaskAdd{Kind: core.GroupLines, Template: coretest.Template(), Lines: []string{"a", "b"}, IDPrefix: prefix}
	}
	tests := []struct {
		name          string
		first, second core.TaskAdd
		conflict      bool
	}{
		{"overlapping arrays", coretest.ArrayAdd("0-9"), coretest.ArrayAdd("5-14"), true},
		{"overlapping stepped arrays", coretest.ArrayAdd("0-100:2"), coretest.ArrayAdd("50-60:5"), true},
		{"interleaved arrays", coretest.ArrayAdd("0-100:2"), coretest.ArrayAdd("1-101:2"), false},
		{"disjoint arrays", coretest.ArrayAdd("0-9"), coretest.ArrayAdd("10-19"), false},
		{"overlap under another prefix", coretest.ArrayAdd("0-9"), coretest.ArrayAdd("0-9", coretest.Prefix("b-")), false},
		{"overlap under a prefix differing in case", coretest.ArrayAdd("0-9", coretest.Prefix("b-")), coretest.ArrayAdd("0-9", coretest.Prefix("B-")), true},
		{"explicit task inside an array", coretest.ArrayAdd("0-9"), coretest.ItemsAdd([]string{"x", "5"}), true},
		{"array over an explicit task", coretest.ItemsAdd([]string{"7"}), coretest.ArrayAdd("0-9"), true},
		{"array beside an explicit task", coretest.ItemsAdd([]string{"70"}), coretest.ArrayAdd("0-9"), false},
		{"explicit IDs differing in case", coretest.ItemsAdd([]string{"x"}), coretest.ItemsAdd([]string{"X"}), true},
		{"lines under an array's prefix", coretest.ArrayAdd("0-9"), lines(""), true},
		{"lines under their own prefix", coretest.ArrayAdd("0-9"), lines("line-"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			p := coretest.Pool(w.c, "p", 1)
			j := coretest.Job(w.c, p, "j")
			if _, err := w.c.AddTasks(j, tt.first, w.now); err != nil {
				t.Fatal(err)
			}
			before := j.Counts
			_, err := w.c.AddTasks(j, tt.second, w.now)
			if got := errors.Is(err, core.ErrConflict); got != tt.conflict {
				t.Fatalf("error %v, conflict wanted: %v", err, tt.conflict)
			}
			if tt.conflict && (len(j.Groups) != 1 || j.Counts != before) {
				t.Errorf("refused group changed the job: %d groups, counts %v", len(j.Groups), j.Counts)
			}
		})
	}
}
