// Package app wires the ingestion runner together: the operations server,
// the queue connection (JetStream or SQS, see libs/queue/backend), the task
// registry with its secret providers, and the runner.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/service"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/config"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/ingest"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/kubejob"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/logstream"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/policy"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/runner"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// ServiceName tags the runner's logs and its queue connection.
const ServiceName = "ingestion-runner"

// ErrNotConnected is what /readyz reports while the queue connection made
// at start is down (service.ErrStarting before it is made).
var ErrNotConnected = errors.New("queue not connected")

const (
	// opsShutdownGrace bounds in-flight /metrics scrapes at exit.
	opsShutdownGrace = 5 * time.Second
	// reportGrace is added to the command cancel grace for stopped jobs to
	// publish their status and logs during the drain.
	reportGrace = 15 * time.Second
	// retryJitter spreads retry delays by ±10%.
	retryJitter = 0.1
)

// Run runs the runner until ctx is done and it has drained. The operations
// server stays up until the end so the drain can be watched.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	// A runner that could not verify its work refuses to start, before it
	// connects to anything.
	if _, err := cfg.Signing.Verifier(); err != nil {
		return fmt.Errorf("%w: %w", service.ErrConfig, err)
	}
	rc := RunnerConfig(cfg)
	rt, err := service.Start(ctx, service.Options{
		Name:    ServiceName,
		Log:     log,
		OpsAddr: cfg.OpsAddr,
		Grace:   opsShutdownGrace,
		// Running jobs get the drain grace, then what is left is stopped
		// and reported within the stop grace.
		Drain: rc.DrainGrace + rc.StopGrace,
	})
	if err != nil {
		return err
	}
	metrics := runner.NewMetrics(rt.Registry())
	rt.Go(func(ctx context.Context) error {
		log.Info("connecting to queue", "queue", string(cfg.Queue.Kind), "stack", cfg.Broker.Stack)
		settings := cfg.Settings
		if settings.Broker.Name == "" {
			settings.Broker.Name = ServiceName + "/" + cfg.Tenant + "/" + cfg.Pool + "/" + cfg.RunnerID
		}
		c, err := service.Dial(ctx, rt, "queue", func(ctx context.Context) (*backend.Backend, error) {
			return backend.Open(ctx, settings, backend.Options{
				// The jobs queue's redrive policy (when this runner creates
				// the queue) matches the runner's own max deliveries.
				JobsMaxDeliveries: cfg.MaxDeliveries,
				Registerer:        rt.Registry(),
				Logger:            log,
			})
		})
		if err != nil {
			return err
		}
		r, err := New(cfg, c.Broker, queue.NewSubjects(cfg.Broker.Stack), log, metrics)
		if err != nil {
			return err
		}
		rt.SetReady(func() error {
			if err := c.Ready(); err != nil {
				return fmt.Errorf("%w: %w", ErrNotConnected, err)
			}
			return r.Ready()
		})
		return r.Run(ctx)
	})
	return rt.Wait()
}

// New builds a runner for cfg on broker. Tests use it with any queue.Broker.
func New(cfg config.Config, broker runner.Broker, subjects queue.Subjects, log *slog.Logger, metrics *runner.Metrics) (*runner.Runner, error) {
	providers, err := Providers(context.Background(), cfg.Secrets)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(providers))
	for i, p := range providers {
		names[i] = p.Name()
	}
	log.Info("secret providers", "providers", names, "cache_ttl", cfg.Secrets.CacheTTL)
	verifier, err := cfg.Signing.Verifier()
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	if verifier == nil {
		log.Warn("no trusted signing key: unsigned jobs will run (signing.allow_unsigned, for development only)")
	}
	reg := Tasks(cfg, broker, subjects, providers)
	if k := cfg.KubernetesJob; k.Enabled() {
		kt, err := KubernetesTask(cfg, providers)
		if err != nil {
			return nil, err
		}
		pol := cfg.RunnerPolicy()
		reg.Register("kubernetes", policy.Guard{Policy: pol, Kind: "kubernetes", Task: kt})
		log.Info("kubernetes task enabled", "namespace", k.Namespace, "default_service_account", k.DefaultServiceAccount)
	}
	rc := RunnerConfig(cfg)
	rc.Verifier = verifier
	return runner.New(rc, broker, subjects, reg, log, metrics), nil
}

// RunnerConfig maps the service configuration onto the runner's.
func RunnerConfig(cfg config.Config) runner.Config {
	return runner.Config{
		Tenant:            cfg.Tenant,
		Pool:              cfg.Pool,
		RunnerID:          cfg.RunnerID,
		Concurrency:       cfg.Concurrency,
		AckWait:           cfg.AckWait,
		MaxDeliveries:     cfg.MaxDeliveries,
		HeartbeatInterval: cfg.HeartbeatInterval,
		DrainGrace:        cfg.DrainGrace,
		StopGrace:         cfg.Command.CancelGrace + reportGrace,
		Logs: logstream.Limits{
			MaxLines: cfg.Logs.MaxLines,
			MaxBytes: cfg.Logs.MaxBytes,
			Interval: cfg.Logs.Interval,
		},
		MaxLineBytes: cfg.Command.MaxLineBytes,
		RetryJitter:  retryJitter,
	}
}

// Tasks is the registry of the task kinds this runner runs; pub carries
// the ingest and assertion tasks' records back, providers resolve ${NAME}.
// Every kind runs behind the runner's policy, which checks a job before
// any of its references is resolved; the resolver asks the policy again
// for each name, in case a reference was not seen by the check.
func Tasks(cfg config.Config, pub ingest.Publisher, subjects queue.Subjects, providers []secrets.Provider) *tasks.Registry {
	pol := cfg.RunnerPolicy()
	resolver := &secrets.Resolver{Providers: providers, Allow: pol.CheckSecret}
	reg := tasks.NewRegistry()
	register := func(kind string, t tasks.Task) {
		reg.Register(kind, policy.Guard{Policy: pol, Kind: kind, Task: t})
	}
	register("noop", tasks.Noop{})
	register("command", &tasks.Command{
		Allowlist:   tasks.NewAllowlist(cfg.Command.Allowlist),
		Resolver:    resolver,
		CancelGrace: cfg.Command.CancelGrace,
	})
	register("ingest", &ingest.Task{Resolver: resolver, Publisher: pub, Subjects: subjects, Policy: pol})
	register("assertion", &ingest.Assertion{Resolver: resolver, Publisher: pub, Subjects: subjects})
	return reg
}

// Providers builds the configured secret providers in cfg.Order; the
// remote ones (kubernetes, aws) answer through a cache of cfg.CacheTTL.
func Providers(ctx context.Context, cfg config.Secrets) ([]secrets.Provider, error) {
	var out []secrets.Provider
	for _, name := range cfg.Order {
		switch name {
		case config.ProviderEnv:
			if len(cfg.EnvPrefixes) > 0 {
				out = append(out, secrets.Env{Prefixes: cfg.EnvPrefixes})
			}
		case config.ProviderFiles:
			if cfg.Dir != "" {
				out = append(out, secrets.Dir{Path: cfg.Dir})
			}
		case config.ProviderKubernetes:
			k := cfg.Kubernetes
			if !k.Enabled() {
				continue
			}
			mapping, err := secrets.ParseKubeMapping(k.Mapping)
			if err != nil {
				return nil, err
			}
			client, err := secrets.NewSecretReader(k.Kubeconfig, k.Namespace)
			if err != nil {
				return nil, err
			}
			out = append(out, secrets.NewCached(&secrets.Kubernetes{
				Client: client, Namespace: k.Namespace, Mapping: mapping, Secrets: k.Secrets, LabelSelector: k.LabelSelector,
			}, cfg.CacheTTL))
		case config.ProviderAWS:
			a := cfg.AWS
			if !a.Enabled() {
				continue
			}
			mapping, err := secrets.ParseAWSMapping(a.Mapping)
			if err != nil {
				return nil, err
			}
			client, err := secrets.NewSecretsManager(ctx, a.Region, a.Endpoint)
			if err != nil {
				return nil, err
			}
			out = append(out, secrets.NewCached(&secrets.AWS{Client: client, Prefix: a.Prefix, Mapping: mapping}, cfg.CacheTTL))
		}
	}
	return out, nil
}

// KubernetesTask is the kubernetes task of cfg.KubernetesJob, its client
// from the kubeconfig there or the pod's ServiceAccount.
func KubernetesTask(cfg config.Config, providers []secrets.Provider) (*kubejob.Task, error) {
	k := cfg.KubernetesJob
	users, err := kubejob.ParseAccounts(k.UserServiceAccounts)
	if err != nil {
		return nil, err
	}
	projects, err := kubejob.ParseAccounts(k.ProjectServiceAccounts)
	if err != nil {
		return nil, err
	}
	client, err := kubejob.NewClient(k.Kubeconfig)
	if err != nil {
		return nil, err
	}
	return &kubejob.Task{
		Client:           client,
		Namespace:        k.Namespace,
		Accounts:         kubejob.ServiceAccounts{Users: users, Projects: projects, Default: k.DefaultServiceAccount},
		Resolver:         &secrets.Resolver{Providers: providers, Allow: cfg.RunnerPolicy().CheckSecret},
		RunnerID:         cfg.RunnerID,
		PollInterval:     k.PollInterval,
		TTLAfterFinished: k.TTLAfterFinished,
	}, nil
}
