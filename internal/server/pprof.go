package server

import (
	"net/http"
	"net/http/pprof"
)

// pprofRoutes serve Go's profiler to admin tokens when the server runs with
// --pprof: profiling a live server is how its performance work is found
// (docs/benchmarks.md), and the profiles must not be open to anyone else.
var pprofRoutes = []route{
	{"GET /debug/pprof/", admin, handler(pprof.Index)},
	{"GET /debug/pprof/cmdline", admin, handler(pprof.Cmdline)},
	{"GET /debug/pprof/profile", admin, handler(pprof.Profile)},
	{"GET /debug/pprof/symbol", admin, handler(pprof.Symbol)},
	{"GET /debug/pprof/trace", admin, handler(pprof.Trace)},
}

func handler(h http.HandlerFunc) func(*Server, http.ResponseWriter, *http.Request) error {
	return func(_ *Server, w http.ResponseWriter, r *http.Request) error {
		h(w, r)
		return nil
	}
}
