package spawner

import "strings"

// baseEnv is a connection's base environment (SpawnRequest.Base), with an
// index by name for merging.
type baseEnv struct {
	vars  []string
	index map[string]int // name → position in vars
}

// newBaseEnv keeps the last of each name in env, as os/exec does.
func newBaseEnv(env []string) *baseEnv {
	b := &baseEnv{index: make(map[string]int, len(env))}
	for _, kv := range env {
		name := envName(kv)
		if i, ok := b.index[name]; ok {
			b.vars[i] = kv
			continue
		}
		b.index[name] = len(b.vars)
		b.vars = append(b.vars, kv)
	}
	return b
}

// with returns the base with extra's variables added, each replacing an
// earlier one of the same name, so that a task sees one value per name
// however it reads its environment (getenv takes the first, shells the
// last). A nil base is empty.
func (b *baseEnv) with(extra []string) []string {
	if b == nil {
		b = &baseEnv{}
	}
	n := len(b.vars)
	env := make([]string, n, n+len(extra))
	copy(env, b.vars)
	for _, kv := range extra {
		name := envName(kv)
		if i, ok := b.index[name]; ok {
			env[i] = kv
			continue
		}
		j := n
		for ; j < len(env); j++ {
			if envName(env[j]) == name {
				env[j] = kv
				break
			}
		}
		if j == len(env) {
			env = append(env, kv)
		}
	}
	return env
}

func envName(kv string) string {
	name, _, _ := strings.Cut(kv, "=")
	return name
}
