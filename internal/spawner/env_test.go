package spawner

import (
	"slices"
	"testing"
)

func TestBaseEnv(t *testing.T) {
	b := newBaseEnv([]string{"A=1", "PATH=/bin", "A=2", "EMPTY="})
	if want := []string{"A=2", "PATH=/bin", "EMPTY="}; !slices.Equal(b.vars, want) {
		t.Errorf("base = %q, want %q (the last of each name, in first-seen order)", b.vars, want)
	}
	got := b.with([]string{"X=1", "PATH=/usr/bin", "X=2", "Y=y=z"})
	if want := []string{"A=2", "PATH=/usr/bin", "EMPTY=", "X=2", "Y=y=z"}; !slices.Equal(got, want) {
		t.Errorf("with = %q, want %q", got, want)
	}
	if !slices.Equal(b.vars, []string{"A=2", "PATH=/bin", "EMPTY="}) {
		t.Errorf("with changed the base: %q", b.vars)
	}
	var none *baseEnv
	if got := none.with([]string{"X=1", "X=3"}); !slices.Equal(got, []string{"X=3"}) {
		t.Errorf("nil base with = %q", got)
	}
}
