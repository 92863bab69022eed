package blob

import (
	"path"
	"strings"
)

// HasWildcard reports whether an output pattern has glob characters.
func HasWildcard(pattern string) bool { return strings.ContainsAny(pattern, "*?[") }

// GlobBase is the leading part of pattern without wildcards, the directory
// that matched files keep their paths relative to ("out/**/*.png" → "out").
func GlobBase(pattern string) string {
	segs := strings.Split(pattern, "/")
	n := 0
	for n < len(segs)-1 && !HasWildcard(segs[n]) {
		n++
	}
	if !HasWildcard(pattern) {
		n = len(segs) - 1
	}
	return strings.Join(segs[:n], "/")
}

// Match reports whether a slash-separated relative path matches pattern,
// where "**" as a whole segment matches any number of segments and other
// segments follow path.Match. Names starting with '.' match only a segment
// that starts with '.' too, as in shells.
func Match(pattern, name string) bool {
	return matchSegs(strings.Split(pattern, "/"), strings.Split(name, "/"))
}

func matchSegs(pat, name []string) bool {
	for len(pat) > 0 {
		if pat[0] == "**" {
			for i := 0; i <= len(name); i++ {
				if i > 0 && strings.HasPrefix(name[i-1], ".") {
					return false
				}
				if matchSegs(pat[1:], name[i:]) {
					return true
				}
			}
			return false
		}
		if len(name) == 0 {
			return false
		}
		if strings.HasPrefix(name[0], ".") && !strings.HasPrefix(pat[0], ".") {
			return false
		}
		if ok, err := path.Match(pat[0], name[0]); err != nil || !ok {
			return false
		}
		pat, name = pat[1:], name[1:]
	}
	return len(name) == 0
}
