package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"go.yaml.in/yaml/v3"
)

// ErrNoContext is returned when a command needs a context and none is
// current or named.
var ErrNoContext = errors.New("no context: run outpost login first, or name one with --context")

// ErrUnknownContext is returned for a context name the config does not hold.
var ErrUnknownContext = errors.New("unknown context")

// Context is one stack and tenant the CLI talks to, with its credential.
type Context struct {
	// Scheduler is the scheduler API's base URL.
	Scheduler string `yaml:"scheduler"`
	// Accounts is the account-migrator API's base URL.
	Accounts string `yaml:"accounts,omitempty"`
	// Tenant is sent as X-Outpost-Tenant when set.
	Tenant string `yaml:"tenant,omitempty"`
	// Token is the bearer: an API key (opk_…) or an OIDC token.
	Token string `yaml:"token"`
	// Issuer is the OIDC issuer a token came from (device flow).
	Issuer string `yaml:"issuer,omitempty"`
}

// Config is the CLI's file: its contexts and the current one.
type Config struct {
	Current  string              `yaml:"current-context,omitempty"`
	Contexts map[string]*Context `yaml:"contexts,omitempty"`
}

// configPath returns the config file's path: explicit, $OUTPOST_CONFIG, or
// <user config dir>/outpost/config.yaml.
func configPath(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if p := os.Getenv("OUTPOST_CONFIG"); p != "" {
		return p, nil
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find the user config directory: %w", err)
	}
	return filepath.Join(dir, "outpost", "config.yaml"), nil
}

// loadConfig reads the config at path; a missing file is an empty config.
func loadConfig(path string) (*Config, error) {
	cfg := &Config{Contexts: map[string]*Context{}}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return cfg, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if err := yaml.Unmarshal(raw, cfg); err != nil {
		return nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	if cfg.Contexts == nil {
		cfg.Contexts = map[string]*Context{}
	}
	return cfg, nil
}

// save writes the config with mode 0600 (it holds credentials), through a
// temporary file so that a crash leaves the old one whole.
func (c *Config) save(path string) error {
	raw, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(0o600); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if _, err := tmp.Write(raw); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write config: %w", err)
	}
	return nil
}

// names returns the contexts' names, sorted.
func (c *Config) names() []string {
	out := make([]string, 0, len(c.Contexts))
	for n := range c.Contexts {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
