// Package config holds the k8s-watcher's configuration.
package config

import (
	"fmt"
	"time"

	"github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/queue"
)

// Config is the k8s-watcher's configuration.
type Config struct {
	// Tenant the watcher belongs to; it only ever touches that tenant's subjects.
	Tenant string `yaml:"tenant" env:"OUTPOST_TENANT"`
	// Zone groups the watchers that can reach the same clusters.
	Zone string `yaml:"zone" env:"OUTPOST_ZONE"`
	// OpsAddr serves /healthz, /readyz and /metrics; nothing else listens,
	// the watcher only dials out.
	OpsAddr       string        `yaml:"ops_addr" env:"OUTPOST_OPS_ADDR"`
	LogLevel      string        `yaml:"log_level" env:"OUTPOST_LOG_LEVEL"`
	Broker        Broker        `yaml:"broker"`
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
		Tenant:        "default",
		Zone:          "default",
		OpsAddr:       "127.0.0.1:9092",
		LogLevel:      "info",
		Broker:        Broker{URL: "nats://127.0.0.1:4222", Stack: queue.DefaultStack},
		ShutdownGrace: 10 * time.Second,
	}
}

// Validate reports the first unusable value.
func (c Config) Validate() error {
	switch {
	case !queue.ValidToken(c.Tenant):
		return fmt.Errorf("%w: tenant %q is not a valid token", config.ErrInvalid, c.Tenant)
	case !queue.ValidToken(c.Zone):
		return fmt.Errorf("%w: zone %q is not a valid token", config.ErrInvalid, c.Zone)
	case c.OpsAddr == "":
		return fmt.Errorf("%w: ops_addr is empty", config.ErrInvalid)
	case c.Broker.URL == "":
		return fmt.Errorf("%w: broker.url is empty", config.ErrInvalid)
	case !queue.ValidToken(c.Broker.Stack):
		return fmt.Errorf("%w: broker.stack %q is not a valid subject token", config.ErrInvalid, c.Broker.Stack)
	case c.ShutdownGrace <= 0:
		return fmt.Errorf("%w: shutdown_grace must be positive", config.ErrInvalid)
	}
	return nil
}
