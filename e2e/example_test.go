package e2e

import (
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// TestMonteCarloPiExample runs examples/montecarlo-pi/run.sh as its README
// says, against `lote up`, and checks the estimate of π.
func TestMonteCarloPiExample(t *testing.T) {
	t.Parallel()
	home := testRoot(t)
	startUp(t, home, "--nodes", "1")
	script, err := filepath.Abs(filepath.Join("..", "examples", "montecarlo-pi", "run.sh"))
	if err != nil {
		t.Fatal(err)
	}
	r := runCLIScript(t, home, script, "TASKS=40", "SAMPLES=250000")
	m := regexp.MustCompile(`pi ~= ([0-9.]+) from 10000000 samples in 40 tasks`).FindStringSubmatch(r.stdout)
	if r.code != 0 || m == nil {
		t.Fatalf("run.sh: want exit 0 and an estimate from 10000000 samples in 40 tasks\n%s", r)
	}
	pi, _ := strconv.ParseFloat(m[1], 64)
	if math.Abs(pi-math.Pi) > 0.01 {
		t.Errorf("estimate %v is not within 0.01 of π", pi)
	}
}

// runCLIScript runs a shell script with the lote under test first on PATH.
func runCLIScript(t *testing.T, home, script string, env ...string) result {
	t.Helper()
	path := "PATH=" + filepath.Dir(lote) + string(os.PathListSeparator) + os.Getenv("PATH")
	return runProgram(t, home, runOpts{env: append(env, path)}, script)
}
