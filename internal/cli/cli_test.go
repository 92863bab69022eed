package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/lotehq/lote/api"
)

func TestLayoutCutsTheLastColumnOnly(t *testing.T) {
	in := "A\tBB\tCOMMAND\nlong-id\tx\techo a very long command line indeed\njoin token: abcdefghijklmnopqrstuvwxyz0123456789\n"
	got := string(layout([]byte(in), 30))
	want := "A        BB  COMMAND\n" +
		"long-id  x   echo a very long…\n" +
		"join token: abcdefghijklmnopqrstuvwxyz0123456789\n"
	if got != want {
		t.Errorf("layout width 30:\n%s\nwant:\n%s", got, want)
	}
	if got := string(layout([]byte(in), 0)); !strings.Contains(got, "echo a very long command line indeed\n") {
		t.Errorf("layout without a width cut a cell:\n%s", got)
	}
	// Columns wider than the terminal: the last still keeps minLastColumn.
	if got := string(layout([]byte("aaaaaaaaaaaaaaaaaaaa\tbbbbbbbbbbbbbbbbbbbbbbbbbb\n"), 10)); got != "aaaaaaaaaaaaaaaaaaaa  bbbbbbbbbbb…\n" {
		t.Errorf("narrow terminal: %q", got)
	}
}

func TestWithCallerEnv(t *testing.T) {
	got := withCallerEnv(map[string]string{"BAR": "explicit"}, []string{
		"FOO=1", "BAR=caller", "LOTE_TOKEN=secret", "LOTE_SERVER=x", "PWD=/here", "OLDPWD=/there", "SHLVL=2", "_=/usr/bin/lote",
		"EMPTY=", "WITH=EQUALS=x", "noequals",
	})
	want := map[string]string{"FOO": "1", "BAR": "explicit", "EMPTY": "", "WITH": "EQUALS=x"}
	if len(got) != len(want) {
		t.Errorf("withCallerEnv = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("withCallerEnv[%s] = %q, want %q", k, got[k], v)
		}
	}
}

func TestReadSpecs(t *testing.T) {
	for name, in := range map[string]string{
		"array":      ` [{"id":"a","command":["x"]},{"command":["y"],"env":{"K":"V"}}]`,
		"JSON lines": "{\"id\":\"a\",\"command\":[\"x\"]}\n\n{\"command\":[\"y\"],\"env\":{\"K\":\"V\"}}\n",
	} {
		a := &app{stdin: strings.NewReader(in)}
		specs, err := a.readSpecs("-")
		if err != nil || len(specs) != 2 || specs[0].ID != "a" || specs[1].Env["K"] != "V" {
			t.Errorf("%s: %+v, %v", name, specs, err)
		}
	}
	for name, in := range map[string]string{
		"empty": "  \n", "unknown field": `[{"command":["x"],"colour":1}]`, "bad line": "{\"command\":[\"x\"]}\n{nope}\n", "empty array": "[]",
	} {
		a := &app{stdin: strings.NewReader(in)}
		if _, err := a.readSpecs("-"); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestAddInChunks: a bulk add goes in requests of at most a chunk of tasks,
// with idempotency keys K, K.2, ..., and the answers are summed.
func TestAddInChunks(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	var keys []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in api.TaskAdd
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		sizes = append(sizes, len(in.Tasks))
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		json.NewEncoder(w).Encode(api.TaskAddResult{JobID: "J", Added: len(in.Tasks), FirstID: in.Tasks[0].ID, LastID: in.Tasks[len(in.Tasks)-1].ID})
	}))
	defer srv.Close()
	cl, err := api.NewClient(srv.URL, "t", "")
	if err != nil {
		t.Fatal(err)
	}
	const chunk = 10
	specs := make([]api.TaskSpec, 2*chunk+1)
	for i := range specs {
		specs[i] = api.TaskSpec{ID: "t" + string(rune('a'+i%26)), Command: []string{"true"}}
	}
	specs[0].ID, specs[len(specs)-1].ID = "first", "last"
	res, err := addInChunks(context.Background(), cl, "J", specs, "K", chunk)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sizes, []int{chunk, chunk, 1}) || !slices.Equal(keys, []string{"K", "K.2", "K.3"}) {
		t.Errorf("requests of %v tasks with keys %v", sizes, keys)
	}
	if res.Added != len(specs) || res.FirstID != "first" || res.LastID != "last" {
		t.Errorf("result = %+v", res)
	}
}
