// Package config holds the account-migrator's configuration.
package config

import (
	"fmt"
	"time"

	"github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/queue"
)

// Config is the account-migrator's configuration.
type Config struct {
	// Listen is the address of the accounts API, /healthz, /readyz and /metrics.
	Listen   string `yaml:"listen" env:"OUTPOST_LISTEN"`
	LogLevel string `yaml:"log_level" env:"OUTPOST_LOG_LEVEL"`
	Broker   Broker `yaml:"broker"`
	// ShutdownGrace bounds how long in-flight requests may take at shutdown.
	ShutdownGrace time.Duration `yaml:"shutdown_grace" env:"OUTPOST_SHUTDOWN_GRACE"`
}

// Broker says where the queue is.
type Broker struct {
	URL   string `yaml:"url" env:"OUTPOST_BROKER_URL"`
	Stack string `yaml:"stack" env:"OUTPOST_STACK"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Listen:        "127.0.0.1:8081",
		LogLevel:      "info",
		Broker:        Broker{URL: "nats://127.0.0.1:4222", Stack: queue.DefaultStack},
		ShutdownGrace: 10 * time.Second,
	}
}

// Validate reports the first unusable value.
func (c Config) Validate() error {
	switch {
	case c.Listen == "":
		return fmt.Errorf("%w: listen address is empty", config.ErrInvalid)
	case c.Broker.URL == "":
		return fmt.Errorf("%w: broker.url is empty", config.ErrInvalid)
	case !queue.ValidToken(c.Broker.Stack):
		return fmt.Errorf("%w: broker.stack %q is not a valid subject token", config.ErrInvalid, c.Broker.Stack)
	case c.ShutdownGrace <= 0:
		return fmt.Errorf("%w: shutdown_grace must be positive", config.ErrInvalid)
	}
	return nil
}
