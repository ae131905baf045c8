// Package app wires the k8s-watcher: the operations server, the outbound
// queue connection and the agent that holds account leases, run until the
// context ends.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

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
		return err // wraps service.ErrConfig (libs/config's ErrInvalid)
	}
	// A watcher that could not verify leases and operations refuses to
	// start, before it connects to anything.
	verifier, err := cfg.Signing.Verifier()
	if err != nil {
		return fmt.Errorf("%w: %w", service.ErrConfig, err)
	}
	if verifier == nil {
		log.Warn("no trusted signing key: unsigned leases and operations will be used (signing.allow_unsigned, for development only)")
	}
	// Health answers while the broker is still being dialled (the watcher
	// may start before the network to the control plane is up).
	rt, err := service.Start(ctx, service.Options{
		Name:    "k8s-watcher",
		Log:     log,
		OpsAddr: cfg.OpsAddr,
		Grace:   cfg.ShutdownGrace,
		// Leases are handed back within the shutdown grace.
		Drain: cfg.ShutdownGrace,
	})
	if err != nil {
		return err
	}
	m := metrics.New(rt.Registry())
	rt.Go(func(ctx context.Context) error {
		// The watcher runs on JetStream alone (config refuses SQS), in
		// the layout its credentials were issued for. Leases are given
		// back (the agent returns) before the broker connection closes.
		conn, err := service.Dial(ctx, rt, "broker", func(ctx context.Context) (*backend.Backend, error) {
			return backend.Open(ctx, cfg.Settings, backend.Options{Logger: log})
		})
		if err != nil {
			return err
		}
		rt.SetReady(func() error {
			if err := conn.Ready(); err != nil {
				return fmt.Errorf("%w: %w", ErrBrokerDown, err)
			}
			return nil
		})
		log.Info("Starting outpost k8s watcher", "ops_addr", cfg.OpsAddr)
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
	return rt.Wait()
}
