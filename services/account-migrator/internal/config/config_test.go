package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"
	"time"

	libconfig "github.com/outposthq/outpost/libs/config"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "no listen", mutate: func(c *Config) { c.Listen = "" }, wantErr: "listen address"},
		{name: "no broker", mutate: func(c *Config) { c.Broker.URL = "" }, wantErr: "broker.url"},
		{name: "bad stack", mutate: func(c *Config) { c.Broker.Stack = "a.b" }, wantErr: "broker.stack"},
		{name: "shared layout", mutate: func(c *Config) { c.Broker.Layout = queue.LayoutShared }},
		{name: "bad layout", mutate: func(c *Config) { c.Broker.Layout = "mixed" }, wantErr: "broker.layout"},
		{name: "replicas", mutate: func(c *Config) { c.Broker.Replicas = 2 }, wantErr: "broker.replicas"},
		{name: "tls cert without key", mutate: func(c *Config) { c.Broker.TLS.Cert = "/c/cert.pem" }, wantErr: "broker.tls"},
		{name: "sqs refused", mutate: func(c *Config) { c.Queue.Kind = backend.KindSQS }, wantErr: "queue.kind"},
		{name: "no grace", mutate: func(c *Config) { c.ShutdownGrace = 0 }, wantErr: "shutdown_grace"},
		{name: "no tenants", mutate: func(c *Config) { c.Tenants = nil }, wantErr: "tenants is empty"},
		{name: "bad tenant", mutate: func(c *Config) { c.Tenants = []string{"default", "a.b"} }, wantErr: `tenant "a.b"`},
		{name: "default tenant not listed", mutate: func(c *Config) { c.DefaultTenant = "acme" }, wantErr: "default_tenant"},
		{name: "key not base64", mutate: func(c *Config) { c.KubeconfigKey = "%%%" }, wantErr: "not base64"},
		{name: "short key", mutate: func(c *Config) { c.KubeconfigKey = base64.StdEncoding.EncodeToString([]byte("short")) }, wantErr: "32 bytes"},
		{name: "good key", mutate: func(c *Config) { c.KubeconfigKey = base64.StdEncoding.EncodeToString(make([]byte, 32)) }},
		{name: "negative retries", mutate: func(c *Config) { c.MaxRetries = -1 }, wantErr: "max_retries"},
		{name: "no retry frequency", mutate: func(c *Config) { c.RetryFrequency = 0 }, wantErr: "retry_frequency"},
		{name: "retryFrequencySeconds alone", mutate: func(c *Config) { c.RetryFrequency, c.RetryFrequencySeconds = 0, 7 }},
		{name: "no reconcile interval", mutate: func(c *Config) { c.ReconcileInterval = 0 }, wantErr: "reconcile_interval"},
		{name: "no mismatches", mutate: func(c *Config) { c.ChecksumMismatches = 0 }, wantErr: "checksum_mismatches"},
		{name: "unlimited deliveries", mutate: func(c *Config) { c.MaxDeliveries = -1 }, wantErr: "max_deliveries"},
		{name: "auto: no source (credentials only)", mutate: func(c *Config) { c.AutoMigration.Enabled, c.AutoMigration.Pattern = true, "^prod-" }},
		{name: "instance: bad base url", mutate: func(c *Config) { c.Instance.BaseURL = "svc:8081" }, wantErr: "instance.base_url"},
		{name: "instance: no interval", mutate: func(c *Config) { c.Instance.HeartbeatInterval = 0 }, wantErr: "heartbeat_interval"},
		{name: "auto: two sources", mutate: func(c *Config) {
			c.AutoMigration = AutoMigration{Enabled: true, Interval: time.Second, Directory: "/d", Secrets: Secrets{Namespace: "ns", Key: "config"}}
		}, wantErr: "at most one source"},
		{name: "auto: directory needs a key", mutate: func(c *Config) {
			c.AutoMigration = AutoMigration{Enabled: true, Interval: time.Second, Directory: "/d"}
		}, wantErr: "needs kubeconfig_key"},
		{name: "auto: bad pattern", mutate: func(c *Config) {
			c.AutoMigration = AutoMigration{Enabled: true, Interval: time.Second, Pattern: "(", Secrets: Secrets{Namespace: "ns", Key: "config"}}
		}, wantErr: "auto_migration.pattern"},
		{name: "auto: unknown tenant", mutate: func(c *Config) {
			c.AutoMigration = AutoMigration{Enabled: true, Tenant: "acme", Interval: time.Second, Secrets: Secrets{Namespace: "ns", Key: "config"}}
		}, wantErr: "auto_migration.tenant"},
		{name: "auto: secrets", mutate: func(c *Config) {
			c.AutoMigration = AutoMigration{Enabled: true, Interval: time.Second, Pattern: "^prod-", Secrets: Secrets{Namespace: "ns", Key: "config"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			tt.mutate(&cfg)
			err := cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte("retryFrequencySeconds: 9\nauto_migration:\n  enabled: true\n  secrets:\n    namespace: spinnaker\n"), 0o600))
	env := map[string]string{
		"OUTPOST_TENANTS":            "default, acme",
		"OUTPOST_MAX_RETRIES":        "5",
		"OUTPOST_ACTIVATION_TIMEOUT": "2m",
		"OUTPOST_RECONCILE_INTERVAL": "250ms",
		"OUTPOST_MAX_DELIVERIES":     "7",
		"OUTPOST_KUBECONFIG_KEY":     base64.StdEncoding.EncodeToString(make([]byte, 32)),
	}
	cfg := Default()
	require.NoError(t, libconfig.Load(path, &cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	require.NoError(t, cfg.Validate())
	require.Equal(t, []string{"default", "acme"}, cfg.Tenants)
	require.Equal(t, 5, cfg.MaxRetries)
	require.Equal(t, 2*time.Minute, cfg.ActivationTimeout)
	require.Equal(t, 250*time.Millisecond, cfg.ReconcileInterval)
	require.Equal(t, 7, cfg.MaxDeliveries)
	require.Equal(t, 60, Default().MaxDeliveries)
	require.Equal(t, 9*time.Second, cfg.RetryEvery())
	require.Equal(t, "config", cfg.AutoMigration.Secrets.Key)
	keys, err := cfg.Keyring()
	require.NoError(t, err)
	require.True(t, keys.CanSeal())
	require.Equal(t, "default", keys.SealingKeyID())
	require.Equal(t, queue.LayoutPerTenant, cfg.Broker.Layout, "the layout defaults to per-tenant")
}
