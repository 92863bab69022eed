package invariant

import (
	"strings"
	"testing"

	"github.com/lotehq/lote/api"
)

func TestCheckJob(t *testing.T) {
	tasks := []api.Task{
		{ID: "1", State: api.TaskCompleted, Result: api.ResultSuccess},
		{ID: "2", State: api.TaskCompleted, Result: api.ResultFailure},
		{ID: "3", State: api.TaskRunning},
		{ID: "4", State: api.TaskActive},
	}
	good := api.Job{ID: "J", TaskCounts: api.TaskCounts{Active: 1, Running: 1, Completed: 2, Succeeded: 1, Failed: 1}}
	if p := checkJob(good, tasks); len(p) != 0 {
		t.Errorf("consistent job reported: %v", p)
	}
	bad := good
	bad.TaskCounts.Succeeded = 2
	if p := checkJob(bad, tasks); len(p) != 1 || !strings.Contains(p[0], "task_counts") {
		t.Errorf("counts off by one: %v", p)
	}
	if p := checkJob(good, append(tasks, api.Task{ID: "1", State: api.TaskActive})); len(p) == 0 {
		t.Error("a task listed twice went unnoticed")
	}
}

func TestCheckAttempts(t *testing.T) {
	ok := api.Task{JobID: "J", ID: "1", Attempt: 2, Result: api.ResultSuccess, Attempts: []api.Attempt{
		{Number: 1, Result: api.ResultFailure}, {Number: 2, Result: api.ResultSuccess}}}
	if p := checkAttempts(ok); len(p) != 0 {
		t.Errorf("good history reported: %v", p)
	}
	for name, bad := range map[string]api.Task{
		"ran after success": {JobID: "J", ID: "1", Attempt: 2, Result: api.ResultFailure, Attempts: []api.Attempt{
			{Number: 1, Result: api.ResultSuccess}, {Number: 2, Result: api.ResultFailure}}},
		"numbers go back": {JobID: "J", ID: "1", Attempt: 2, Result: api.ResultSuccess, Attempts: []api.Attempt{
			{Number: 2, Result: api.ResultFailure}, {Number: 1, Result: api.ResultSuccess}}},
		"result differs": {JobID: "J", ID: "1", Attempt: 1, Result: api.ResultSuccess, Attempts: []api.Attempt{
			{Number: 1, Result: api.ResultFailure}}},
	} {
		if p := checkAttempts(bad); len(p) == 0 {
			t.Errorf("%s: not reported", name)
		}
	}
}
