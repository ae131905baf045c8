// Package app wires the account-migrator: the broker connection, the
// tenants, the lifecycle engine with its consumers and reconcile loop,
// automatic migration, and the HTTP server with the API, /healthz, /readyz
// and /metrics.
package app

import (
	"context"
	"errors"
	"log/slog"

	"github.com/outposthq/outpost/libs/apispec"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

// ErrBrokerDown is reported by readiness while the broker connection is
// down.
var ErrBrokerDown = errors.New("broker connection is down")

// Run starts the account-migrator and blocks until ctx is cancelled and
// everything has shut down. The HTTP servers start first (liveness, and
// readiness false) while the broker connection is made.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	// Only the probes are served without a credential; /metrics is on the
	// ops listener.
	rt, err := service.Start(ctx, service.Options{
		Name:     "account-migrator",
		Log:      log,
		APIAddr:  cfg.Listen,
		APIPaths: []string{"/api/", "/armory/", "/agents/", "/credentials", "/credentials/", "GET " + apispec.Path},
		OpsAddr:  cfg.OpsListen,
		Grace:    cfg.ShutdownGrace,
		Drain:    cfg.ShutdownGrace,
	})
	if err != nil {
		return err
	}
	rt.Go(func(ctx context.Context) error {
		// The migrator runs on JetStream alone (config refuses SQS).
		c, err := service.Dial(ctx, rt, "broker", func(ctx context.Context) (*backend.Backend, error) {
			return backend.Open(ctx, cfg.Settings, backend.Options{Registerer: rt.Registry(), Logger: log})
		})
		if err != nil {
			return err
		}
		m, err := New(ctx, cfg, log, c.JetStream(), rt.Registry(), WithBrokerReady(c.Ready))
		if err != nil {
			return err
		}
		rt.Set(m)
		log.Info("account-migrator started", "listen", cfg.Listen, "tenants", cfg.Tenants)
		return m.Run(ctx)
	})
	return rt.Wait()
}
