package server

import (
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// encoding/json takes the last of two members with the same name and says
// nothing, so {"pool_id":"a","pool_id":"b"} would quietly mean "b": a
// request that means two things is refused instead. The scan runs on a body
// that has already decoded, so it may assume valid JSON.

// duplicateKey walks the valid JSON document b alongside the Go type it
// decoded into and returns the wire path of the first member whose name
// repeats an earlier one of the same object, as encoding/json would merge
// them: a struct's fields match without regard to case (encoding/json's
// rule), a map's keys exactly. ok is false when there is none.
func duplicateKey(b []byte, t reflect.Type) (path, key string, ok bool) {
	s := dupScanner{b: b}
	s.value(t, "")
	return s.path, s.key, s.found
}

type dupScanner struct {
	b     []byte
	i     int
	found bool
	path  string
	key   string
}

func (s *dupScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str reads a string token and returns its value.
func (s *dupScanner) str() string {
	start := s.i
	s.i++ // opening quote
	escaped := false
	for s.i < len(s.b) && s.b[s.i] != '"' {
		if s.b[s.i] == '\\' {
			escaped = true
			s.i++
		}
		s.i++
	}
	s.i++ // closing quote
	raw := s.b[start:min(s.i, len(s.b))]
	if !escaped {
		return string(raw[1 : len(raw)-1])
	}
	var v string
	json.Unmarshal(raw, &v)
	return v
}

// value scans one value; t is the Go type it decodes into (nil: any).
func (s *dupScanner) value(t reflect.Type, path string) {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t != nil && (t.Implements(unmarshalerType) || reflect.PointerTo(t).Implements(unmarshalerType)) {
		t = nil // decodes itself: only exact duplicates are known to merge
	}
	s.ws()
	if s.i >= len(s.b) {
		return
	}
	switch s.b[s.i] {
	case '{':
		s.object(t, path)
	case '[':
		s.i++
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for n := 0; !s.found; n++ {
			s.ws()
			if s.i >= len(s.b) || s.b[s.i] == ']' {
				s.i++
				return
			}
			s.value(elem, path+"["+strconv.Itoa(n)+"]")
			s.ws()
			if s.i < len(s.b) && s.b[s.i] == ',' {
				s.i++
			}
		}
	case '"':
		s.str()
	default: // number, true, false, null
		for s.i < len(s.b) && !strings.ContainsRune(" \t\n\r,]}", rune(s.b[s.i])) {
			s.i++
		}
	}
}

func (s *dupScanner) object(t reflect.Type, path string) {
	s.i++
	var fields map[string]structField
	var elem reflect.Type
	switch {
	case t == nil:
	case t.Kind() == reflect.Struct:
		fields = fieldsOf(t)
	case t.Kind() == reflect.Map:
		elem = t.Elem()
	}
	seen := map[string]bool{}
	for !s.found {
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] == '}' {
			s.i++
			return
		}
		key := s.str()
		name, vt := key, elem
		if fields != nil {
			if f, ok := lookupField(fields, key); ok {
				name, vt = f.name, f.typ
			}
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		if seen[name] {
			s.found, s.path, s.key = true, p, key
			return
		}
		seen[name] = true
		s.ws()
		s.i++ // ':'
		s.value(vt, p)
		s.ws()
		if s.i < len(s.b) && s.b[s.i] == ',' {
			s.i++
		}
	}
}

// lookupField finds the field a member name decodes into: its exact name,
// else one equal under case folding, as encoding/json matches.
func lookupField(fields map[string]structField, key string) (structField, bool) {
	if f, ok := fields[key]; ok {
		return f, true
	}
	if f, ok := fields[strings.ToLower(key)]; ok {
		return f, true
	}
	for _, f := range fields {
		if strings.EqualFold(f.name, key) {
			return f, true
		}
	}
	return structField{}, false
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// structField is a struct field as JSON names it.
type structField struct {
	name string
	typ  reflect.Type
}

var fieldCache sync.Map // reflect.Type → map[string]structField

// fieldsOf maps a struct's JSON member names, and their lower-case forms,
// to its fields (embedded structs' fields promoted).
func fieldsOf(t reflect.Type) map[string]structField {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]structField)
	}
	m := map[string]structField{}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if tag == "-" {
				continue
			}
			if f.Anonymous && tag == "" {
				ft := f.Type
				if ft.Kind() == reflect.Pointer {
					ft = ft.Elem()
				}
				if ft.Kind() == reflect.Struct {
					add(ft)
					continue
				}
			}
			if !f.IsExported() {
				continue
			}
			name := tag
			if name == "" {
				name = f.Name
			}
			sf := structField{name: name, typ: f.Type}
			m[name] = sf
			if _, ok := m[strings.ToLower(name)]; !ok {
				m[strings.ToLower(name)] = sf
			}
		}
	}
	add(t)
	fieldCache.Store(t, m)
	return m
}
