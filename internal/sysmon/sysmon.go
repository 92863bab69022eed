// Package sysmon keeps the Go runtime's system monitor awake in Lote's
// long-running processes (lote up, server, agent, and the agent's spawner),
// where its deep sleep costs more than it saves.
//
// The monitor (runtime.sysmon) sleeps deeply while every P is idle, and the
// first system call after that wakes it and puts it back to polling every
// 20 µs for at least a millisecond. The agent and the spawner go idle and
// wake again for every start and every exit of a short task, and the server
// for every batch of reports, so the monitor polled almost without pause:
// 10 to 18 sleeps a task, and in perf a fifth of the agent's CPU and a
// third of the spawner's and the server's, on this project's two-core test
// VM (docs/benchmarks.md). Kept out of its deep sleep, it backs off to 10 ms
// between polls whenever it finds nothing to do.
//
// The one documented way to keep it so is GODEBUG's schedtrace, which a
// process reads only at its start: hence Reexec. Its period is set to the
// longest the runtime accepts, so the trace it exists for is printed to
// standard error once every 24.8 days of the host's uptime (at once, on a
// host up longer than that), a line that starts "SCHED"; and a fatal error
// or SIGQUIT dumps the scheduler's state (every P, M and G) before the
// goroutines' stacks. A user who sets
// schedtrace in GODEBUG (0 turns it off) keeps their own value. What Lote
// runs for the user (tasks, provider commands) gets the user's GODEBUG
// back (UserEnviron); Lote's own child processes inherit the setting.
package sysmon

import (
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
)

const (
	// setting keeps the monitor awake: schedtrace's largest period, in ms.
	setting = "schedtrace=2147483647"
	// savedVar holds the user's GODEBUG entry across Reexec ("GODEBUG=…",
	// or empty when it was unset); its presence says Reexec has been done.
	savedVar = "LOTE_USER_GODEBUG"
)

// Reexec replaces the process with the same executable and arguments, with
// setting added to GODEBUG, unless that was done already or the user's
// GODEBUG sets schedtrace. It returns only when it does not replace the
// process: nil when there is nothing to do, or the error from exec, after
// which the process carries on as it is, slower but correct.
func Reexec() error {
	env, ok := awakeEnviron(os.Environ())
	if !ok {
		return nil
	}
	// A CPU profile's timer (LOTE_CPUPROFILE) would outlive the exec and
	// kill the new process with SIGPROF before its runtime handles it; the
	// new process starts its own profile.
	pprof.StopCPUProfile()
	// The running file itself, even if an upgrade has replaced or removed
	// the path it was started from.
	return syscall.Exec("/proc/self/exe", os.Args, env)
}

// awakeEnviron returns env with setting added to GODEBUG and the user's
// entry saved, and whether that differs from env.
func awakeEnviron(env []string) ([]string, bool) {
	if slices.ContainsFunc(env, isVar(savedVar)) {
		return env, false
	}
	user := "" // the user's entry, the first as getenv finds it; "" when unset
	if i := slices.IndexFunc(env, isVar("GODEBUG")); i >= 0 {
		user = env[i]
	}
	godebug := strings.TrimPrefix(user, "GODEBUG=")
	for field := range strings.SplitSeq(godebug, ",") {
		if strings.HasPrefix(field, "schedtrace=") {
			return env, false
		}
	}
	if godebug != "" {
		godebug += ","
	}
	out := slices.DeleteFunc(slices.Clone(env), isVar("GODEBUG"))
	return append(out, "GODEBUG="+godebug+setting, savedVar+"="+user), true
}

// isVar matches the environment entries of the variable name.
func isVar(name string) func(string) bool {
	return func(kv string) bool { return strings.HasPrefix(kv, name+"=") }
}

// UserEnviron is os.Environ as the user gave it to the process, before
// Reexec: the environment for what the agent runs on the user's behalf.
func UserEnviron() []string {
	return userEnviron(os.Environ())
}

func userEnviron(env []string) []string {
	i := slices.IndexFunc(env, isVar(savedVar))
	if i < 0 {
		return env
	}
	saved := strings.TrimPrefix(env[i], savedVar+"=")
	out := slices.DeleteFunc(slices.Clone(env), func(kv string) bool {
		return isVar(savedVar)(kv) || isVar("GODEBUG")(kv)
	})
	if saved != "" {
		out = append(out, saved)
	}
	return out
}
