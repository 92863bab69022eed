package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"time"

	"github.com/lotehq/lote/api"
	"github.com/lotehq/lote/internal/invariant"
)

// checkInvariantsAtEnd makes the test check, when it ends without failing
// and its server still runs, that the server kept its invariants (counts add
// up, no task ran again after succeeding, no node over its slots).
func checkInvariantsAtEnd(c *cluster) {
	c.t.Cleanup(func() {
		if c.t.Failed() || c.srv.exited() {
			return
		}
		var cfg api.ClientConfig
		b, err := os.ReadFile(filepath.Join(c.home, "client.json"))
		if err != nil || json.Unmarshal(b, &cfg) != nil || cfg.Server != c.url {
			return // another server took the directory over
		}
		cl, err := api.NewClient(cfg.Server, cfg.Token, cfg.CAFile)
		if err != nil {
			c.t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := invariant.Check(ctx, cl); err != nil {
			c.t.Error(err)
		}
	})
}
