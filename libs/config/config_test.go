package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type testConfig struct {
	Addr    string        `yaml:"addr" env:"T_ADDR"`
	Workers int           `yaml:"workers" env:"T_WORKERS"`
	Wait    time.Duration `yaml:"wait" env:"T_WAIT"`
	Allow   []string      `yaml:"allow" env:"T_ALLOW"`
	Debug   bool          `yaml:"debug" env:"T_DEBUG"`
	Nested  struct {
		URL string `yaml:"url" env:"T_URL"`
	} `yaml:"nested"`
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		want    func(*testConfig)
		wantErr string
	}{
		{name: "defaults only", want: func(*testConfig) {}},
		{
			name: "file then env",
			file: write("ok.yaml", "addr: 127.0.0.1:1\nworkers: 3\nwait: 2s\nnested:\n  url: nats://a\n"),
			env:  map[string]string{"T_WORKERS": "5", "T_ALLOW": "a, b,,c", "T_DEBUG": "true"},
			want: func(c *testConfig) {
				c.Addr, c.Workers, c.Wait = "127.0.0.1:1", 5, 2*time.Second
				c.Allow, c.Debug, c.Nested.URL = []string{"a", "b", "c"}, true, "nats://a"
			},
		},
		{name: "unknown key in file", file: write("bad.yaml", "adr: x\n"), wantErr: "field adr not found"},
		{name: "bad duration in env", env: map[string]string{"T_WAIT": "soon"}, wantErr: "T_WAIT"},
		{name: "bad int in env", env: map[string]string{"T_WORKERS": "many"}, wantErr: "T_WORKERS"},
		{name: "missing file", file: filepath.Join(dir, "nope.yaml"), wantErr: "read config file"},
		{
			name: "value from a _FILE variable",
			env:  map[string]string{"T_URL_FILE": write("url", "nats://u:p@b:4222\n"), "T_ADDR_FILE": ""},
			want: func(c *testConfig) { c.Nested.URL = "nats://u:p@b:4222" },
		},
		{
			name: "variable wins over its _FILE",
			env:  map[string]string{"T_URL": "nats://env", "T_URL_FILE": write("url2", "nats://file")},
			want: func(c *testConfig) { c.Nested.URL = "nats://env" },
		},
		{name: "missing _FILE", env: map[string]string{"T_URL_FILE": filepath.Join(dir, "none")}, wantErr: "T_URL_FILE"},
		{name: "bad value in _FILE", env: map[string]string{"T_WAIT_FILE": write("wait", "soon")}, wantErr: "T_WAIT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig{Addr: "default", Workers: 1}
			err := Load(tt.file, &cfg, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			want := testConfig{Addr: "default", Workers: 1}
			tt.want(&want)
			require.Equal(t, want, cfg)
		})
	}
}
