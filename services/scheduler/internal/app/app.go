// Package app wires the scheduler: the broker connection (JetStream, plus
// SQS when queue.kind is sqs), the tenants, the engine's consumers (and,
// with SQS, the bridge that copies logs and heartbeats into JetStream) and
// the HTTP server with the API, /healthz, /readyz and /metrics.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/libs/apispec"
	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/instances"
	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/service"
	"github.com/outposthq/outpost/libs/signing"
	"github.com/outposthq/outpost/services/scheduler/internal/agents"
	"github.com/outposthq/outpost/services/scheduler/internal/api"
	"github.com/outposthq/outpost/services/scheduler/internal/bridge"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
	"github.com/outposthq/outpost/services/scheduler/internal/console"
	"github.com/outposthq/outpost/services/scheduler/internal/deadletters"
	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/dispatch"
	"github.com/outposthq/outpost/services/scheduler/internal/fleet"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/metrics"
	"github.com/outposthq/outpost/services/scheduler/internal/presence"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// ErrBrokerDown is reported by readiness while the broker connection is
// down.
var ErrBrokerDown = errors.New("broker connection is down")

// Run runs the scheduler until ctx is done. The HTTP servers start first
// (liveness, and readiness false) while the broker connection is made.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	// Without its signing key the scheduler could dispatch nothing a
	// runner would run: it refuses to start.
	signer, err := cfg.Signing.Signer()
	if err != nil {
		return fmt.Errorf("%w: %w", service.ErrConfig, err)
	}
	log.Info("scheduler starting", "listen", cfg.Listen, "broker", backend.RedactURL(cfg.Broker.URL), "queue", string(cfg.Queue.Kind), "stack", cfg.Broker.Stack, "tenants", cfg.Tenants.Names)
	log.Info("signing jobs", "key_id", signer.KeyID(), "ttl", cfg.Signing.TTL)
	// The API listener serves only the probes without a credential;
	// /metrics (every tenant's numbers) is on the ops listener.
	rt, err := service.Start(ctx, service.Options{
		Name:    "scheduler",
		Log:     log,
		APIAddr: cfg.Listen,
		// "/" is the web console (package console); it is off with
		// console.disabled.
		APIPaths: []string{"/api/", "GET " + apispec.Path, "/"},
		OpsAddr:  cfg.OpsListen,
		Grace:    cfg.ShutdownGrace,
		Drain:    cfg.ShutdownGrace,
	})
	if err != nil {
		return err
	}
	rt.Go(func(ctx context.Context) error {
		// JetStream is needed with either backend: the records (KV) and
		// the history of logs and heartbeats stay there. The connection is
		// closed once the servers have stopped: requests in flight (log
		// follows draining) still read.
		b, err := service.Dial(ctx, rt, "broker", func(ctx context.Context) (*backend.Backend, error) {
			return backend.Open(ctx, cfg.Settings, backend.Options{
				History:    true,
				Registerer: rt.Registry(),
				Logger:     log,
			})
		})
		if err != nil {
			return err
		}
		opts := []Option{WithSigner(signer)}
		if q := b.Queues(); q != nil {
			opts = append(opts, WithSQS(q, b.JetStream()))
		}
		s := New(cfg, log, b.Broker, b.JetStream(), rt.Registry(), func() error {
			if err := b.Ready(); err != nil {
				return fmt.Errorf("%w: %w", ErrBrokerDown, err)
			}
			return nil
		}, opts...)
		rt.Set(s)
		return s.Run(ctx)
	})
	return rt.Wait()
}

// sqsSubmitConcurrency is the submit consumer's concurrency on SQS.
const sqsSubmitConcurrency = 64

// Option adds to what New wires.
type Option func(*wiring)

type wiring struct {
	sqs     WorkQueues
	history queue.Publisher
	signer  *signing.Signer
	routes  []func(*auth.Router)
}

// WithRoutes lets another part of the scheduler add its routes to the
// API, each with the role it needs (the guard applies to them as to all).
func WithRoutes(register func(*auth.Router)) Option {
	return func(w *wiring) { w.routes = append(w.routes, register) }
}

// WorkQueues is what the scheduler needs of the SQS backend beside the
// broker: the bridge consumes from it, and each pool's queues are made
// before its first job.
type WorkQueues interface {
	queue.Subscriber
	queue.QueueEnsurer
}

// WithSQS wires the scheduler for the SQS backend (broker publishes and
// consumes on sb): the bridge that copies the tenants' logs and heartbeats
// from sb into history, and the creation of each pool's queues before its
// first job (a runner may send heartbeats to its pool's runners queue but
// not create it).
func WithSQS(sb WorkQueues, history queue.Publisher) Option {
	return func(w *wiring) { w.sqs, w.history = sb, history }
}

// WithSigner makes the scheduler sign every JobDispatched with s.
func WithSigner(s *signing.Signer) Option {
	return func(w *wiring) { w.signer = s }
}

// withBridge starts br for a tenant before start's consumers, and stops it
// after them.
func withBridge(start tenants.Starter, br *bridge.Bridge) tenants.Starter {
	return func(ctx context.Context, t *tenants.Tenant) (func(context.Context) error, error) {
		stopBridge, err := br.Start(ctx, t.Name)
		if err != nil {
			return nil, err
		}
		stopEngine, err := start(ctx, t)
		if err != nil {
			_ = stopBridge(context.WithoutCancel(ctx))
			return nil, err
		}
		return func(sctx context.Context) error { return errors.Join(stopEngine(sctx), stopBridge(sctx)) }, nil
	}
}

// Scheduler is the scheduler's API and engine over one broker connection.
type Scheduler struct {
	cfg         config.Config
	registry    *tenants.Registry
	api         *api.API
	mux         *http.ServeMux
	keys        *auth.Keys
	rules       []auth.Rule
	log         *slog.Logger
	brokerReady func() error
	// beat publishes this replica's heartbeat (instances).
	beat *instances.Heartbeater
	// console is the web console at / (nil when disabled).
	console *console.Console
}

// New assembles a scheduler over broker and opener and registers its
// metrics on reg. brokerReady reports the connection's health.
func New(cfg config.Config, log *slog.Logger, broker queue.Broker, opener kv.Opener, reg prometheus.Registerer, brokerReady func() error, opts ...Option) *Scheduler {
	var w wiring
	for _, o := range opts {
		o(&w)
	}
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
	dopts := dispatch.Options{
		Subjects:     subjects,
		Policy:       policy,
		HistoryLimit: cfg.Jobs.HistoryLimit,
		StatusBatch:  cfg.Jobs.StatusBatch,
		// Every consumer is bounded: a message that decodes but keeps
		// failing is dead-lettered with its reason, listed by the API.
		MaxDeliveries: cfg.Consumers.MaxDeliveries,
		LostAfter:     cfg.Runners.LostAfter,
		Retention:     cfg.Jobs.Retention,
		// Short attempts report their start with their outcome.
		RunningReportDelay: cfg.Runners.RunningReportDelay,
		// A busy runner's short jobs' outcomes share a message.
		StatusBatchMax: cfg.Runners.StatusBatchMax,
		DirectSubmit:   cfg.API.DirectSubmit,
		DirectGrace:    cfg.API.DirectGrace,
		Metrics:        m,
		Logger:         log.With("component", "engine"),
		Signer:         w.signer,
	}
	if w.sqs != nil {
		sb := w.sqs
		dopts.EnsurePool = func(ctx context.Context, tenant, pool string) error {
			return sb.EnsureQueues(ctx, subjects.Jobs(tenant, pool), subjects.Runners(tenant, pool))
		}
		// A submission waits for its dispatch's send and its own delete,
		// each batched after a linger: more of them at once keep the
		// batches full and the queue moving.
		dopts.SubmitConcurrency = sqsSubmitConcurrency
	}
	engine := dispatch.New(broker, dopts)
	start := engine.Start
	if w.sqs != nil {
		start = withBridge(start, bridge.New(w.sqs, w.history, bridge.Options{
			Subjects:      subjects,
			MaxDeliveries: cfg.Consumers.MaxDeliveries,
			Metrics:       m,
			Logger:        log.With("component", "bridge"),
		}))
	}
	registry := tenants.NewRegistry(tenants.Options{
		Configured:      cfg.Tenants.Names,
		Limits:          cfg.Tenants.Limits,
		RefreshInterval: cfg.Tenants.RefreshInterval,
		PresenceWindow:  cfg.Runners.PresenceWindow,
		Logger:          log.With("component", "tenants"),
	}, broker, opener, start)
	reg.MustRegister(presence.NewCollector(registry.Trackers))
	// The pool metrics and GET /api/v1/pools read the records they need
	// through one tracker: each reads what was written since either.
	poolViews := fleet.NewTracker()
	reg.MustRegister(fleet.NewCollector(registry.Tenants, poolViews, log.With("component", "fleet")))
	// Dead letters are listed from the queue backend's dead-letter
	// streams (JetStream); SQS keeps none once consumed: 501.
	dlStore, _ := broker.(queue.DeadLetterStore)
	dls := deadletters.New(dlStore, broker, opener, cfg.Broker.Stack, m, log.With("component", "deadletters"))
	// Every replica of the scheduler and the account-migrator reads the
	// same keys bucket: a key revoked on one is refused by all at once.
	// Audit events go to the tenant's audit subject on JetStream (the
	// record store's connection, whatever the queue backend).
	var publish auth.Publish
	auditReader, _ := opener.(api.LogReader)
	if p, ok := opener.(auth.Publisher); ok {
		publish = auth.QueueAudit(p, subjects, "scheduler")
	}
	audit := auth.NewAuditor(publish, log.With("component", "audit"))
	guard, keys, err := cfg.Auth.NewGuard(opener, cfg.Tenants.Default, audit, log.With("component", "auth"))
	if err != nil {
		// Validate checked the same configuration.
		panic(fmt.Sprintf("scheduler: auth configuration: %v", err))
	}
	a := api.New(engine, registry, broker, api.Options{
		DefaultTenant:   cfg.Tenants.Default,
		MaxRequestBytes: cfg.API.MaxRequestBytes,
		SubmitWait:      cfg.API.SubmitWait,
		ListLimit:       cfg.API.ListLimit,
		MaxListLimit:    cfg.API.MaxListLimit,
		Policy:          policy,
		Subjects:        subjects,
		DeadLetters:     dls,
		Keys:            keys,
		Audit:           audit,
		AuditReader:     auditReader,
		Fleet:           poolViews,
		Logger:          log.With("component", "api"),
	})
	mux := http.NewServeMux()
	router := guard.Router(mux)
	for _, f := range w.routes {
		f(router)
	}
	// The directory (users, teams, projects, environments, deployments)
	// resolves its tenant as every other route does; each route carries
	// its role.
	dir := directory.NewAPI(func(w http.ResponseWriter, r *http.Request) (*directory.Store, bool) {
		t, ok := a.Tenant(w, r)
		if !ok {
			return nil, false
		}
		return t.Directory, true
	}, directory.APIOptions{MaxRequestBytes: cfg.API.MaxRequestBytes, Logger: log.With("component", "directory")})
	directory.Register(router, dir.Routes())
	registerAgents(router, cfg, log)
	a.Register(router)
	s := &Scheduler{cfg: cfg, registry: registry, api: a, mux: mux, keys: keys, rules: router.Rules(), log: log, brokerReady: brokerReady}
	s.console = newConsole(cfg, guard, mux, log)
	return s.withHeartbeat(opener)
}

// StopStreams ends the API's long-lived responses (log follows) and the
// console's live pages when the API server shuts down.
func (s *Scheduler) StopStreams() {
	s.api.Stop()
	if s.console != nil {
		s.console.Stop()
	}
}

// newConsole serves the web console at / of mux (nil when disabled). Its
// routes are guarded by the API's guard on a router of their own: they
// are not API routes (Rules), but are refused by role the same way.
func newConsole(cfg config.Config, guard *auth.Guard, mux *http.ServeMux, log *slog.Logger) *console.Console {
	if cfg.Console.Disabled {
		return nil
	}
	c, err := console.New(console.Options{Config: cfg.Console, API: mux, Guard: guard, Logger: log.With("component", "console")})
	if err != nil {
		// Validate checked the configuration; a session key file that
		// cannot be read leaves the API up without the console.
		log.Error("console not served", "error", err)
		return nil
	}
	mux.Handle("/", c)
	return c
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

// Rules returns the access rule of every API route.
func (s *Scheduler) Rules() []auth.Rule { return s.rules }

// Run writes the bootstrap key when it is configured and missing, then
// provisions the tenants and runs their consumers until ctx is done, and
// stops them within the shutdown grace.
func (s *Scheduler) Run(ctx context.Context) error {
	if f := s.cfg.Auth.BootstrapKeyFile; f != "" {
		if err := auth.Bootstrap(ctx, s.keys, f, s.cfg.Tenants.Names, s.log.With("component", "auth")); err != nil {
			return err
		}
	}
	return s.runBeating(ctx, func(ctx context.Context) error { return s.registry.Run(ctx, s.cfg.ShutdownGrace) })
}

// registerAgents serves the agents routes when the scheduler holds the
// broker's authority (agents.auth_dir). The routes require an admin of the
// agent's tenant (package agents).
func registerAgents(router *auth.Router, cfg config.Config, log *slog.Logger) {
	if cfg.Agents.AuthDir == "" {
		return
	}
	log = log.With("component", "agents")
	authority, err := natsauth.Open(cfg.Agents.AuthDir)
	if err != nil {
		log.Error("agents routes not served: broker authority unusable", "error", err)
		return
	}
	push := func(ctx context.Context) error {
		opts, err := cfg.Broker.TLS.Options()
		if err != nil {
			return err
		}
		return authority.PushTo(ctx, cfg.Broker.URL, opts...)
	}
	agents.New(authority, push, cfg.Broker.Stack, cfg.Broker.Layout, log).Register(router)
}
