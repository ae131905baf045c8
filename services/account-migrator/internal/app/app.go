// Package app wires the account-migrator: the broker connection, the
// tenants, the lifecycle engine with its consumers and reconcile loop,
// automatic migration, and the HTTP server with the API, /healthz, /readyz
// and /metrics.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"golang.org/x/sync/errgroup"

	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

// ErrBrokerDown is reported by readiness while the broker connection is
// down.
var ErrBrokerDown = errors.New("broker connection is down")

// Run starts the account-migrator and blocks until ctx is cancelled and
// everything has shut down. The HTTP server starts first (liveness, and
// readiness false) while the broker connection is made.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	ln, err := service.Listen(cfg.Listen)
	if err != nil {
		return err
	}
	reg := service.NewRegistry()
	front := service.NewDeferred("account-migrator")
	mux := http.NewServeMux()
	mux.Handle("/api/", front)
	mux.Handle("/armory/", front)
	mux.Handle("/agents/", front)
	// Only the probes are served without a credential; /metrics is on the
	// ops listener.
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.Handle("GET /readyz", service.OpsHandler(nil, reg, front.Ready))
	srv := service.NewHTTPServer(mux)

	var conn *backend.Backend
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return service.Serve(gctx, log, srv, ln, cfg.ShutdownGrace) })
	if cfg.OpsListen != "" {
		opsLn, err := service.Listen(cfg.OpsListen)
		if err != nil {
			_ = ln.Close()
			return err
		}
		ops := service.NewHTTPServer(service.OpsHandler(nil, reg, front.Ready))
		g.Go(func() error { return service.Serve(gctx, log, ops, opsLn, cfg.ShutdownGrace) })
	}
	g.Go(func() error {
		// The migrator runs on JetStream alone (config refuses SQS).
		c, err := backend.Open(gctx, cfg.Settings, backend.Options{Registerer: reg, Logger: log})
		if err != nil {
			if gctx.Err() != nil {
				return nil // shut down while connecting
			}
			return fmt.Errorf("connect to broker: %w", err)
		}
		conn = c
		m, err := New(gctx, cfg, log, c.JetStream(), reg, WithBrokerReady(c.Ready))
		if err != nil {
			return err
		}
		front.Set(m)
		log.Info("account-migrator started", "listen", ln.Addr().String(), "tenants", cfg.Tenants)
		return m.Run(gctx)
	})
	err = g.Wait()
	if conn != nil {
		if cerr := conn.Close(); cerr != nil {
			log.Warn("close broker connection failed", "error", cerr)
		}
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("account-migrator stopped")
	return err
}
