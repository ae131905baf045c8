package config

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"
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
