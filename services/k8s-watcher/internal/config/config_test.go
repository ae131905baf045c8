package config

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	libconfig "github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
)

func TestValidate(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(make([]byte, 32))
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "with key", mutate: func(c *Config) { c.KubeconfigKey = key }},
		{name: "bad tenant", mutate: func(c *Config) { c.Tenant = "a b" }, wantErr: "tenant"},
		{name: "empty zone", mutate: func(c *Config) { c.Zone = "" }, wantErr: "zone"},
		{name: "bad watcher id", mutate: func(c *Config) { c.WatcherID = "a.b" }, wantErr: "watcher_id"},
		{name: "no ops addr", mutate: func(c *Config) { c.OpsAddr = "" }, wantErr: "ops_addr"},
		{name: "no broker", mutate: func(c *Config) { c.Broker.URL = "" }, wantErr: "broker.url"},
		{name: "shared layout", mutate: func(c *Config) { c.Broker.Layout = queue.LayoutShared }},
		{name: "bad layout", mutate: func(c *Config) { c.Broker.Layout = "mixed" }, wantErr: "broker.layout"},
		{name: "replicas", mutate: func(c *Config) { c.Broker.Replicas = 2 }, wantErr: "broker.replicas"},
		{name: "tls cert without key", mutate: func(c *Config) { c.Broker.TLS.Cert = "/c/cert.pem" }, wantErr: "broker.tls"},
		{name: "sqs refused", mutate: func(c *Config) { c.Queue.Kind = backend.KindSQS }, wantErr: "queue.kind"},
		{name: "no grace", mutate: func(c *Config) { c.ShutdownGrace = -1 }, wantErr: "shutdown_grace"},
		{name: "no heartbeat", mutate: func(c *Config) { c.HeartbeatInterval = 0 }, wantErr: "heartbeat_interval"},
		{name: "short ack wait", mutate: func(c *Config) { c.LeaseAckWait = 1 }, wantErr: "lease_ack_wait"},
		{name: "no accounts", mutate: func(c *Config) { c.MaxAccounts = 0 }, wantErr: "max_accounts"},
		{name: "no workers", mutate: func(c *Config) { c.PublishWorkers = 0 }, wantErr: "publish_workers"},
		{name: "key not base64", mutate: func(c *Config) { c.KubeconfigKey = "!!" }, wantErr: "base64"},
		{name: "short key", mutate: func(c *Config) { c.KubeconfigKey = "AAAA" }, wantErr: "32 bytes"},
		{name: "keys with ids", mutate: func(c *Config) { c.KubeconfigKeys = []string{"k2=" + key, "k1=" + key} }},
		{name: "key without id", mutate: func(c *Config) { c.KubeconfigKeys = []string{key} }, wantErr: "must be id=<base64 key>"},
		{name: "policy", mutate: func(c *Config) {
			c.KubeconfigDir, c.SecretNamespaces, c.AllowServiceAccount = "/", []string{"team-a", "*"}, true
		}},
		{name: "kubeconfig dir relative", mutate: func(c *Config) { c.KubeconfigDir = "kubeconfigs" }, wantErr: "kubeconfig_dir"},
		{name: "kubeconfig dir missing", mutate: func(c *Config) { c.KubeconfigDir = "/nonexistent/kubeconfigs" }, wantErr: "kubeconfig_dir"},
		{name: "bad namespace", mutate: func(c *Config) { c.SecretNamespaces = []string{"Team_A"} }, wantErr: "secret_namespaces"},
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

func TestDefaultWatcherIDIsUnique(t *testing.T) {
	a, b := DefaultWatcherID(), DefaultWatcherID()
	require.NotEqual(t, a, b)
	cfg := Default()
	cfg.WatcherID = a
	require.NoError(t, cfg.Validate())
}

// TestLoadBroker: the broker keys and variables are those of every
// service (backend.Settings), the layout included.
func TestLoadBroker(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.yaml")
	require.NoError(t, os.WriteFile(path, []byte("broker:\n  url: nats://nats.vendor.example:4222\n  layout: shared\n  tls: {ca: /tls/ca.pem}\n"), 0o600))
	env := map[string]string{"OUTPOST_BROKER_CREDENTIALS": "/creds/watcher.creds", "OUTPOST_STACK": "blue"}
	cfg := Default()
	require.NoError(t, libconfig.Load(path, &cfg, func(k string) (string, bool) { v, ok := env[k]; return v, ok }))
	require.NoError(t, cfg.Validate())
	require.Equal(t, backend.Broker{
		URL: "nats://nats.vendor.example:4222", Stack: "blue", Layout: queue.LayoutShared, Name: "k8s-watcher",
		Replicas: 1, Credentials: "/creds/watcher.creds", TLS: backend.TLS{CA: "/tls/ca.pem"},
	}, cfg.Broker)
	require.Equal(t, backend.KindNATS, cfg.Queue.Kind)
}
