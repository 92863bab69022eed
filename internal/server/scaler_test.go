package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/testenv"
)

// TestAutoscaleErrorKeepsSize: a formula that fails to evaluate leaves the
// pool's target where the last good evaluation put it, and the failure is
// listed with its inputs in the pool's evaluations.
func TestAutoscaleErrorKeepsSize(t *testing.T) {
	env := testenv.Start(t)
	cl := env.Client
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cl.CreatePool(ctx, api.PoolCreate{ID: "s", Scaling: api.Scaling{
		Autoscale: &api.Autoscale{Formula: "3", Interval: api.Duration(time.Second)},
	}}); err != nil {
		t.Fatal(err)
	}
	await := func(what string, cond func(api.Pool) error) api.Pool {
		t.Helper()
		var p api.Pool
		deadline := time.Now().Add(30 * time.Second)
		for {
			var err error
			if p, err = cl.Pool(ctx, "s", false); err == nil {
				err = cond(p)
			}
			if err == nil {
				return p
			}
			if time.Now().After(deadline) {
				t.Fatalf("waiting for %s: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	await("target 3", func(p api.Pool) error {
		if p.TargetNodes != 3 {
			return fmt.Errorf("target %d", p.TargetNodes)
		}
		return nil
	})
	// Infinite for an empty queue: a runtime error, not a compile one.
	if _, err := cl.EnableAutoscale(ctx, "s", api.AutoscaleChange{Formula: "1 / pending_tasks"}); err != nil {
		t.Fatal(err)
	}
	p := await("a failed evaluation", func(p api.Pool) error {
		last := p.AutoscaleRuns[len(p.AutoscaleRuns)-1]
		if last.Error == "" {
			return fmt.Errorf("last evaluation %+v has no error", last)
		}
		return nil
	})
	last := p.AutoscaleRuns[len(p.AutoscaleRuns)-1]
	if p.TargetNodes != 3 {
		t.Errorf("target %d after a failed evaluation, want 3 kept", p.TargetNodes)
	}
	if !strings.Contains(last.Error, "target_nodes") && !strings.Contains(strings.ToLower(last.Error), "inf") {
		t.Errorf("error %q does not say what is wrong", last.Error)
	}
	if _, ok := last.Vars["pending_tasks"]; !ok {
		t.Errorf("failed evaluation lists no inputs: %+v", last.Vars)
	}
}
