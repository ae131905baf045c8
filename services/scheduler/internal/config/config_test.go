package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue/backend"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestDefaults(t *testing.T) {
	cfg, err := Load("", env(nil))
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:8080", cfg.Listen)
	require.Equal(t, "nats://127.0.0.1:4222", cfg.Broker.URL)
	require.Equal(t, "outpost", cfg.Broker.Stack)
	require.Equal(t, LayoutPerTenant, cfg.Broker.Layout)
	require.Equal(t, []string{"default"}, cfg.Tenants.Names)
	require.Equal(t, "default", cfg.Tenants.Default)
	require.Equal(t, int64(1<<20), cfg.API.MaxRequestBytes)
	require.Equal(t, Retry{MaxAttempts: 3, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2}, cfg.Jobs.Retry)
	require.Equal(t, time.Hour, cfg.Jobs.DefaultTimeout)
	require.Equal(t, 24*time.Hour, cfg.Jobs.MaxTimeout)
	require.Equal(t, 30*24*time.Hour, cfg.Jobs.Retention)
	require.Equal(t, 15*time.Second, cfg.Runners.PresenceWindow)
	require.Equal(t, 20, cfg.Consumers.MaxDeliveries)
	require.Equal(t, backend.KindNATS, cfg.Queue.Kind)
}

func TestQueueSQS(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scheduler.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
queue:
  kind: sqs
  sqs:
    region: eu-west-1
    queue_prefix: prod-
    wait_time: 10s
`), 0o600))
	cfg, err := Load(path, env(map[string]string{
		"OUTPOST_SQS_ENDPOINT":   "http://127.0.0.1:4566",
		"OUTPOST_SQS_QUEUE_TYPE": "standard",
	}))
	require.NoError(t, err)
	require.Equal(t, backend.KindSQS, cfg.Queue.Kind)
	require.Equal(t, backend.SQS{
		Region: "eu-west-1", Endpoint: "http://127.0.0.1:4566", QueueType: "standard", QueuePrefix: "prod-",
		VisibilityTimeout: 30 * time.Second, WaitTime: 10 * time.Second, BatchLinger: 10 * time.Millisecond, DiscoveryInterval: time.Minute,
	}, cfg.Queue.SQS)
	require.Equal(t, "nats://127.0.0.1:4222", cfg.Broker.URL, "the broker stays: records and history live there")

	_, err = Load("", env(map[string]string{"OUTPOST_QUEUE": "kafka"}))
	require.ErrorIs(t, err, ErrInvalid)
	require.ErrorContains(t, err, "queue.kind")
}

func TestFileThenEnv(t *testing.T) {
	path := filepath.Join(t.TempDir(), "scheduler.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`
listen: 0.0.0.0:9000
broker:
  url: nats://nats:4222
  layout: shared
tenants:
  names: [acme, globex]
  default: acme
  limits: {max_bytes: 1048576, max_messages: 1000, max_running_jobs: 4}
jobs:
  retry: {max_attempts: 5, initial_backoff: 2s}
  max_timeout: 48h
runners:
  presence_window: 30s
consumers:
  max_deliveries: 8
`), 0o600))
	cfg, err := Load(path, env(map[string]string{
		"OUTPOST_BROKER_URL":            "nats://other:4222",
		"OUTPOST_TENANTS":               "acme, globex, initech",
		"OUTPOST_RETRY_MULTIPLIER":      "1.5",
		"OUTPOST_API_MAX_REQUEST_BYTES": "2048",
	}))
	require.NoError(t, err)
	require.Equal(t, 8, cfg.Consumers.MaxDeliveries)
	cfg, err = Load(path, env(map[string]string{
		"OUTPOST_BROKER_URL":               "nats://other:4222",
		"OUTPOST_TENANTS":                  "acme, globex, initech",
		"OUTPOST_RETRY_MULTIPLIER":         "1.5",
		"OUTPOST_API_MAX_REQUEST_BYTES":    "2048",
		"OUTPOST_CONSUMERS_MAX_DELIVERIES": "9",
	}))
	require.NoError(t, err)
	require.Equal(t, "0.0.0.0:9000", cfg.Listen)
	require.Equal(t, "nats://other:4222", cfg.Broker.URL, "the environment wins over the file")
	require.Equal(t, LayoutShared, cfg.Broker.Layout)
	require.Equal(t, []string{"acme", "globex", "initech"}, cfg.Tenants.Names)
	require.Equal(t, "acme", cfg.Tenants.Default)
	require.Equal(t, Limits{MaxBytes: 1 << 20, MaxMessages: 1000, MaxRunningJobs: 4}, cfg.Tenants.Limits)
	require.Equal(t, Retry{MaxAttempts: 5, InitialBackoff: 2 * time.Second, MaxBackoff: time.Minute, Multiplier: 1.5}, cfg.Jobs.Retry)
	require.Equal(t, 48*time.Hour, cfg.Jobs.MaxTimeout)
	require.Equal(t, int64(2048), cfg.API.MaxRequestBytes)
	require.Equal(t, 30*time.Second, cfg.Runners.PresenceWindow)
	require.Equal(t, 9, cfg.Consumers.MaxDeliveries)
}

func TestLoadErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(path, []byte("listen: x\nlisen: y\n"), 0o600))
	_, err := Load(path, env(nil))
	require.ErrorContains(t, err, "lisen", "unknown keys are refused")

	_, err = Load("", env(map[string]string{"OUTPOST_JOBS_DEFAULT_TIMEOUT": "soon"}))
	require.ErrorContains(t, err, "OUTPOST_JOBS_DEFAULT_TIMEOUT")
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
		key  string
	}{
		{"default tenant not listed", func(c *Config) { c.Tenants.Default = "other" }, "tenants.default"},
		{"bad tenant name", func(c *Config) { c.Tenants.Names = []string{"default", "a.b"} }, "tenants.names"},
		{"no tenants", func(c *Config) { c.Tenants.Names = nil }, "tenants.names"},
		{"bad stack", func(c *Config) { c.Broker.Stack = "a b" }, "broker.stack"},
		{"bad layout", func(c *Config) { c.Broker.Layout = "mixed" }, "broker.layout"},
		{"replicas", func(c *Config) { c.Broker.Replicas = 2 }, "broker.replicas"},
		{"max backoff below initial", func(c *Config) { c.Jobs.Retry.MaxBackoff = time.Millisecond }, "jobs.retry.max_backoff"},
		{"multiplier", func(c *Config) { c.Jobs.Retry.Multiplier = 0.5 }, "jobs.retry.multiplier"},
		{"max timeout below default", func(c *Config) { c.Jobs.MaxTimeout = time.Minute }, "jobs.max_timeout"},
		{"negative retention", func(c *Config) { c.Jobs.Retention = -time.Hour }, "jobs.retention"},
		{"request bytes", func(c *Config) { c.API.MaxRequestBytes = 0 }, "api.max_request_bytes"},
		{"presence window", func(c *Config) { c.Runners.PresenceWindow = 0 }, "runners.presence_window"},
		{"running report delay", func(c *Config) { c.Runners.RunningReportDelay = time.Minute }, "runners.running_report_delay"},
		{"negative running report delay", func(c *Config) { c.Runners.RunningReportDelay = -time.Second }, "runners.running_report_delay"},
		{"unlimited deliveries", func(c *Config) { c.Consumers.MaxDeliveries = -1 }, "consumers.max_deliveries"},
		{"negative limits", func(c *Config) { c.Tenants.Limits.MaxBytes = -1 }, "tenants.limits.max_bytes"},
		{"negative running-job limit", func(c *Config) { c.Tenants.Limits.MaxRunningJobs = -1 }, "tenants.limits.max_running_jobs"},
		{"negative submission rate", func(c *Config) { c.Tenants.Limits.MaxSubmitsPerSecond = -1 }, "tenants.limits.max_submits_per_second"},
		{"sqs wait time", func(c *Config) { c.Queue.Kind, c.Queue.SQS.WaitTime = backend.KindSQS, time.Minute }, "queue.sqs.wait_time"},
		{"sqs needs the broker too", func(c *Config) { c.Queue.Kind, c.Broker.URL = backend.KindSQS, "" }, "broker.url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := Default()
			c.edit(&cfg)
			err := cfg.Validate()
			require.ErrorIs(t, err, ErrInvalid)
			require.ErrorContains(t, err, c.key)
		})
	}
	require.NoError(t, Default().Validate())
}
