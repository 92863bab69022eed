// Package apppkg names application packages: named, versioned archives
// that the agent installs once per node under applications/NAME/VERSION and
// exposes to tasks as LOTE_APP_<NAME>[_<VERSION>] (DESIGN §2). Packages live
// in the data store's reserved container, so the embedded store and any
// gocloud store hold them alike and agents fetch them through the data API.
package apppkg

import (
	"errors"
	"fmt"
	"strings"

	"github.com/lotehq/lote/internal/blob"
)

// Prefix is where packages live in the system container:
// data://_lote/apps/NAME/VERSION/package.
const Prefix = "apps/"

// object is the one object holding a version's archive; its format (.tar,
// .tar.gz, .zip) is read from its first bytes when it is unpacked.
const object = "package"

// MaxUnpacked bounds what one package may unpack to on a node.
const MaxUnpacked = 16 << 30

// ErrBadName is returned for a name or version Lote cannot store or turn
// into an environment variable.
var ErrBadName = errors.New("must be 1-64 letters, digits, '.', '_' or '-', not starting with '.'")

// Ref is one package version; Version is empty in a reference that asks
// for the newest one.
type Ref struct {
	Name    string
	Version string
}

// String writes NAME@VERSION, or NAME without a version.
func (r Ref) String() string {
	if r.Version == "" {
		return r.Name
	}
	return r.Name + "@" + r.Version
}

// Blob is where the version's archive is stored.
func (r Ref) Blob() blob.Ref {
	return blob.Ref{Container: blob.SystemContainer, Path: Prefix + r.Name + "/" + r.Version + "/" + object}
}

// NamePrefix is the prefix under which all versions of name are stored.
func NamePrefix(name string) string { return Prefix + name + "/" }

// FromPath reads the package version an object path under the system
// container names (apps/NAME/VERSION/package).
func FromPath(p string) (Ref, bool) {
	rest, ok := strings.CutPrefix(p, Prefix)
	if !ok {
		return Ref{}, false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[2] != object || CheckName(parts[0]) != nil || CheckName(parts[1]) != nil {
		return Ref{}, false
	}
	return Ref{Name: parts[0], Version: parts[1]}, true
}

// CheckName checks a package name or version.
func CheckName(s string) error {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return ErrBadName
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-' || b == '.') {
			return ErrBadName
		}
	}
	return nil
}

// Parse reads NAME[@VERSION].
func Parse(s string) (Ref, error) {
	name, version, hasVersion := strings.Cut(s, "@")
	if err := CheckName(name); err != nil {
		return Ref{}, fmt.Errorf("package name %q: %w", name, err)
	}
	if hasVersion {
		if err := CheckName(version); err != nil {
			return Ref{}, fmt.Errorf("package version %q: %w", version, err)
		}
	}
	return Ref{Name: name, Version: version}, nil
}

// EnvNames are the variables a task sees for r, both pointing at its
// install directory: LOTE_APP_<NAME>_<VERSION> and LOTE_APP_<NAME>, upper
// case with every character other than a letter or digit made '_'.
func EnvNames(r Ref) (versioned, plain string) {
	plain = "LOTE_APP_" + envPart(r.Name)
	return plain + "_" + envPart(r.Version), plain
}

func envPart(s string) string {
	b := []byte(strings.ToUpper(s))
	for i, c := range b {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}
