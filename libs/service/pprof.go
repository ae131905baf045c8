package service

import (
	"net/http"
	"net/http/pprof"
)

// EnvPprof names the environment variable that, set to "true", serves the
// Go profiler (net/http/pprof) under /debug/pprof/ on the ops listener. It
// is off by default: a profile costs CPU and shows the code's internals, so
// it is for benchmarks and investigations, not for production.
const EnvPprof = "OUTPOST_OPS_PPROF"

// Profiling serves net/http/pprof's handlers on mux. The services' ops
// listeners do so when EnvPprof is "true"; a process with an ops mux of its
// own (the broker's health listener) calls it under the same condition.
func Profiling(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
