// Package config holds the k8s-watcher's configuration.
package config

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/seal"
	"github.com/outposthq/outpost/libs/signing"
)

// Config is the k8s-watcher's configuration.
type Config struct {
	// Tenant the watcher belongs to; it only ever touches that tenant's subjects.
	Tenant string `yaml:"tenant" env:"OUTPOST_TENANT"`
	// Zone groups the watchers that can reach the same clusters.
	Zone string `yaml:"zone" env:"OUTPOST_ZONE"`
	// WatcherID names this replica in heartbeats and statuses; it is a
	// subject token. Defaults to the hostname with a random suffix, so two
	// replicas never share one.
	WatcherID string `yaml:"watcher_id" env:"OUTPOST_WATCHER_ID"`
	// OpsAddr serves /healthz, /readyz and /metrics; nothing else listens,
	// the watcher only dials out.
	OpsAddr  string `yaml:"ops_addr" env:"OUTPOST_OPS_ADDR"`
	LogLevel string `yaml:"log_level" env:"OUTPOST_LOG_LEVEL"`
	// Settings are the broker (key "broker"): its layout must be the
	// control plane's, as the watcher's credentials are. The watcher
	// needs NATS JetStream: queue.kind sqs is refused.
	backend.Settings `yaml:",inline"`
	// Kubeconfig is the watcher's own cluster credentials: where
	// "encryptedFile:k8s!..." Secrets are read from and what accounts with
	// serviceAccount use. Empty means the in-cluster ServiceAccount.
	Kubeconfig string `yaml:"kubeconfig" env:"OUTPOST_KUBECONFIG"`
	// KubeconfigKeys are the master keys that open sealed inline
	// kubeconfigs, "id=<base64 AES-256 key>", the same as the
	// account-migrator's: a value opens with the key its id names, derived
	// for this watcher's tenant (libs/seal), so several keys are held
	// while one is rotated out.
	KubeconfigKeys []string `yaml:"kubeconfig_keys" env:"OUTPOST_KUBECONFIG_KEYS"`
	// KubeconfigKey is the base64 (standard) AES-256 key of values sealed
	// before key ids; without KubeconfigKeys it is also the master key (id
	// "default"). Both empty refuse inline kubeconfigs.
	KubeconfigKey string `yaml:"kubeconfig_key" env:"OUTPOST_KUBECONFIG_KEY"`
	// KubeconfigDir is the only directory an account's "file:<path>"
	// reference may name a file in (".." and links cannot lead out); empty
	// refuses file references.
	KubeconfigDir string `yaml:"kubeconfig_dir" env:"OUTPOST_KUBECONFIG_DIR"`
	// SecretNamespaces are the namespaces of the watcher's own cluster
	// whose Secrets "encryptedFile:k8s!..." references may read ("*": any
	// namespace); empty refuses such references.
	SecretNamespaces []string `yaml:"secret_namespaces" env:"OUTPOST_SECRET_NAMESPACES"`
	// AllowServiceAccount lets accounts with "serviceAccount": true use
	// the watcher's own identity; off (the default), they fail.
	AllowServiceAccount bool `yaml:"allow_service_account" env:"OUTPOST_ALLOW_SERVICE_ACCOUNT"`
	// LeaseAckWait is the ack wait of the lease consumer: how long a killed
	// watcher's accounts stay unwatched before another replica gets them.
	LeaseAckWait time.Duration `yaml:"lease_ack_wait" env:"OUTPOST_LEASE_ACK_WAIT"`
	// HeartbeatInterval is how often the presence heartbeat is sent.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" env:"OUTPOST_HEARTBEAT_INTERVAL"`
	// ChecksumInterval is how often each watched kind's checksum is sent.
	ChecksumInterval time.Duration `yaml:"checksum_interval" env:"OUTPOST_CHECKSUM_INTERVAL"`
	// MaxAccounts bounds how many accounts this replica watches at once.
	MaxAccounts int `yaml:"max_accounts" env:"OUTPOST_MAX_ACCOUNTS"`
	// PublishWorkers is the number of workers publishing one account's
	// changes. Each publish waits for the broker's ack, so the first sync
	// of a large inventory is bound by how many are in flight: 32 keep it
	// close to the time client-go takes to list the objects.
	PublishWorkers int `yaml:"publish_workers" env:"OUTPOST_PUBLISH_WORKERS"`
	// ClusterTimeout bounds each request to an account's API server.
	ClusterTimeout time.Duration `yaml:"cluster_timeout" env:"OUTPOST_CLUSTER_TIMEOUT"`
	// SyncTimeout bounds the wait for an account's informer caches.
	SyncTimeout   time.Duration `yaml:"sync_timeout" env:"OUTPOST_SYNC_TIMEOUT"`
	ShutdownGrace time.Duration `yaml:"shutdown_grace" env:"OUTPOST_SHUTDOWN_GRACE"`
	// Signing holds the control plane's trusted public keys: a lease or an
	// operation is used only if one of them verifies its signature.
	Signing signing.VerifierConfig `yaml:"signing"`
}

// Broker says where the queue is (backend.Broker).
type Broker = backend.Broker

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Tenant:            "default",
		Zone:              "default",
		WatcherID:         DefaultWatcherID(),
		OpsAddr:           "127.0.0.1:9092",
		LogLevel:          "info",
		Settings:          backend.DefaultSettings("k8s-watcher"),
		LeaseAckWait:      30 * time.Second,
		HeartbeatInterval: 5 * time.Second,
		ChecksumInterval:  time.Minute,
		MaxAccounts:       100,
		PublishWorkers:    32,
		ClusterTimeout:    10 * time.Second,
		SyncTimeout:       2 * time.Minute,
		ShutdownGrace:     10 * time.Second,
	}
}

// DefaultWatcherID is the hostname, cut to what a subject token allows,
// with a random suffix.
func DefaultWatcherID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, host)
	if len(host) > 48 {
		host = host[:48]
	}
	if host == "" {
		host = "watcher"
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	return host + "-" + hex.EncodeToString(suffix)
}

// Keyring is the keyring of KubeconfigKeys and KubeconfigKey.
func (c Config) Keyring() (*seal.Keyring, error) {
	k, err := seal.Parse(c.KubeconfigKeys, c.KubeconfigKey)
	if err != nil {
		return nil, fmt.Errorf("%w: kubeconfig_keys or kubeconfig_key: %w", config.ErrInvalid, err)
	}
	return k, nil
}

// Validate reports the first unusable value.
func (c Config) Validate() error {
	positive := []struct {
		name string
		v    time.Duration
	}{
		{"lease_ack_wait", c.LeaseAckWait},
		{"heartbeat_interval", c.HeartbeatInterval},
		{"checksum_interval", c.ChecksumInterval},
		{"cluster_timeout", c.ClusterTimeout},
		{"sync_timeout", c.SyncTimeout},
		{"shutdown_grace", c.ShutdownGrace},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("%w: %s must be positive", config.ErrInvalid, p.name)
		}
	}
	switch {
	case !queue.ValidToken(c.Tenant):
		return fmt.Errorf("%w: tenant %q is not a valid token", config.ErrInvalid, c.Tenant)
	case !queue.ValidToken(c.Zone):
		return fmt.Errorf("%w: zone %q is not a valid token", config.ErrInvalid, c.Zone)
	case !queue.ValidToken(c.WatcherID):
		return fmt.Errorf("%w: watcher_id %q is not a valid token ([a-zA-Z0-9_-], at most 64)", config.ErrInvalid, c.WatcherID)
	case c.OpsAddr == "":
		return fmt.Errorf("%w: ops_addr is empty", config.ErrInvalid)
	case c.Settings.Validate(backend.Requirements{}) != nil:
		return c.Settings.Validate(backend.Requirements{})
	case c.MaxAccounts <= 0:
		return fmt.Errorf("%w: max_accounts must be positive", config.ErrInvalid)
	case c.PublishWorkers <= 0:
		return fmt.Errorf("%w: publish_workers must be positive", config.ErrInvalid)
	case c.LeaseAckWait < queue.MinFencedAckWait:
		// The lease consumer is fenced (see agent.Run).
		return fmt.Errorf("%w: lease_ack_wait must be at least %s (a fenced lease keeps a margin of it in hand and is renewed every third of the rest)", config.ErrInvalid, queue.MinFencedAckWait)
	}
	if c.KubeconfigDir != "" {
		if fi, err := os.Stat(c.KubeconfigDir); err != nil || !fi.IsDir() || !filepath.IsAbs(c.KubeconfigDir) {
			return fmt.Errorf("%w: kubeconfig_dir %q must be an absolute path to an existing directory", config.ErrInvalid, c.KubeconfigDir)
		}
	}
	for _, ns := range c.SecretNamespaces {
		if ns != "*" && len(validation.IsDNS1123Label(ns)) > 0 {
			return fmt.Errorf("%w: secret_namespaces entry %q is not a namespace name", config.ErrInvalid, ns)
		}
	}
	_, err := c.Keyring()
	return err
}
