package server_test

import (
	"net/http"
	"testing"

	"github.com/lotehq/lote/internal/server"
)

// TestPprofAdminOnly: the profiler is served only with --pprof, and only to
// an admin token.
func TestPprofAdminOnly(t *testing.T) {
	get := func(s *server.Server, token string) int {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+"/debug/pprof/cmdline", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	off, _ := startWith(t, server.Config{})
	if code := get(off, off.AdminToken()); code != http.StatusNotFound {
		t.Errorf("without --pprof: %d, want 404", code)
	}
	on, _ := startWith(t, server.Config{Pprof: true})
	if code := get(on, ""); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}
	if code := get(on, on.AdminToken()); code != http.StatusOK {
		t.Errorf("admin token: %d, want 200", code)
	}
}
