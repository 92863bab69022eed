package cli

import (
	"path/filepath"
	"strings"
)

// callerEnvDenied are variables --env-from-caller never copies: they
// describe the caller's shell, not what a task needs, and LOTE_* would
// override the values the agent gives every task (and leak the token).
var callerEnvDenied = map[string]bool{"PWD": true, "OLDPWD": true, "SHLVL": true, "_": true}

// withCallerEnv adds environ (K=V entries) to env, which wins on conflicts,
// minus the denied variables.
func withCallerEnv(env map[string]string, environ []string) map[string]string {
	out := make(map[string]string, len(environ)+len(env))
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || callerEnvDenied[k] || strings.HasPrefix(k, "LOTE_") || strings.ContainsAny(k, " \t") {
			continue
		}
		out[k] = v
	}
	for k, v := range env {
		out[k] = v
	}
	return out
}

// absCwd makes a relative --cwd absolute on this machine, so `--cwd .` runs
// the tasks where the caller is (on a local pool or a shared file system).
func absCwd(cwd string) (string, error) {
	if cwd == "" || filepath.IsAbs(cwd) {
		return cwd, nil
	}
	abs, err := filepath.Abs(cwd)
	if err != nil {
		return "", usageErr("--cwd %s: %v", cwd, err)
	}
	return abs, nil
}
