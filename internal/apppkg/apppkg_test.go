package apppkg

import (
	"errors"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Ref
		bad  bool
	}{
		{in: "blender", want: Ref{Name: "blender"}},
		{in: "blender@4.1.0", want: Ref{Name: "blender", Version: "4.1.0"}},
		{in: "my-tool@v2_rc", want: Ref{Name: "my-tool", Version: "v2_rc"}},
		{in: "", bad: true},
		{in: "a@", bad: true},
		{in: "../x", bad: true},
		{in: "a@..", bad: true},
		{in: "a/b@1", bad: true},
		{in: "a@1@2", bad: true},
	} {
		got, err := Parse(tc.in)
		if tc.bad {
			if !errors.Is(err, ErrBadName) {
				t.Errorf("Parse(%q) = %v, %v; want ErrBadName", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
		if got.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", got, got.String(), tc.in)
		}
	}
}

func TestEnvNames(t *testing.T) {
	v, p := EnvNames(Ref{Name: "my-tool", Version: "1.2.0"})
	if v != "LOTE_APP_MY_TOOL_1_2_0" || p != "LOTE_APP_MY_TOOL" {
		t.Errorf("EnvNames = %q, %q", v, p)
	}
}

func TestFromPath(t *testing.T) {
	r := Ref{Name: "ffmpeg", Version: "6.1"}
	got, ok := FromPath(r.Blob().Path)
	if !ok || got != r {
		t.Errorf("FromPath(%q) = %v, %v", r.Blob().Path, got, ok)
	}
	for _, p := range []string{"apps/ffmpeg/6.1", "apps/ffmpeg/6.1/other", "logs/x/y/package", "apps/../6.1/package"} {
		if _, ok := FromPath(p); ok {
			t.Errorf("FromPath(%q) accepted", p)
		}
	}
}
