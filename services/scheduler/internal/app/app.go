// Package app wires the scheduler: the broker connection, the tenants, the
// engine's consumers and the HTTP server with the API, /healthz, /readyz and
// /metrics.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/services/scheduler/internal/api"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
	"github.com/outposthq/outpost/services/scheduler/internal/dispatch"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/metrics"
	"github.com/outposthq/outpost/services/scheduler/internal/presence"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// ErrBrokerDown is reported by readiness while the broker connection is
// down.
var ErrBrokerDown = errors.New("broker connection is down")

// errConnecting is reported by readiness before the broker is connected.
var errConnecting = errors.New("connecting to the broker")

// Run runs the scheduler until ctx is done. The HTTP server starts first
// (liveness, and readiness false) while the broker connection is made.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	ln, err := service.Listen(cfg.Listen)
	if err != nil {
		return err
	}
	reg := service.NewRegistry()
	var sched atomic.Pointer[Scheduler]
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		if s := sched.Load(); s != nil {
			s.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte(`{"error":"the scheduler is starting: not connected to the broker yet"}` + "\n"))
	})
	service.OpsHandler(mux, reg, func() error {
		if s := sched.Load(); s != nil {
			return s.Ready()
		}
		return errConnecting
	})
	srv := service.NewHTTPServer(mux)
	srv.RegisterOnShutdown(func() {
		if s := sched.Load(); s != nil {
			s.api.Stop()
		}
	})

	// conn is set by the broker goroutine and closed once both goroutines
	// have returned: requests in flight (log follows draining) still read.
	var conn *natsjs.Conn
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return service.Serve(gctx, log, srv, ln, cfg.ShutdownGrace) })
	g.Go(func() error {
		c, err := natsjs.Connect(gctx, natsjs.Config{
			URL:    cfg.Broker.URL,
			Stack:  cfg.Broker.Stack,
			Layout: natsjs.Layout(cfg.Broker.Layout),
			Name:   cfg.Broker.Name,
			Logger: log,
		})
		if err != nil {
			if gctx.Err() != nil {
				return nil // shut down while connecting
			}
			return fmt.Errorf("connect to broker: %w", err)
		}
		conn = c
		s := New(cfg, log, c, c, reg, func() error {
			if !c.Ready() {
				return fmt.Errorf("%w: %s", ErrBrokerDown, c.Status())
			}
			return nil
		})
		sched.Store(s)
		return s.Run(gctx)
	})
	err = g.Wait()
	if conn != nil {
		if cerr := conn.Close(); cerr != nil {
			log.Warn("close broker connection failed", "error", cerr)
		}
	}
	return err
}

// Scheduler is the scheduler's API and engine over one broker connection.
type Scheduler struct {
	cfg         config.Config
	registry    *tenants.Registry
	api         *api.API
	mux         *http.ServeMux
	brokerReady func() error
}

// New assembles a scheduler over broker and opener and registers its
// metrics on reg. brokerReady reports the connection's health.
func New(cfg config.Config, log *slog.Logger, broker queue.Broker, opener kv.Opener, reg prometheus.Registerer, brokerReady func() error) *Scheduler {
	m := metrics.New(reg)
	subjects := queue.NewSubjects(cfg.Broker.Stack)
	policy := jobs.Policy{
		MaxAttempts:    cfg.Jobs.Retry.MaxAttempts,
		InitialBackoff: cfg.Jobs.Retry.InitialBackoff,
		MaxBackoff:     cfg.Jobs.Retry.MaxBackoff,
		Multiplier:     cfg.Jobs.Retry.Multiplier,
		DefaultTimeout: cfg.Jobs.DefaultTimeout,
		MaxTimeout:     cfg.Jobs.MaxTimeout,
		AttemptsLimit:  cfg.Jobs.MaxAttempts,
	}
	engine := dispatch.New(broker, dispatch.Options{
		Subjects:     subjects,
		Policy:       policy,
		HistoryLimit: cfg.Jobs.HistoryLimit,
		StatusBatch:  cfg.Jobs.StatusBatch,
		Metrics:      m,
		Logger:       log.With("component", "engine"),
	})
	registry := tenants.NewRegistry(tenants.Options{
		Configured:      cfg.Tenants.Names,
		Limits:          cfg.Tenants.Limits,
		RefreshInterval: cfg.Tenants.RefreshInterval,
		PresenceWindow:  cfg.Runners.PresenceWindow,
		Logger:          log.With("component", "tenants"),
	}, broker, opener, engine.Start)
	reg.MustRegister(presence.NewCollector(registry.Trackers))
	a := api.New(engine, registry, broker, api.Options{
		DefaultTenant:   cfg.Tenants.Default,
		MaxRequestBytes: cfg.API.MaxRequestBytes,
		SubmitWait:      cfg.API.SubmitWait,
		ListLimit:       cfg.API.ListLimit,
		MaxListLimit:    cfg.API.MaxListLimit,
		Policy:          policy,
		Subjects:        subjects,
		Logger:          log.With("component", "api"),
	})
	mux := http.NewServeMux()
	a.Register(mux)
	return &Scheduler{cfg: cfg, registry: registry, api: a, mux: mux, brokerReady: brokerReady}
}

// ServeHTTP serves the API.
func (s *Scheduler) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Ready reports nil once the broker connection works and the tenants are
// provisioned.
func (s *Scheduler) Ready() error {
	if s.brokerReady != nil {
		if err := s.brokerReady(); err != nil {
			return err
		}
	}
	return s.registry.Ready()
}

// Run provisions the tenants and runs their consumers until ctx is done,
// then stops them within the shutdown grace.
func (s *Scheduler) Run(ctx context.Context) error {
	return s.registry.Run(ctx, s.cfg.ShutdownGrace)
}
