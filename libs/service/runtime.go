package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/outposthq/outpost/libs/telemetry"
)

// drainMargin is added to Options.Drain to bound how long Runtime.Wait
// waits for a service's parts once its stop began: it covers the work
// around the drain itself (stopping consumers, last publishes).
var drainMargin = 10 * time.Second

// Errors of a Runtime.
var (
	// ErrStopping is what readiness reports once the service stops.
	ErrStopping = errors.New("stopping")
	// ErrStopTimeout is returned by Wait when the parts did not return
	// within Options.Drain plus 10 seconds after the stop began.
	ErrStopTimeout = errors.New("service did not stop in time")
)

// Options says what a Runtime serves.
type Options struct {
	// Name names the service in the 503 its API answers while it starts.
	Name string
	// Log receives the servers' and the stop's messages.
	Log *slog.Logger
	// OpsAddr, when set, serves /healthz, /readyz and /metrics without
	// credentials, until every part has returned: a drain can be watched
	// there.
	OpsAddr string
	// APIAddr, when set, serves the service's API under APIPaths (a 503
	// until Set installs it) with /healthz and /readyz. It stops taking
	// requests as soon as the stop begins.
	APIAddr string
	// APIPaths are the ServeMux patterns of the API ("/api/").
	APIPaths []string
	// Grace bounds each HTTP server's shutdown: in-flight requests get it
	// to finish.
	Grace time.Duration
	// Drain is how long the service's parts take to stop once the stop
	// began (their own drain or shutdown grace). Wait waits Drain plus
	// 10 seconds for them, then gives up with ErrStopTimeout.
	Drain time.Duration
}

// Streamer is a Frontend with long-lived responses (log follows):
// StopStreams ends them when the API server shuts down, so that the
// shutdown does not wait the whole grace for them.
type Streamer interface {
	StopStreams()
}

// Runtime is the run-time skeleton of a service: its listeners, bound
// before anything else so that a port in use fails the start and liveness
// answers while the broker is dialled; its readiness, false until the
// service installs its own and once the stop began; its long-lived parts,
// run in an errgroup; and a graceful, bounded stop. Start makes one; Set,
// SetReady and Closer are safe for concurrent use, and Go may be called
// before Wait or from a running part.
type Runtime struct {
	opts  Options
	log   *slog.Logger
	reg   *prometheus.Registry
	front *Deferred

	ctx    context.Context // ends when the stop begins
	cancel context.CancelFunc
	// opsCtx ends once the parts have returned: the ops server outlives
	// the drain.
	opsCtx  context.Context
	stopOps context.CancelFunc

	parts   errgroup.Group
	servers errgroup.Group

	mu      sync.Mutex
	closers []io.Closer
}

// Start binds the listeners of opts and serves them. The stop begins when
// ctx ends, when a part returns or when a server fails; Wait then returns
// once everything has stopped; the caller must call it. Start fails, with
// nothing left open, when a listener cannot be bound.
func Start(ctx context.Context, opts Options) (*Runtime, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	var api, ops net.Listener
	if opts.APIAddr != "" {
		ln, err := Listen(opts.APIAddr)
		if err != nil {
			return nil, err
		}
		api = ln
	}
	if opts.OpsAddr != "" {
		ln, err := Listen(opts.OpsAddr)
		if err != nil {
			if api != nil {
				_ = api.Close()
			}
			return nil, err
		}
		ops = ln
	}
	r := &Runtime{opts: opts, log: opts.Log, reg: NewRegistry(), front: NewDeferred(opts.Name)}
	r.ctx, r.cancel = context.WithCancel(ctx)
	// Readiness as a metric, for the alert on a service whose broker
	// connection (or tenants) is not ready: /readyz is only probed by the
	// orchestrator.
	r.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "outpost_ready",
		Help:        "1 while the service is ready (what /readyz answers: its broker connection works and its tenants are provisioned), else 0.",
		ConstLabels: prometheus.Labels{"service": opts.Name},
	}, func() float64 {
		if r.Ready() != nil {
			return 0
		}
		return 1
	}))
	r.opsCtx, r.stopOps = context.WithCancel(context.WithoutCancel(ctx))
	if api != nil {
		mux := http.NewServeMux()
		// Each API request gets a server span, the child of the
		// client's W3C traceparent (libs/telemetry).
		traced := telemetry.Handler(r.front)
		for _, p := range opts.APIPaths {
			mux.Handle(p, traced)
		}
		// Only the probes are served there without a credential:
		// /metrics (every tenant's numbers) is on the ops listener.
		mux.HandleFunc("GET /healthz", healthz)
		mux.Handle("GET /readyz", OpsHandler(nil, r.reg, r.Ready))
		srv := NewHTTPServer(mux)
		srv.RegisterOnShutdown(func() {
			if s, ok := r.front.Get().(Streamer); ok {
				s.StopStreams()
			}
		})
		r.serve(r.ctx, srv, api)
	}
	if ops != nil {
		mux := OpsHandler(nil, r.reg, r.Ready)
		if os.Getenv(EnvPprof) == "true" {
			Profiling(mux)
		}
		r.serve(r.opsCtx, NewHTTPServer(mux), ops)
	}
	return r, nil
}

// serve runs srv on ln until ctx ends; a server that fails stops the
// service.
func (r *Runtime) serve(ctx context.Context, srv *http.Server, ln net.Listener) {
	r.servers.Go(func() error {
		err := Serve(ctx, r.log, srv, ln, r.opts.Grace)
		if err != nil {
			r.cancel()
		}
		return err
	})
}

// Registry is the service's Prometheus registry, served on /metrics.
func (r *Runtime) Registry() *prometheus.Registry { return r.reg }

// Go runs part, a long-lived part of the service, with a context that ends
// when the stop begins. When a part returns, the stop begins: the service
// has nothing left to serve. The first error of a part is Wait's.
func (r *Runtime) Go(part func(ctx context.Context) error) {
	r.parts.Go(func() error {
		defer r.cancel()
		err := part(r.ctx)
		if r.ctx.Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
			// The stop began first: the part reports that it is done.
			// A part's own timeout, before the stop, stays an error.
			return nil
		}
		return err
	})
}

// Set installs the service's API and readiness: from now on API requests
// go to f and readiness is f's (until the stop begins).
func (r *Runtime) Set(f Frontend) { r.front.Set(f) }

// SetReady installs the readiness of a service without an API.
func (r *Runtime) SetReady(ready ReadyFunc) { r.front.Set(readyOnly(ready)) }

// Ready reports nil when the service can do its work: ErrStarting until
// Set or SetReady, ErrStopping once the stop began, else the service's own
// check.
func (r *Runtime) Ready() error {
	if r.ctx.Err() != nil {
		return ErrStopping
	}
	return r.front.Ready()
}

// Closer has c closed once every part and server has stopped (requests in
// flight may still use it until then), in the reverse order of the calls.
func (r *Runtime) Closer(c io.Closer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closers = append(r.closers, c)
}

// Wait waits for the stop: it returns once the parts have returned (or
// Drain plus 10 seconds after the stop began), the servers have shut
// down and the connections given to Closer are closed. Its error is the
// first of a part or a server; a part that returns a context error once
// the stop began has stopped cleanly.
func (r *Runtime) Wait() error {
	partsDone := make(chan error, 1)
	go func() { partsDone <- r.parts.Wait() }()
	var err error
	select {
	case err = <-partsDone:
	case <-r.ctx.Done():
		bound := r.opts.Drain + drainMargin
		r.log.Info("stopping", "drain_bound", bound.String())
		select {
		case err = <-partsDone:
		case <-time.After(bound):
			err = fmt.Errorf("%w: parts still running %s after the stop began", ErrStopTimeout, bound)
		}
	}
	r.cancel()
	r.stopOps()
	if serr := r.servers.Wait(); err == nil {
		err = serr
	}
	r.mu.Lock()
	closers := r.closers
	r.closers = nil
	r.mu.Unlock()
	for i := len(closers) - 1; i >= 0; i-- {
		if cerr := closers[i].Close(); cerr != nil {
			r.log.Warn("close connection failed", "error", cerr)
		}
	}
	return err
}

// Dial makes a part's connection (the broker's) with dial and has the
// runtime close it at the end (Closer). Readiness stays ErrStarting while
// it dials. When the stop begins first, Dial returns ctx's error, which
// Wait takes for a clean stop; another failure is wrapped with what.
func Dial[C io.Closer](ctx context.Context, r *Runtime, what string, dial func(context.Context) (C, error)) (C, error) {
	c, err := dial(ctx)
	if err != nil {
		var zero C
		if ctx.Err() != nil {
			return zero, ctx.Err()
		}
		return zero, fmt.Errorf("connect to %s: %w", what, err)
	}
	r.Closer(c)
	return c, nil
}

// readyOnly is the Frontend of a service without an API.
type readyOnly ReadyFunc

func (f readyOnly) ServeHTTP(w http.ResponseWriter, _ *http.Request) { http.NotFound(w, nil) }
func (f readyOnly) Ready() error                                     { return f() }
