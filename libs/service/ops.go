package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ReadyFunc reports nil when the service can do its work (for example once
// its queue connection works).
type ReadyFunc func() error

// NewRegistry returns a Prometheus registry with the Go and process
// collectors registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// OpsHandler serves /healthz (the process is alive), /readyz (ready says so)
// and /metrics (the registry) on mux, which may be nil.
func OpsHandler(mux *http.ServeMux, reg *prometheus.Registry, ready ReadyFunc) *http.ServeMux {
	if mux == nil {
		mux = http.NewServeMux()
	}
	mux.HandleFunc("GET /healthz", healthz)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return mux
}

// healthz answers that the process is alive.
func healthz(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) }

// Listen binds addr before the server starts, so that a port already in
// use is reported by the wiring code and not by a goroutine.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// Serve runs srv on ln until ctx is done, then shuts it down gracefully,
// giving in-flight requests up to grace to finish.
func Serve(ctx context.Context, log *slog.Logger, srv *http.Server, ln net.Listener, grace time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("http server listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http server on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shut down http server on %s: %w", ln.Addr(), err)
	}
	return nil
}

// NewHTTPServer returns an http.Server with the timeouts every Outpost
// server uses. Long-lived responses (log follow) clear their write deadline
// through http.ResponseController.
func NewHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

// ErrStarting is what a Deferred reports as readiness before Set.
var ErrStarting = errors.New("connecting to the broker")

// Frontend is what a Deferred serves once it is there: a service's API and
// its readiness.
type Frontend interface {
	http.Handler
	Ready() error
}

// Deferred stands in for a service's API while the service is being built:
// the HTTP server starts first, so that liveness answers while the broker
// is dialled, and until Set every request gets a 503 naming the service and
// readiness reports ErrStarting.
type Deferred struct {
	name string
	f    atomic.Pointer[Frontend]
}

// NewDeferred returns a Deferred for the service called name.
func NewDeferred(name string) *Deferred { return &Deferred{name: name} }

// Set installs the service: from now on it serves every request.
func (d *Deferred) Set(f Frontend) { d.f.Store(&f) }

// Get returns the service installed by Set, or nil.
func (d *Deferred) Get() Frontend {
	if f := d.f.Load(); f != nil {
		return *f
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (d *Deferred) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f := d.Get(); f != nil {
		f.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Retry-After", "1") // the broker is being dialled: try again soon
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": "the " + d.name + " is starting: not connected to the broker yet"})
}

// Ready is the readiness check: the service's own once installed.
func (d *Deferred) Ready() error {
	if f := d.Get(); f != nil {
		return f.Ready()
	}
	return ErrStarting
}
