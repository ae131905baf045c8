// Package app wires the k8s-watcher: the operations server, the outbound
// queue connection and the agent that holds account leases, run until the
// context ends.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"golang.org/x/sync/errgroup"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/agent"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/cluster"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/config"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/metrics"
)

// ErrBrokerDown is reported by readiness while the broker connection is
// down.
var ErrBrokerDown = errors.New("queue connection is down")

// Run starts the watcher and blocks until ctx is cancelled and everything
// has shut down: leases are given back before the broker connection
// closes.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	log = log.With("tenant", cfg.Tenant, "zone", cfg.Zone, "watcher_id", cfg.WatcherID)
	keys, err := cfg.Keyring()
	if err != nil {
		return err
	}
	// A watcher that could not verify leases and operations refuses to
	// start, before it connects to anything.
	verifier, err := cfg.Signing.Verifier()
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	if verifier == nil {
		log.Warn("no trusted signing key: unsigned leases and operations will be used (signing.allow_unsigned, for development only)")
	}
	ln, err := service.Listen(cfg.OpsAddr)
	if err != nil {
		return err
	}
	// Health answers while the broker is still being dialled (the watcher
	// may start before the network to the control plane is up).
	var ready service.ReadyGate
	reg := service.NewRegistry()
	m := metrics.New(reg)
	srv := service.NewHTTPServer(service.OpsHandler(nil, reg, ready.Check))

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return service.Serve(ctx, log, srv, ln, cfg.ShutdownGrace) })
	g.Go(func() error {
		// The watcher runs on JetStream alone (config refuses SQS), in
		// the layout its credentials were issued for.
		conn, err := backend.Open(ctx, cfg.Settings, backend.Options{Logger: log})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("connect to broker: %w", err)
		}
		defer conn.Close()
		ready.Set(func() error {
			if err := conn.Ready(); err != nil {
				return fmt.Errorf("%w: %w", ErrBrokerDown, err)
			}
			return nil
		})
		log.Info("Starting outpost k8s watcher", "ops_addr", ln.Addr().String())
		a := agent.New(agent.Config{
			Tenant: cfg.Tenant, Zone: cfg.Zone, WatcherID: cfg.WatcherID,
			Subjects:          queue.NewSubjects(cfg.Broker.Stack),
			LeaseAckWait:      cfg.LeaseAckWait,
			HeartbeatInterval: cfg.HeartbeatInterval,
			ChecksumInterval:  cfg.ChecksumInterval,
			SyncTimeout:       cfg.SyncTimeout,
			ShutdownGrace:     cfg.ShutdownGrace,
			MaxAccounts:       cfg.MaxAccounts,
			PublishWorkers:    cfg.PublishWorkers,
			Verifier:          verifier,
			Resolver: &cluster.Resolver{
				OwnKubeconfig: cfg.Kubeconfig, Keys: keys, Tenant: cfg.Tenant, Timeout: cfg.ClusterTimeout, Log: log.With("component", "client-go"),
				KubeconfigDir: cfg.KubeconfigDir, SecretNamespaces: cfg.SecretNamespaces, AllowServiceAccount: cfg.AllowServiceAccount,
			},
		}, conn.JetStream(), log, m)
		return a.Run(ctx)
	})
	err = g.Wait()
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	log.Info("k8s watcher stopped")
	return err
}
