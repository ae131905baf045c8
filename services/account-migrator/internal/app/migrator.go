package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/instances"
	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
	"github.com/outposthq/outpost/services/account-migrator/internal/api"
	"github.com/outposthq/outpost/services/account-migrator/internal/automigrate"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
	"github.com/outposthq/outpost/services/account-migrator/internal/engine"
	"github.com/outposthq/outpost/services/account-migrator/internal/metrics"
	"github.com/outposthq/outpost/services/account-migrator/internal/objects"
	"github.com/outposthq/outpost/services/account-migrator/internal/operations"
)

// AccountsBucket is the KV bucket of account records.
const AccountsBucket = "accounts"

// provisionRetry is the pause between attempts to provision the tenants.
const provisionRetry = time.Second

// Broker is what the migrator needs of the broker: JetStream's queue, the
// last message and the purge of a subject (the watch inventory is a
// compacted stream) and its KV stores (accounts, operations, API keys).
type Broker interface {
	queue.Broker
	queue.LastReader
	queue.Purger
	kv.Opener
}

// Option adds to what New wires.
type Option func(*Migrator)

// WithBrokerReady makes Ready report the broker connection's health, as
// ready says it (nil while it works).
func WithBrokerReady(ready func() error) Option {
	return func(m *Migrator) { m.brokerReady = ready }
}

// Migrator is the account-migrator over one broker connection.
type Migrator struct {
	cfg         config.Config
	log         *slog.Logger
	conn        Broker
	brokerReady func() error
	engine      *engine.Engine
	ops         *operations.Service
	auto        *automigrate.Migrator
	mux         *http.ServeMux
	keys        *auth.Keys
	rules       []auth.Rule
	// beat publishes this replica's heartbeats; peers lists every live
	// control-plane replica from theirs.
	beat  *instances.Heartbeater
	peers *instances.Tracker

	provisioned atomic.Bool
}

// New assembles a migrator over conn and registers its metrics on reg. It
// opens the KV buckets; tenants are provisioned by Run.
func New(ctx context.Context, cfg config.Config, log *slog.Logger, conn Broker, reg prometheus.Registerer, opts ...Option) (*Migrator, error) {
	keyring, err := cfg.Keyring()
	if err != nil {
		return nil, err
	}
	sealer := accounts.NewSealer(keyring)
	// Watchers act only on signed leases and operations: without its key
	// the migrator refuses to start.
	signer, err := cfg.Signing.Signer()
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	accStore, err := conn.OpenStore(ctx, AccountsBucket)
	if err != nil {
		return nil, fmt.Errorf("open accounts bucket: %w", err)
	}
	opStore, err := conn.OpenStore(ctx, operations.Bucket)
	if err != nil {
		return nil, fmt.Errorf("open operations bucket: %w", err)
	}
	m := metrics.New(reg)
	subjects := queue.NewSubjects(cfg.Broker.Stack)
	eng := engine.New(conn, accStore, engine.Options{
		Subjects: subjects,
		Policy: accounts.Policy{
			MaxRetries:        cfg.MaxRetries,
			RetryFrequency:    cfg.RetryEvery(),
			ActivationTimeout: cfg.ActivationTimeout,
			DeactivateTimeout: cfg.DeactivateTimeout,
		},
		ReconcileInterval:  cfg.ReconcileInterval,
		ChecksumMismatches: cfg.ChecksumMismatches,
		PresenceWindow:     cfg.PresenceWindow,
		MaxDeliveries:      cfg.MaxDeliveries,
		Sealer:             sealer,
		Signer:             signer.WithTTL(cfg.Signing.LeaseTTL),
		Metrics:            m,
		Logger:             log.With("component", "engine"),
	})
	ops := operations.New(conn, opStore, subjects, cfg.MaxDeliveries, m, log.With("component", "operations")).WithSigner(signer)
	mig := &Migrator{cfg: cfg, log: log, conn: conn, engine: eng, ops: ops, mux: http.NewServeMux()}
	for _, o := range opts {
		o(mig)
	}
	if a := cfg.AutoMigration; a.Enabled && (a.Directory != "" || a.Secrets.Namespace != "") {
		src, err := source(a)
		if err != nil {
			return nil, err
		}
		pattern, err := regexp.Compile(a.Pattern)
		if err != nil {
			return nil, fmt.Errorf("auto_migration.pattern: %w", err)
		}
		mig.auto = automigrate.New(src, eng, automigrate.Options{
			Tenant:   cfg.AutoTenant(),
			Pattern:  pattern,
			ZoneID:   a.ZoneID,
			Interval: a.Interval,
			Logger:   log.With("component", "automigrate"),
		})
	}
	// The keys are the scheduler's: the same bucket, read on every request,
	// so a key revoked there is refused here at once.
	// Audit events go to the tenant's audit subject, read back by the
	// scheduler's GET /api/v1/audit.
	audit := auth.NewAuditor(auth.QueueAudit(conn, subjects, "account-migrator"), log.With("component", "audit"))
	guard, keys, err := cfg.Auth.NewGuard(conn, cfg.DefaultTenant, audit, log.With("component", "auth"))
	if err != nil {
		return nil, err
	}
	mig.keys = keys
	mig.newInstances()
	router := guard.Router(mig.mux)
	mig.registerInstances(router)
	mig.registerCredentials(router)
	api.New(eng, objects.NewReader(conn, subjects, log.With("component", "objects")), ops, mig, api.Options{
		DefaultTenant:    cfg.DefaultTenant,
		MaxRequestBytes:  cfg.MaxRequestBytes,
		MaxOperationWait: cfg.MaxOperationWait,
		Logger:           log.With("component", "api"),
	}).Register(router)
	mig.rules = router.Rules()
	return mig, nil
}

func source(a config.AutoMigration) (automigrate.Source, error) {
	if a.Directory != "" {
		return automigrate.Dir{Path: a.Directory}, nil
	}
	return automigrate.NewSecrets(a.Secrets.Kubeconfig, a.Secrets.Namespace, a.Secrets.LabelSelector, a.Secrets.Key)
}

// Engine is the lifecycle engine (for tests).
func (m *Migrator) Engine() *engine.Engine { return m.engine }

// ServeHTTP serves the API.
func (m *Migrator) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.mux.ServeHTTP(w, r) }

// Known reports whether name is a configured tenant (api.Tenants).
func (m *Migrator) Known(name string) bool { return slices.Contains(m.cfg.Tenants, name) }

// Ready reports nil once the broker connection works and the tenants are
// provisioned.
func (m *Migrator) Ready() error {
	if m.brokerReady != nil {
		if err := m.brokerReady(); err != nil {
			return fmt.Errorf("%w: %w", ErrBrokerDown, err)
		}
	}
	if !m.provisioned.Load() {
		return errors.New("tenants are not provisioned yet")
	}
	return nil
}

// Rules returns the access rule of every API route.
func (m *Migrator) Rules() []auth.Rule { return m.rules }

// Run provisions the tenants, starts their consumers, the reconcile loop
// and automatic migration, and runs until ctx is done; consumers are then
// stopped within the shutdown grace.
func (m *Migrator) Run(ctx context.Context) error {
	if f := m.cfg.Auth.BootstrapKeyFile; f != "" {
		// For a migrator run on its own (tests, local use); with the
		// scheduler the same file names the key it wrote.
		if err := auth.Bootstrap(ctx, m.keys, f, m.cfg.Tenants, m.log.With("component", "auth")); err != nil {
			return err
		}
	}
	if m.provision(ctx) != nil {
		return nil // only the end of ctx stops provisioning
	}
	var (
		mu    sync.Mutex
		stops []func(context.Context) error
	)
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.ShutdownGrace)
		defer cancel()
		mu.Lock()
		defer mu.Unlock()
		for _, stop := range stops {
			if err := stop(sctx); err != nil {
				m.log.Warn("stop consumers failed", "error", err)
			}
		}
	}()
	for _, t := range m.cfg.Tenants {
		stop, err := m.engine.StartTenant(ctx, t)
		if err != nil {
			return fmt.Errorf("start tenant %q: %w", t, err)
		}
		cons, err := m.ops.Start(ctx, m.conn, t)
		if err != nil {
			_ = stop(context.WithoutCancel(ctx))
			return fmt.Errorf("start tenant %q: %w", t, err)
		}
		mu.Lock()
		stops = append(stops, stop, cons.Stop)
		mu.Unlock()
	}
	m.provisioned.Store(true)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.engine.Reconcile(gctx, m.cfg.Tenants) })
	if m.auto != nil {
		g.Go(func() error { return m.auto.Run(gctx) })
	}
	for _, f := range m.runInstances(gctx) {
		g.Go(f)
	}
	return g.Wait()
}

// provision ensures every tenant's streams, retrying until it works or ctx
// is done.
func (m *Migrator) provision(ctx context.Context) error {
	for _, t := range m.cfg.Tenants {
		for {
			err := m.conn.EnsureTenant(ctx, t, queue.TenantLimits{})
			if err == nil {
				break
			}
			m.log.Warn("provision tenant failed; retrying", "tenant", t, "error", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(provisionRetry):
			}
		}
	}
	return nil
}
