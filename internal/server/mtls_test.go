package server

import "testing"

// TestCertNames: a client certificate acts for the node named after it, or
// the same name with the "-N" suffix the core gives a taken name, and for
// no other node.
func TestCertNames(t *testing.T) {
	for _, c := range []struct {
		cn, id string
		want   bool
	}{
		{"n1", "n1", true},
		{"n1", "N1", true},
		{"n1", "n1-2", true},
		{"n1", "n1-12", true},
		{"n1", "n1-", false},
		{"n1", "n1-x", false},
		{"n1", "n12", false},
		{"n1", "n", false},
		{"n1-2", "n1", false},
		{"", "n1", false},
		{"", "", false},
	} {
		if got := certNames(c.cn, c.id); got != c.want {
			t.Errorf("certNames(%q, %q) = %v, want %v", c.cn, c.id, got, c.want)
		}
	}
}
