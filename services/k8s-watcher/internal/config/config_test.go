package config

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "defaults", mutate: func(*Config) {}},
		{name: "bad tenant", mutate: func(c *Config) { c.Tenant = "a b" }, wantErr: "tenant"},
		{name: "empty zone", mutate: func(c *Config) { c.Zone = "" }, wantErr: "zone"},
		{name: "no ops addr", mutate: func(c *Config) { c.OpsAddr = "" }, wantErr: "ops_addr"},
		{name: "no broker", mutate: func(c *Config) { c.Broker.URL = "" }, wantErr: "broker.url"},
		{name: "no grace", mutate: func(c *Config) { c.ShutdownGrace = -1 }, wantErr: "shutdown_grace"},
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
