package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// TestLoad: 50 concurrent clients submit and poll against one server for a
// while (60 s in CI, LOTE_LOAD_SECONDS to choose): no error but 429, no
// acknowledged submission lost; the API latency percentiles are logged.
func TestLoad(t *testing.T) {
	t.Parallel()
	secs := 10
	if os.Getenv("CI") == "true" {
		secs = 60
	}
	if v := os.Getenv("LOTE_LOAD_SECONDS"); v != "" {
		fmt.Sscan(v, &secs)
	}
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1", "--slots", "2")
	cfg := readClientConfig(t, home)

	const clients = 50
	var mu sync.Mutex
	var lat []time.Duration
	var acked []string
	errs := map[string]int{}
	limited := 0
	deadline := time.Now().Add(time.Duration(secs) * time.Second)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			cl, err := api.NewClient(cfg.Server, cfg.Token, cfg.CAFile)
			if err != nil {
				t.Error(err)
				return
			}
			ctx := context.Background()
			timed := func(call func() error) error {
				t0 := time.Now()
				err := call()
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					lat = append(lat, time.Since(t0))
				case api.IsStatus(err, http.StatusTooManyRequests):
					limited++
				default:
					errs[err.Error()]++
				}
				return err
			}
			for n := 0; time.Now().Before(deadline); n++ {
				var res api.TaskAddResult
				key := fmt.Sprintf("load-%d-%d", i, n)
				err := timed(func() error {
					var err error
					res, err = cl.Submit(ctx, api.Submit{Job: api.JobCreate{PoolID: "local", Tags: map[string]string{"load": "1"}},
						Tasks: api.TaskAdd{Array: "1-3", Template: &api.TaskSpec{Command: []string{"true"}}}}, api.IdempotencyKey(key))
					return err
				})
				if err != nil {
					continue
				}
				mu.Lock()
				acked = append(acked, res.JobID)
				mu.Unlock()
				for k := 0; k < 3; k++ {
					timed(func() error { _, err := cl.Job(ctx, res.JobID); return err })
				}
				timed(func() error { _, err := cl.Jobs(ctx, "", map[string]string{"load": "1"}); return err })
			}
		}(i)
	}
	wg.Wait()
	for msg, n := range errs {
		t.Errorf("%d requests failed with: %s", n, msg)
	}
	if len(acked) == 0 {
		t.Fatal("no submission was acknowledged")
	}
	admin, err := api.NewClient(cfg.Server, cfg.Token, cfg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := admin.Jobs(context.Background(), "", map[string]string{"load": "1"})
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, j := range jobs {
		known[j.ID] = true
	}
	for _, id := range acked {
		if !known[id] {
			t.Errorf("acknowledged job %s is lost", id)
		}
	}
	if len(jobs) != len(acked) {
		t.Errorf("%d jobs exist for %d acknowledged submissions", len(jobs), len(acked))
	}
	_ = c
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	t.Logf("%d clients, %d s: %d requests ok, %d answered 429, %d jobs submitted; latency p50 %v p99 %v max %v",
		clients, secs, len(lat), limited, len(acked), pct(0.5), pct(0.99), lat[len(lat)-1])
}

func readClientConfig(t *testing.T, home string) api.ClientConfig {
	t.Helper()
	var cfg api.ClientConfig
	b, err := os.ReadFile(filepath.Join(home, "client.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}
