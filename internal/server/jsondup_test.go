package server

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/lotehq/lote/api"
)

// TestDuplicateKey: members named twice are found with their wire path —
// struct fields under encoding/json's case folding, map keys exactly — and
// documents without any are left alone, escapes and nesting included.
func TestDuplicateKey(t *testing.T) {
	for _, c := range []struct {
		name, doc, path string
	}{
		{"none", `{"job":{"pool_id":"p","env":{"A":"1","a":"2"}},"tasks":{"array":"1-2","template":{"command":["x"]}}}`, ""},
		{"map keys differ by case", `{"job":{"env":{"PATH":"1","path":"2"}}}`, ""},
		{"same name in sibling objects", `{"job":{"id":"a"},"tasks":{"tasks":[{"id":"a"},{"id":"a"}]}}`, ""},
		{"quotes and braces inside strings", `{"job":{"id":"a\"}{","tags":{"k\"":"}","k":"{"}}}`, ""},
		{"top level", `{"existing":true,"existing":false}`, "existing"},
		{"struct field folded", `{"job":{"Pool_ID":"p","pool_id":"q"}}`, "job.pool_id"},
		{"escaped name", `{"job":{"pool_id":"p","\u0070ool_id":"q"}}`, "job.pool_id"},
		{"map key", `{"job":{"tags":{"a":"1","a":"2"}}}`, "job.tags.a"},
		{"in a list", `{"tasks":{"tasks":[{"id":"a"},{"id":"b","command":["x"],"command":["y"]}]}}`, "tasks.tasks[1].command"},
		{"after a duration", `{"job":{"max_wall_clock":"1s","max_wall_clock":"2s"}}`, "job.max_wall_clock"},
		{"after nested arrays", `{"tasks":{"lines":[["a"],[[]]],"lines":[]}}`, "tasks.lines"},
	} {
		var v api.Submit
		json.Unmarshal([]byte(c.doc), &v) // type errors aside, the scan sees the same document
		path, _, ok := duplicateKey([]byte(c.doc), reflect.TypeOf(&v))
		if ok != (c.path != "") || path != c.path {
			t.Errorf("%s: duplicateKey = %q, %v; want %q", c.name, path, ok, c.path)
		}
	}
}
