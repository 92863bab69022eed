package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/lotehq/lote/api"
)

// openAPIDoc is the part of api/openapi.json the route test reads.
type openAPIDoc struct {
	Paths map[string]map[string]struct {
		OperationID string            `json:"operationId"`
		Security    *[]map[string]any `json:"security"`
		Parameters  []struct {
			Name string `json:"name"`
			In   string `json:"in"`
		} `json:"parameters"`
	} `json:"paths"`
}

var pathParam = regexp.MustCompile(`\{[a-z]+\}`)

// TestOpenAPIMatchesRoutes checks that every route the mux serves is in
// api/openapi.json with the same method and path, and that the document
// describes no route the server lacks; that routes open without a token are
// the ones the document marks so; and that the mux really dispatches each
// documented path to its route.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc openAPIDoc
	if err := json.Unmarshal(api.OpenAPI, &doc); err != nil {
		t.Fatalf("api/openapi.json: %v", err)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			documented[strings.ToUpper(method)+" "+path] = true
			if op.OperationID == "" {
				t.Errorf("%s %s has no operationId", method, path)
			}
			var inPath []string
			for _, p := range op.Parameters {
				if p.In == "path" {
					inPath = append(inPath, "{"+p.Name+"}")
				}
			}
			if want := pathParam.FindAllString(path, -1); !slices.Equal(inPath, want) {
				t.Errorf("%s %s: path parameters %v, want %v", method, path, inPath, want)
			}
		}
	}
	mux := (&Server{}).routes().(*http.ServeMux)
	served := map[string]bool{}
	for _, rt := range routeTable {
		if served[rt.pattern] {
			t.Errorf("route %s is registered twice", rt.pattern)
		}
		served[rt.pattern] = true
		// A trailing {name...} (the rest of the path) is {name} in OpenAPI.
		pattern := strings.Replace(rt.pattern, "...}", "}", 1)
		served[pattern] = true
		method, path, _ := strings.Cut(pattern, " ")
		if !documented[pattern] {
			t.Errorf("route %s is served but not in api/openapi.json", rt.pattern)
			continue
		}
		req := httptest.NewRequest(method, pathParam.ReplaceAllString(path, "x1"), nil)
		if _, got := mux.Handler(req); got != rt.pattern {
			t.Errorf("%s %s is dispatched to %q, want %q", method, req.URL.Path, got, rt.pattern)
		}
		op := doc.Paths[path][strings.ToLower(method)]
		open := op.Security != nil && len(*op.Security) == 0
		if served := rt.access == public || rt.access == agent; open != served {
			t.Errorf("route %s: the document says open=%v, the server %v", rt.pattern, open, served)
		}
	}
	for p := range documented {
		if !served[p] {
			t.Errorf("api/openapi.json describes %s, which the server does not serve", p)
		}
	}
}
