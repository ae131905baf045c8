// Package app wires the k8s-watcher: the operations server and the outbound
// queue connection, run until the context ends.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/config"
)

// Run starts the watcher and blocks until ctx is cancelled and everything
// has shut down.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	log = log.With("tenant", cfg.Tenant, "zone", cfg.Zone)
	ln, err := service.Listen(cfg.OpsAddr)
	if err != nil {
		return err
	}
	// Health answers while the broker is still being dialled (the watcher
	// may start before the network to the control plane is up).
	var ready service.ReadyGate
	srv := service.NewHTTPServer(service.OpsHandler(nil, service.NewRegistry(), ready.Check))

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return service.Serve(ctx, log, srv, ln, cfg.ShutdownGrace) })
	g.Go(func() error {
		conn, err := natsjs.Connect(ctx, natsjs.Config{URL: cfg.Broker.URL, Stack: cfg.Broker.Stack, Name: "k8s-watcher", Logger: log})
		if err != nil {
			return fmt.Errorf("connect to broker: %w", err)
		}
		defer conn.Close()
		ready.Set(func() error {
			if !conn.Ready() {
				return errors.New("queue connection is down: " + conn.Status())
			}
			return nil
		})
		log.Info("Starting outpost k8s watcher", "ops_addr", ln.Addr().String())
		<-ctx.Done()
		return nil
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("k8s watcher stopped")
	return err
}
