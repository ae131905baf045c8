// Package config holds the scheduler's configuration: defaults, the YAML keys
// and the OUTPOST_* environment variables that override them.
package config

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	libconfig "github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/instances"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/signing"
	"github.com/outposthq/outpost/services/scheduler/internal/console"
)

// ErrInvalid is returned by Validate for a configuration the scheduler cannot
// run with.
var ErrInvalid = errors.New("invalid scheduler configuration")

// Layouts the broker supports.
const (
	// LayoutPerTenant gives every tenant its own streams (the default).
	LayoutPerTenant = queue.LayoutPerTenant
	// LayoutShared puts all tenants in shared streams filtered by subject.
	LayoutShared = queue.LayoutShared
)

// Config is the scheduler's configuration.
type Config struct {
	// Listen is the address of the API server (with /healthz and
	// /readyz, the only routes served without a credential).
	Listen string `yaml:"listen" env:"OUTPOST_LISTEN"`
	// OpsListen, when set, is the address of the ops server: /metrics,
	// /healthz and /readyz, without credentials, for the cluster's
	// scrapers and probes. Empty: /metrics is not served.
	OpsListen string `yaml:"ops_listen" env:"OUTPOST_OPS_LISTEN"`
	// Auth configures who may call the API: OIDC issuers, API keys,
	// browser origins, the rate limit and the bootstrap key.
	Auth     auth.Config `yaml:"auth"`
	LogLevel string      `yaml:"log_level" env:"OUTPOST_LOG_LEVEL"`
	// ShutdownGrace bounds how long in-flight requests and handlers get on
	// shutdown.
	ShutdownGrace time.Duration `yaml:"shutdown_grace" env:"OUTPOST_SHUTDOWN_GRACE"`
	// Settings are the broker (JetStream: keys "broker") and where the
	// scheduler publishes and consumes (key "queue"): JetStream, the
	// default, or SQS. With SQS the broker is still needed: job records,
	// tenants, pools and the history of logs and heartbeats stay in
	// JetStream.
	backend.Settings `yaml:",inline"`
	// Agents issues and revokes agents' broker credentials
	// (POST/DELETE /api/v1/agents) when AuthDir is set.
	Agents Agents `yaml:"agents"`
	// Instance is this replica's identity in the heartbeats every
	// control-plane replica publishes (the account-migrator's
	// GET /armory/clouddrivers lists them).
	Instance instances.Config `yaml:"instance"`
	// Signing is the key every JobDispatched is signed with. Required.
	Signing signing.SignerConfig `yaml:"signing"`
	Tenants Tenants              `yaml:"tenants"`
	API     API                  `yaml:"api"`
	Jobs    Jobs                 `yaml:"jobs"`
	Runners Runners              `yaml:"runners"`
	// Consumers tunes the scheduler's queue consumers.
	Consumers Consumers `yaml:"consumers"`
	// Console is the web console served at / on the API's port.
	Console console.Config `yaml:"console"`
}

// Consumers tunes the scheduler's queue consumers (submit, status,
// records, dead letters and, with SQS, the bridge).
type Consumers struct {
	// MaxDeliveries bounds how often one message is delivered to a
	// consumer: a message that decodes but keeps failing (a store error,
	// a bug) is dead-lettered with the reason "max deliveries (N)
	// exceeded" past it, instead of being retried forever. Failures are
	// retried with a delay growing to 30s, so the default 20 outlasts an
	// outage of about seven minutes.
	MaxDeliveries int `yaml:"max_deliveries" env:"OUTPOST_CONSUMERS_MAX_DELIVERIES"`
}

// Agents configures the issue of agent credentials.
type Agents struct {
	// AuthDir is the folder of the broker's operator and accounts
	// (libs/natsauth; `outpost-broker -auth-dir`). Empty: the agents
	// routes are not served.
	AuthDir string `yaml:"auth_dir" env:"OUTPOST_AGENTS_AUTH_DIR"`
}

// Broker is the NATS JetStream connection (backend.Broker): the queue
// itself by default, and the scheduler's store (KV records, event history)
// with either backend.
type Broker = backend.Broker

// Tenants lists the tenants provisioned at start.
type Tenants struct {
	// Names are provisioned at start; more are added with
	// PUT /api/v1/tenants/{tenant}.
	Names []string `yaml:"names" env:"OUTPOST_TENANTS"`
	// Default serves requests without an X-Outpost-Tenant header. It must
	// be one of Names.
	Default string `yaml:"default" env:"OUTPOST_DEFAULT_TENANT"`
	// Limits apply to every tenant that is not given its own.
	Limits Limits `yaml:"limits"`
	// RefreshInterval is how often the tenants added at run time (by any
	// replica) are re-listed.
	RefreshInterval time.Duration `yaml:"refresh_interval" env:"OUTPOST_TENANTS_REFRESH_INTERVAL"`
}

// Limits bound what one tenant may hold in the broker and how many of its
// jobs may run at once; 0 means no limit.
type Limits struct {
	MaxBytes    int64 `yaml:"max_bytes" json:"max_bytes" env:"OUTPOST_TENANT_MAX_BYTES"`
	MaxMessages int64 `yaml:"max_messages" json:"max_messages" env:"OUTPOST_TENANT_MAX_MESSAGES"`
	// MaxRunningJobs bounds the tenant's jobs dispatched and not ended
	// (a retry keeps its slot); the others stay QUEUED, undispatched, and
	// are dispatched oldest first as slots free up. The scheduler enforces
	// it, so it holds in both broker layouts.
	MaxRunningJobs int `yaml:"max_running_jobs" json:"max_running_jobs,omitempty" env:"OUTPOST_TENANT_MAX_RUNNING_JOBS"`
	// MaxSubmitsPerSecond bounds how fast each scheduler replica admits
	// the tenant's submissions, with a burst of one second's worth: past
	// it POST /api/v1/jobs answers 429 with Retry-After, and the submit
	// consumer waits (the SubmitJobs stay on the durable queue). It keeps
	// one tenant's flood from taking the shared scheduler and broker from
	// the others. 0: no limit.
	MaxSubmitsPerSecond float64 `yaml:"max_submits_per_second" json:"max_submits_per_second,omitempty" env:"OUTPOST_TENANT_MAX_SUBMITS_PER_SECOND"`
}

// Queue converts l to the queue library's type.
func (l Limits) Queue() queue.TenantLimits {
	return queue.TenantLimits{MaxBytes: l.MaxBytes, MaxMessages: l.MaxMessages}
}

// API tunes the REST API.
type API struct {
	// MaxRequestBytes bounds a request body; larger bodies get 413.
	MaxRequestBytes int64 `yaml:"max_request_bytes" env:"OUTPOST_API_MAX_REQUEST_BYTES"`
	// SubmitWait bounds how long POST /api/v1/jobs waits for the job record
	// before it answers 503 (with the job's id, to submit again) instead of
	// 201: a job is never reported queued before its record exists.
	SubmitWait time.Duration `yaml:"submit_wait" env:"OUTPOST_API_SUBMIT_WAIT"`
	// DirectSubmit lets POST /api/v1/jobs create the record and dispatch
	// the job itself instead of publishing a SubmitJob, where the broker
	// allows it (JetStream, SQS FIFO queues); SubmitWait then does not
	// apply.
	DirectSubmit bool `yaml:"direct_submit" env:"OUTPOST_API_DIRECT_SUBMIT"`
	// DirectGrace is how long a directly submitted job may stay QUEUED
	// before the scheduler makes sure its dispatch was published (it was
	// not if the replica died between the record and the dispatch); at
	// most a minute, within the broker's deduplication window.
	DirectGrace time.Duration `yaml:"direct_grace" env:"OUTPOST_API_DIRECT_GRACE"`
	// ListLimit is the default and MaxListLimit the largest page of
	// GET /api/v1/jobs.
	ListLimit    int `yaml:"list_limit" env:"OUTPOST_API_LIST_LIMIT"`
	MaxListLimit int `yaml:"max_list_limit" env:"OUTPOST_API_MAX_LIST_LIMIT"`
}

// Jobs holds the defaults and bounds of job specs.
type Jobs struct {
	Retry          Retry         `yaml:"retry"`
	DefaultTimeout time.Duration `yaml:"default_timeout" env:"OUTPOST_JOBS_DEFAULT_TIMEOUT"`
	MaxTimeout     time.Duration `yaml:"max_timeout" env:"OUTPOST_JOBS_MAX_TIMEOUT"`
	// MaxAttempts bounds retry.max_attempts of a spec.
	MaxAttempts int `yaml:"max_attempts" env:"OUTPOST_JOBS_MAX_ATTEMPTS"`
	// HistoryLimit bounds the transitions kept in a job record.
	HistoryLimit int `yaml:"history_limit" env:"OUTPOST_JOBS_HISTORY_LIMIT"`
	// StatusBatch bounds how many status events are applied together; the
	// events of one job in a batch cost one record write.
	StatusBatch int `yaml:"status_batch" env:"OUTPOST_JOBS_STATUS_BATCH"`
	// Retention is how long the record of a finished job is kept after
	// it finished; 0 keeps records until deleted.
	Retention time.Duration `yaml:"retention" env:"OUTPOST_JOBS_RETENTION"`
}

// Retry is the default retry policy of a job that names none (or leaves
// fields at zero).
type Retry struct {
	MaxAttempts    int           `yaml:"max_attempts" env:"OUTPOST_RETRY_MAX_ATTEMPTS"`
	InitialBackoff time.Duration `yaml:"initial_backoff" env:"OUTPOST_RETRY_INITIAL_BACKOFF"`
	MaxBackoff     time.Duration `yaml:"max_backoff" env:"OUTPOST_RETRY_MAX_BACKOFF"`
	Multiplier     float64       `yaml:"multiplier" env:"OUTPOST_RETRY_MULTIPLIER"`
}

// Runners tunes how runner presence is judged.
type Runners struct {
	// PresenceWindow is how recent a heartbeat must be for its runner to
	// count as live (about 3 heartbeat intervals).
	PresenceWindow time.Duration `yaml:"presence_window" env:"OUTPOST_RUNNERS_PRESENCE_WINDOW"`
	// LostAfter is how long the runner of a RUNNING job may be silent (no
	// heartbeat) before the job, if its work message is gone from the
	// queue, is dispatched again as the next attempt. Longer than the
	// runners' ack wait (15s by default); 0 turns the check off.
	LostAfter time.Duration `yaml:"lost_after" env:"OUTPOST_RUNNERS_LOST_AFTER"`
	// RunningReportDelay is how long a runner may wait, once an attempt
	// has started, before it reports RUNNING (the dispatch tells it): an
	// attempt that ends sooner reports only its outcome, with its start,
	// one status event and one record write less. 0: RUNNING as each
	// attempt starts.
	RunningReportDelay time.Duration `yaml:"running_report_delay" env:"OUTPOST_RUNNERS_RUNNING_REPORT_DELAY"`
	// StatusBatchMax is how many short jobs' outcomes a runner may send
	// in one message (the dispatch tells it). 0: every status alone, as a
	// scheduler without status batches reads them; set it so while
	// replicas of such a version still run (a rolling upgrade).
	StatusBatchMax int `yaml:"status_batch_max" env:"OUTPOST_RUNNERS_STATUS_BATCH_MAX"`
}

// maxRunningReportDelay bounds runners.running_report_delay: a start is
// meant to show within moments, and well within runners.lost_after.
const maxRunningReportDelay = 5 * time.Second

// maxStatusBatchMax bounds runners.status_batch_max; the runners bound a
// batch's bytes too.
const maxStatusBatchMax = 1000

// Default returns the configuration used when nothing overrides it.
func Default() Config {
	return Config{
		Signing:       signing.DefaultSignerConfig(),
		Listen:        "127.0.0.1:8080",
		Auth:          auth.DefaultConfig(),
		LogLevel:      "info",
		ShutdownGrace: 10 * time.Second,
		Settings:      backend.DefaultSettings("scheduler"),
		Instance:      instances.DefaultConfig(),
		Tenants: Tenants{
			Names:           []string{"default"},
			Default:         "default",
			RefreshInterval: 10 * time.Second,
		},
		API: API{
			MaxRequestBytes: 1 << 20,
			SubmitWait:      2 * time.Second,
			DirectSubmit:    true,
			DirectGrace:     10 * time.Second,
			ListLimit:       100,
			MaxListLimit:    1000,
		},
		Jobs: Jobs{
			Retry: Retry{
				MaxAttempts:    3,
				InitialBackoff: time.Second,
				MaxBackoff:     time.Minute,
				Multiplier:     2,
			},
			DefaultTimeout: time.Hour,
			MaxTimeout:     24 * time.Hour,
			MaxAttempts:    100,
			HistoryLimit:   50,
			StatusBatch:    64,
			Retention:      30 * 24 * time.Hour,
		},
		Runners:   Runners{PresenceWindow: 15 * time.Second, LostAfter: 20 * time.Second, RunningReportDelay: 250 * time.Millisecond, StatusBatchMax: 64},
		Consumers: Consumers{MaxDeliveries: 20},
	}
}

// Validate reports the first setting the scheduler cannot run with.
func (c Config) Validate() error {
	var errs []error
	check := func(ok bool, key, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("%w: %s: %s", ErrInvalid, key, fmt.Sprintf(format, args...)))
		}
	}
	check(c.Listen != "", "listen", "must not be empty")
	check(c.OpsListen != c.Listen, "ops_listen", "must differ from listen")
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInvalid, err))
	}
	check(c.ShutdownGrace > 0, "shutdown_grace", "must be positive")
	// JetStream is needed with either queue kind: the records and the
	// history stay there.
	if err := c.Settings.Validate(backend.Requirements{SQS: true, History: true}); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInvalid, err))
	}
	check(len(c.Tenants.Names) > 0, "tenants.names", "must name at least one tenant")
	for _, n := range c.Tenants.Names {
		check(queue.ValidToken(n), "tenants.names", "%q is not a token of [A-Za-z0-9_-]", n)
	}
	check(slices.Contains(c.Tenants.Names, c.Tenants.Default), "tenants.default", "%q is not in tenants.names", c.Tenants.Default)
	check(c.Tenants.Limits.MaxBytes >= 0, "tenants.limits.max_bytes", "must not be negative")
	check(c.Tenants.Limits.MaxMessages >= 0, "tenants.limits.max_messages", "must not be negative")
	check(c.Tenants.Limits.MaxRunningJobs >= 0, "tenants.limits.max_running_jobs", "must not be negative")
	check(c.Tenants.Limits.MaxSubmitsPerSecond >= 0, "tenants.limits.max_submits_per_second", "must not be negative")
	check(c.Tenants.RefreshInterval > 0, "tenants.refresh_interval", "must be positive")
	check(c.API.MaxRequestBytes > 0, "api.max_request_bytes", "must be positive")
	check(c.API.SubmitWait >= 0, "api.submit_wait", "must not be negative")
	check(c.API.DirectGrace >= 0 && c.API.DirectGrace <= time.Minute, "api.direct_grace", "must be between 0 and 1m")
	check(c.API.ListLimit > 0 && c.API.ListLimit <= c.API.MaxListLimit, "api.list_limit", "must be between 1 and api.max_list_limit")
	r := c.Jobs.Retry
	check(c.Jobs.MaxAttempts >= 1, "jobs.max_attempts", "must be at least 1")
	check(r.MaxAttempts >= 1 && r.MaxAttempts <= c.Jobs.MaxAttempts, "jobs.retry.max_attempts", "must be between 1 and jobs.max_attempts")
	check(r.InitialBackoff > 0, "jobs.retry.initial_backoff", "must be positive")
	check(r.MaxBackoff >= r.InitialBackoff, "jobs.retry.max_backoff", "must be at least jobs.retry.initial_backoff")
	check(r.Multiplier >= 1, "jobs.retry.multiplier", "must be at least 1")
	check(c.Jobs.DefaultTimeout > 0, "jobs.default_timeout", "must be positive")
	check(c.Jobs.MaxTimeout >= c.Jobs.DefaultTimeout, "jobs.max_timeout", "must be at least jobs.default_timeout")
	check(c.Jobs.HistoryLimit >= 1, "jobs.history_limit", "must be at least 1")
	check(c.Jobs.StatusBatch >= 1, "jobs.status_batch", "must be at least 1")
	check(c.Jobs.Retention >= 0, "jobs.retention", "must not be negative")
	check(c.Runners.PresenceWindow > 0, "runners.presence_window", "must be positive")
	check(c.Consumers.MaxDeliveries >= 1, "consumers.max_deliveries", "must be at least 1")
	check(c.Runners.LostAfter >= 0, "runners.lost_after", "must not be negative")
	check(c.Runners.RunningReportDelay >= 0 && c.Runners.RunningReportDelay <= maxRunningReportDelay,
		"runners.running_report_delay", "must be between 0 and %s", maxRunningReportDelay)
	check(c.Runners.StatusBatchMax >= 0 && c.Runners.StatusBatchMax <= maxStatusBatchMax,
		"runners.status_batch_max", "must be between 0 and %d", maxStatusBatchMax)
	if err := c.Instance.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInvalid, err))
	}
	if err := c.Console.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrInvalid, err))
	}
	return errors.Join(errs...)
}

// Load returns the defaults overridden by the YAML file at path (when not
// empty) and then by OUTPOST_* variables read through lookup (os.LookupEnv
// when nil), and validates the result.
func Load(path string, lookup func(string) (string, bool)) (Config, error) {
	cfg := Default()
	if err := libconfig.Load(path, &cfg, lookup); err != nil {
		return Config{}, fmt.Errorf("load configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}
