package e2e

import (
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lotehq/lote/api"
)

// TestServerDiskFull is F6: with the server's directory on a small tmpfs
// that is then filled, a submission fails cleanly (503, the server keeps
// serving reads and refuses further changes), nothing is half-written, and
// once space is freed submissions work again; after a kill -9 and restart
// every acknowledged job is there whole.
func TestServerDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		requireCI(t, "mounting a tmpfs needs root")
	}
	t.Parallel()
	root := testRoot(t)
	home := filepath.Join(root, "server")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", home).CombinedOutput(); err != nil {
		requireCI(t, "mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", "-l", home).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", home, err, out)
		}
	})
	c := startServer(t, home, "127.0.0.1:0")
	c.must("pool", "create", "P")
	env := strings.Repeat("x", 32<<10)
	submit := func(id string) result {
		return c.cli("submit", "--job", id, "--pool", "P", "--array", "1-50", "--env", "PAD="+env, "--", "true")
	}
	acked := []string{}
	for i := range 5 {
		id := "ok" + strconv.Itoa(i)
		if r := submit(id); r.code != 0 {
			t.Fatalf("submit before the disk filled: %v", r)
		}
		acked = append(acked, id)
	}

	fill := filepath.Join(home, "fill")
	f, err := os.Create(fill)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the tmpfs: %v", err)
			}
			break
		}
	}
	f.Close()

	// Space the store had reserved (its WAL) may take a few more; then a
	// submission must fail with a clean 503, not hang or crash the server.
	var refused string
	for i := range 200 {
		id := "full" + strconv.Itoa(i)
		r := submit(id)
		if r.code == 0 {
			acked = append(acked, id)
			continue
		}
		if !strings.Contains(r.stderr, "store cannot commit") || !strings.Contains(r.stderr, "503") {
			t.Fatalf("submit on a full disk: want a 503 naming the store, got %v", r)
		}
		refused = id
		break
	}
	if refused == "" {
		t.Fatal("200 submissions succeeded on a full disk")
	}
	if r := submit("after"); r.code == 0 || !strings.Contains(r.stderr, "503") {
		t.Fatalf("submit while the store fails: want 503, got %v", r)
	}
	resp, err := http.Get(c.url + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("healthz while the store fails: %d, want 503", resp.StatusCode)
	}
	c.must("job", "list") // reads still work

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the server to commit again", func() error {
		resp, err := http.Get(c.url + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	})
	if r := submit("recovered"); r.code != 0 {
		t.Fatalf("submit after space returned: %v", r)
	}
	acked = append(acked, "recovered")

	// Durable and whole: restart from the store alone.
	c.srv.signal(syscall.SIGKILL)
	c.srv.wait(10 * time.Second)
	c = startServer(t, home, "127.0.0.1:0")
	for _, id := range acked {
		if j := c.job(id); j.TaskCounts.Total() != 50 {
			t.Errorf("acknowledged job %s after restart: %+v, want 50 tasks", id, j.TaskCounts)
		}
	}
	// The refused submission's outcome was unknown to its client: it may
	// have committed once space returned, but only whole.
	var j api.Job
	if r := c.cli("job", "show", refused, "-o", "json"); r.code == 0 {
		decodeJSON(t, r, &j)
		if j.TaskCounts.Total() != 50 {
			t.Errorf("refused job %s is half-written: %+v", refused, j.TaskCounts)
		}
	}
	if r := c.cli("job", "show", "after", "-o", "json"); r.code == 0 {
		t.Errorf("job refused before reaching the core exists: %s", r.stdout)
	}
}
