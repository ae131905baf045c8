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
		{name: "no listen", mutate: func(c *Config) { c.Listen = "" }, wantErr: "listen address"},
		{name: "no broker", mutate: func(c *Config) { c.Broker.URL = "" }, wantErr: "broker.url"},
		{name: "bad stack", mutate: func(c *Config) { c.Broker.Stack = "a.b" }, wantErr: "broker.stack"},
		{name: "no grace", mutate: func(c *Config) { c.ShutdownGrace = 0 }, wantErr: "shutdown_grace"},
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
