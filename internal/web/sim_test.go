package web_test

import (
	"context"
	"testing"
	"time"

	"github.com/lotehq/lote/internal/simagent"
	"github.com/lotehq/lote/internal/testenv"
)

// runSimulated connects simulated agents (they answer every assignment with
// a success at once) to pool "sim" until they finished n tasks, then
// disconnects them.
func runSimulated(t *testing.T, env *testenv.Env, joinToken string, n int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var st simagent.Stats
	done := make(chan error, 1)
	go func() {
		done <- simagent.Run(ctx, simagent.Config{Server: env.Server.URL(), Pool: "sim", JoinToken: joinToken,
			Nodes: 4, Slots: 64, Name: "sim"}, &st)
	}()
	deadline := time.Now().Add(60 * time.Second)
	for st.Finished.Load() < int64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("simulated agents (%d connected) finished %d tasks in 60 s, want %d", st.Connected.Load(), st.Finished.Load(), n)
		}
		select {
		case err := <-done:
			t.Fatalf("simulated agents stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	<-done
}
