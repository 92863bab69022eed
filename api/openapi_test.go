package api

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
)

// wireTypes are the Go types the OpenAPI schemas describe, by schema name.
var wireTypes = map[string]any{
	"Attempt": Attempt{}, "Error": Error{}, "ErrorBody": ErrorBody{}, "Job": Job{}, "JobCreate": JobCreate{},
	"JobList": JobList{}, "JobUpdate": JobUpdate{}, "Node": Node{}, "NodeList": NodeList{}, "Pool": Pool{},
	"PoolCreate": PoolCreate{}, "PoolList": PoolList{}, "PoolResize": PoolResize{}, "Requirements": Requirements{},
	"RetryResult": RetryResult{}, "Submit": Submit{}, "Task": Task{}, "TaskAdd": TaskAdd{},
	"TaskAddResult": TaskAddResult{}, "TaskCounts": TaskCounts{}, "TaskList": TaskList{}, "TaskSpec": TaskSpec{},
	"Token": Token{}, "TokenCreate": TokenCreate{}, "TokenList": TokenList{},
	"DataObject": DataObject{}, "DataList": DataList{}, "InputFile": InputFile{}, "OutputFile": OutputFile{},
	"StartTask": StartTask{}, "Autoscale": Autoscale{}, "ExecProvider": ExecProvider{}, "Usage": Usage{},
	"AutoscaleRun": AutoscaleRun{}, "ResizeError": ResizeError{}, "AutoscaleChange": AutoscaleChange{},
}

// TestOpenAPISchemasMatchWireTypes checks that each schema in openapi.json
// has exactly the JSON fields of its Go type, that every $ref resolves, and
// that request bodies refuse unknown fields as the server does.
func TestOpenAPISchemasMatchWireTypes(t *testing.T) {
	var doc struct {
		OpenAPI    string `json:"openapi"`
		Components struct {
			Schemas map[string]struct {
				Properties           map[string]json.RawMessage `json:"properties"`
				AdditionalProperties *bool                      `json:"additionalProperties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(OpenAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.0") {
		t.Errorf("openapi = %q, want 3.0.x", doc.OpenAPI)
	}
	for name, s := range doc.Components.Schemas {
		v, ok := wireTypes[name]
		if !ok {
			t.Errorf("schema %s has no Go type in wireTypes", name)
			continue
		}
		var got []string
		for p := range s.Properties {
			got = append(got, p)
		}
		sort.Strings(got)
		if want := jsonFields(reflect.TypeOf(v)); !slices.Equal(got, want) {
			t.Errorf("schema %s has properties %v, Go type %T has %v", name, got, v, want)
		}
	}
	for name := range wireTypes {
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("Go type %s has no schema", name)
		}
	}
	for _, req := range []string{"PoolCreate", "JobCreate", "TaskSpec", "InputFile", "OutputFile", "TaskAdd", "Submit", "JobUpdate", "PoolResize", "Requirements", "Autoscale", "ExecProvider", "AutoscaleChange"} {
		if ap := doc.Components.Schemas[req].AdditionalProperties; ap == nil || *ap {
			t.Errorf("request schema %s must say additionalProperties: false (the server refuses unknown fields)", req)
		}
	}
	var all any
	json.Unmarshal(OpenAPI, &all)
	walkRefs(all, func(ref string) {
		name, ok := strings.CutPrefix(ref, "#/components/schemas/")
		if ok {
			if _, found := doc.Components.Schemas[name]; !found {
				t.Errorf("$ref %s does not resolve", ref)
			}
		} else if ref != "#/components/parameters/IdempotencyKey" {
			t.Errorf("unexpected $ref %s", ref)
		}
	})
}

// jsonFields are the JSON names of t's fields, an untagged embedded
// struct's (Scaling in Pool) inline as encoding/json puts them.
func jsonFields(t reflect.Type) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case f.Anonymous && tag == "" && f.Type.Kind() == reflect.Struct:
			out = append(out, jsonFields(f.Type)...)
		case name != "" && name != "-":
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

func walkRefs(v any, fn func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && k == "$ref" {
				fn(s)
			}
			walkRefs(e, fn)
		}
	case []any:
		for _, e := range v {
			walkRefs(e, fn)
		}
	}
}
