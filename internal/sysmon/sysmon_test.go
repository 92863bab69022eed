package sysmon

import (
	"slices"
	"testing"
)

func TestAwakeAndBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  []string
		want []string // the awake environment
		user []string // what tasks get back: the user's value, last
	}{
		{"unset", []string{"A=1"}, []string{"A=1", "GODEBUG=" + setting, savedVar + "="}, []string{"A=1"}},
		{"empty", []string{"GODEBUG=", "A=1"},
			[]string{"A=1", "GODEBUG=" + setting, savedVar + "=GODEBUG="}, []string{"A=1", "GODEBUG="}},
		{"others kept", []string{"GODEBUG=madvdontneed=1", "A=1"},
			[]string{"A=1", "GODEBUG=madvdontneed=1," + setting, savedVar + "=GODEBUG=madvdontneed=1"},
			[]string{"A=1", "GODEBUG=madvdontneed=1"}},
		{"the first of two wins, as in getenv", []string{"GODEBUG=x=1", "GODEBUG=y=2"},
			[]string{"GODEBUG=x=1," + setting, savedVar + "=GODEBUG=x=1"}, []string{"GODEBUG=x=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := awakeEnviron(tc.env)
			if !ok || !slices.Equal(got, tc.want) {
				t.Fatalf("awakeEnviron(%q) = %q, %v; want %q", tc.env, got, ok, tc.want)
			}
			if again, ok := awakeEnviron(got); ok || !slices.Equal(again, got) {
				t.Errorf("awakeEnviron of an awake environment changed it: %q", again)
			}
			if user := userEnviron(got); !slices.Equal(user, tc.user) {
				t.Errorf("userEnviron = %q, want %q", user, tc.user)
			}
		})
	}
}

// A user's own schedtrace, even 0 (deep sleep allowed), is theirs to keep.
func TestUsersScheduleTraceKept(t *testing.T) {
	for _, env := range [][]string{
		{"GODEBUG=schedtrace=0"},
		{"GODEBUG=gctrace=1,schedtrace=1000"},
	} {
		if got, ok := awakeEnviron(env); ok || !slices.Equal(got, env) {
			t.Errorf("awakeEnviron(%q) = %q, %v; want it unchanged", env, got, ok)
		}
		if got := userEnviron(env); !slices.Equal(got, env) {
			t.Errorf("userEnviron(%q) = %q; want it unchanged", env, got)
		}
	}
}
