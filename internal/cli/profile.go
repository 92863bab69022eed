package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
)

// startProfile writes a CPU profile of this process to
// $LOTE_CPUPROFILE.<command>.<pid> when that variable is set, so every
// process of a run (server, agents, spawners) can be profiled together.
// The returned function stops the profile.
func startProfile(args []string) func() {
	base := os.Getenv("LOTE_CPUPROFILE")
	if base == "" {
		return func() {}
	}
	name := "lote"
	if len(args) > 0 {
		name = strings.TrimPrefix(filepath.Base(args[0]), "_")
	}
	f, err := os.Create(fmt.Sprintf("%s.%s.%d", base, name, os.Getpid()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "lote: profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		fmt.Fprintln(os.Stderr, "lote: profile:", err)
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
