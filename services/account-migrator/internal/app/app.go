// Package app wires the account-migrator: the HTTP server and the queue
// connection, run until the context ends.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

// Run starts the account-migrator and blocks until ctx is cancelled and
// everything has shut down.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	ln, err := service.Listen(cfg.Listen)
	if err != nil {
		return err
	}
	// The server answers /healthz while the broker is still being dialled;
	// /readyz turns ready once the queue connection works.
	var ready service.ReadyGate
	srv := service.NewHTTPServer(service.OpsHandler(nil, service.NewRegistry(), ready.Check))

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return service.Serve(ctx, log, srv, ln, cfg.ShutdownGrace) })
	g.Go(func() error {
		conn, err := natsjs.Connect(ctx, natsjs.Config{URL: cfg.Broker.URL, Stack: cfg.Broker.Stack, Name: "account-migrator", Logger: log})
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
		log.Info("account-migrator started", "listen", ln.Addr().String())
		<-ctx.Done()
		return nil
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("account-migrator stopped")
	return err
}
