// Package e2e holds Lote's end-to-end tests: they build the real lote binary
// once, run `lote up`, `lote server` and `lote agent` as processes in
// temporary directories on loopback (and in network namespaces the tests
// create), drive them through the CLI exactly as a user would, and inject
// faults by killing processes. Every process a test starts is killed in its
// cleanup, found by the test's directory in its command line or environment.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// lote is the path of the binary under test, built once by TestMain.
var lote string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "lote-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	lote = filepath.Join(tmp, "lote")
	// The binary is built without -race even under `go test -race`: the race
	// detector watches the test process, and the processes under test keep
	// their real speed.
	build := exec.Command("go", "build", "-o", lote, "./cmd/lote")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building lote:", err)
		return 1
	}
	return m.Run()
}
