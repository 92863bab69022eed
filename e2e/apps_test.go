package e2e

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lotehq/lote/api"
)

// writeTarGz writes a .tar.gz holding files (name → content, mode 0755).
func writeTarGz(t *testing.T, path string, files map[string]string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	gz.Close()
	f.Close()
}

// TestApplicationPackages: packages uploaded with lote app upload are
// installed once per node, exposed as LOTE_APP_<NAME>[_<VERSION>], the
// newest upload is the default version, and an unknown package is refused
// at submission naming the field.
func TestApplicationPackages(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	c := startUp(t, home, "--nodes", "1", "--slots", "2")
	v1 := filepath.Join(home, "tool-1.tar.gz")
	writeTarGz(t, v1, map[string]string{"bin/hello": "#!/bin/sh\necho hello from v1 \"$@\"\n"})
	c.must("app", "upload", "my-tool", "1.0", v1)
	v2 := filepath.Join(home, "tool-2.zip")
	zf, _ := os.Create(v2)
	zw := zip.NewWriter(zf)
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: "bin/hello", Method: zip.Deflate})
	w.Write([]byte("#!/bin/sh\necho hello from v2 \"$@\"\n"))
	zw.Close()
	zf.Close()
	c.must("app", "upload", "my-tool", "2.0", v2)
	if r := c.must("app", "list", "-q"); strings.Fields(r.stdout)[0] != "my-tool@2.0" || !strings.Contains(r.stdout, "my-tool@1.0") {
		t.Fatalf("app list: %s", r)
	}
	c.must("job", "create", "A", "--pool", "local")
	// Zip entries carry no mode: run through sh.
	c.must("submit", "--job", "A", "--id-prefix", "new", "--array", "1-4", "--app", "my-tool", "--wait", "--shell", "--",
		`sh "$LOTE_APP_MY_TOOL/bin/hello" {index} && test "$LOTE_APP_MY_TOOL" = "$LOTE_APP_MY_TOOL_2_0"`)
	c.must("submit", "--job", "A", "--id-prefix", "old", "--array", "1", "--app", "my-tool@1.0", "--wait", "--shell", "--",
		`"$LOTE_APP_MY_TOOL_1_0/bin/hello" old`)
	if j := c.job("A"); j.TaskCounts.Succeeded != 5 {
		t.Fatalf("counts %+v", j.TaskCounts)
	}
	for i := 1; i <= 4; i++ {
		if r := c.must("task", "logs", "A", fmt.Sprintf("new%d", i)); r.stdout != fmt.Sprintf("hello from v2 %d\n", i) {
			t.Errorf("new%d logs: %s", i, r)
		}
	}
	if r := c.must("task", "logs", "A", "old1"); r.stdout != "hello from v1 old\n" {
		t.Errorf("old1 logs: %s", r)
	}
	nodeDir := filepath.Join(home, "nodes", "local-1")
	for _, v := range []string{"1.0", "2.0"} {
		if _, err := os.Stat(filepath.Join(nodeDir, "applications", "my-tool", v, "bin", "hello")); err != nil {
			t.Errorf("package %s not installed: %v", v, err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(nodeDir, "agent.log"))
	if n := strings.Count(string(b), "application package installed"); n != 2 {
		t.Errorf("%d installs logged, want 2 (one per version)", n)
	}
	r := c.cli("submit", "--job", "A", "--app", "nope", "--", "true")
	if r.code == 0 || !strings.Contains(r.stderr, "apps[0]") || !strings.Contains(r.stderr, "nope") {
		t.Errorf("unknown package: %s", r)
	}
	if r := c.cli("submit", "--job", "A", "--app", "my-tool@9", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "my-tool@9") {
		t.Errorf("unknown version: %s", r)
	}
	// A pool's packages reach every task of the pool.
	var pool api.Pool
	c.json(&pool, "pool", "create", "AP", "--slots", "1", "--allow-root", "--app", "my-tool")
	if len(pool.Apps) != 1 || pool.Apps[0] != "my-tool@2.0" {
		t.Errorf("pool apps %v, want [my-tool@2.0] (pinned at creation)", pool.Apps)
	}
	startProc(t, home, filepath.Join(home, "agent-ap.log"), "agent", "--server", c.url, "--pool", "AP",
		"--join-token", pool.JoinToken, "--dir", filepath.Join(home, "node-ap"), "--slots", "1")
	c.awaitNodes("AP", 1)
	c.must("submit", "--job", "PA", "--pool", "AP", "--id-prefix", "p", "--array", "1", "--wait", "--shell", "--",
		`sh "$LOTE_APP_MY_TOOL_2_0/bin/hello" pool`)
	if r := c.must("task", "logs", "PA", "p1"); r.stdout != "hello from v2 pool\n" {
		t.Errorf("pool package task logs: %s", r)
	}
	if r := c.cli("pool", "create", "BAD", "--app", "nope"); r.code == 0 || !strings.Contains(r.stderr, "apps[0]") {
		t.Errorf("pool with an unknown package: %s", r)
	}
	// An archive with an entry leaving its root is refused at install: the
	// task fails with category staging and nothing is written outside.
	bad := filepath.Join(home, "bad.tar.gz")
	writeTarGz(t, bad, map[string]string{"../escaped": "x"})
	c.must("app", "upload", "bad", "1", bad)
	c.cli("submit", "--job", "A", "--id-prefix", "bad", "--array", "1", "--app", "bad", "--wait", "--", "true")
	if tk := c.task("A", "bad1"); tk.Result != "failure" || tk.FailureCategory != "staging" {
		t.Errorf("unsafe package: task %+v", tk)
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "applications", "bad", "escaped")); err == nil {
		t.Errorf("unsafe entry written outside the package root")
	}
}
