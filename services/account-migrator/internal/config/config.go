// Package config holds the account-migrator's configuration: defaults, the
// YAML keys and the OUTPOST_* environment variables that override them.
package config

import (
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/instances"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/seal"
	"github.com/outposthq/outpost/libs/signing"
)

// KeySize is the length of the AES-256 key that seals inline kubeconfigs.
const KeySize = seal.KeySize

// Config is the account-migrator's configuration.
type Config struct {
	// Listen is the address of the accounts API, with /healthz and /readyz
	// (the only routes served without a credential).
	Listen string `yaml:"listen" env:"OUTPOST_LISTEN"`
	// OpsListen, when set, is the address of the ops server: /metrics,
	// /healthz and /readyz without credentials. Empty: /metrics is not
	// served.
	OpsListen string `yaml:"ops_listen" env:"OUTPOST_OPS_LISTEN"`
	// Auth configures who may call the API; API keys are read from the
	// bucket the scheduler manages them in.
	Auth     auth.Config `yaml:"auth"`
	LogLevel string      `yaml:"log_level" env:"OUTPOST_LOG_LEVEL"`
	// Settings are the broker (key "broker"). The migrator needs NATS
	// JetStream (its records are KV buckets, the inventory a compacted
	// stream): queue.kind sqs is refused.
	backend.Settings `yaml:",inline"`
	// ShutdownGrace bounds how long in-flight requests may take at shutdown.
	ShutdownGrace time.Duration `yaml:"shutdown_grace" env:"OUTPOST_SHUTDOWN_GRACE"`

	// Tenants are provisioned at start; requests for any other tenant get 404.
	Tenants []string `yaml:"tenants" env:"OUTPOST_TENANTS"`
	// DefaultTenant serves requests without an X-Outpost-Tenant header.
	DefaultTenant string `yaml:"default_tenant" env:"OUTPOST_DEFAULT_TENANT"`
	// KubeconfigKeys are the master keys inline kubeconfigs are sealed
	// with, "id=<base64 AES-256 key>", the first sealing; each tenant's key
	// is derived from it (libs/seal). The watchers hold the same keys.
	KubeconfigKeys []string `yaml:"kubeconfig_keys" env:"OUTPOST_KUBECONFIG_KEYS"`
	// KubeconfigKey is the base64 AES-256 key of values sealed before key
	// ids. Without KubeconfigKeys it is also the master key (id
	// "default"). Both empty refuse inline kubeconfigs.
	KubeconfigKey string `yaml:"kubeconfig_key" env:"OUTPOST_KUBECONFIG_KEY"`
	// RetryFrequency is how long after a failure a FAILED account is tried
	// again.
	RetryFrequency time.Duration `yaml:"retry_frequency" env:"OUTPOST_RETRY_FREQUENCY"`
	// RetryFrequencySeconds is RetryFrequency under the name Dynamic
	// Accounts configurations use (kubesvc.dynamicAccounts); it wins when set.
	RetryFrequencySeconds int `yaml:"retryFrequencySeconds"`
	// MaxRetries bounds automatic retries: a FAILED account is retried while
	// its failedCount is at most MaxRetries.
	MaxRetries int `yaml:"max_retries" env:"OUTPOST_MAX_RETRIES"`
	// ActivationTimeout fails an ACTIVATING account no watcher reported on.
	ActivationTimeout time.Duration `yaml:"activation_timeout" env:"OUTPOST_ACTIVATION_TIMEOUT"`
	// DeactivateTimeout is how long a DEACTIVATING account waits for
	// RELEASED before presence alone may settle it.
	DeactivateTimeout time.Duration `yaml:"deactivate_timeout" env:"OUTPOST_DEACTIVATE_TIMEOUT"`
	// ReconcileInterval is the period of the lifecycle loop.
	ReconcileInterval time.Duration `yaml:"reconcile_interval" env:"OUTPOST_RECONCILE_INTERVAL"`
	// ChecksumMismatches is how many inventory checksums in a row must
	// disagree with the stream before a kind is resynced.
	ChecksumMismatches int `yaml:"checksum_mismatches" env:"OUTPOST_CHECKSUM_MISMATCHES"`
	// MaxRequestBytes bounds API request bodies (manifests included).
	MaxRequestBytes int64 `yaml:"max_request_bytes" env:"OUTPOST_MAX_REQUEST_BYTES"`
	// MaxOperationWait bounds ?wait= on operations.
	MaxOperationWait time.Duration `yaml:"max_operation_wait" env:"OUTPOST_MAX_OPERATION_WAIT"`
	// PresenceWindow is how far back heartbeats are read at start.
	PresenceWindow time.Duration `yaml:"presence_window" env:"OUTPOST_PRESENCE_WINDOW"`
	// MaxDeliveries bounds how often one watcher event (status, checksum,
	// operation result) is delivered: one that decodes but keeps failing
	// is dead-lettered with the reason past it instead of being retried
	// forever. Failures are retried every second, so the default 60 lasts
	// about the default activation_timeout.
	MaxDeliveries int `yaml:"max_deliveries" env:"OUTPOST_MAX_DELIVERIES"`

	AutoMigration AutoMigration `yaml:"auto_migration"`
	// Instance is this replica's identity in the heartbeats every
	// control-plane replica publishes (GET /armory/clouddrivers).
	Instance instances.Config `yaml:"instance"`
	// Signing is the key every AccountLease and Operation is signed with.
	// Required.
	Signing signing.SignerConfig `yaml:"signing"`
}

// Broker says where the queue is (backend.Broker).
type Broker = backend.Broker

// AutoMigration scans a credentials source and migrates the accounts it
// finds whose names match Pattern.
type AutoMigration struct {
	Enabled bool `yaml:"enabled" env:"OUTPOST_AUTO_MIGRATION_ENABLED"`
	// Tenant the accounts are created in; empty means DefaultTenant.
	Tenant string `yaml:"tenant" env:"OUTPOST_AUTO_MIGRATION_TENANT"`
	// Pattern is a regular expression on the account name; empty matches all.
	Pattern string `yaml:"pattern" env:"OUTPOST_AUTO_MIGRATION_PATTERN"`
	// ZoneID of the created accounts; empty offers them to every zone.
	ZoneID   string        `yaml:"zone_id" env:"OUTPOST_AUTO_MIGRATION_ZONE_ID"`
	Interval time.Duration `yaml:"interval" env:"OUTPOST_AUTO_MIGRATION_INTERVAL"`
	// Directory holds kubeconfig files, one account per file (the name
	// without its extension). They are sealed inline: KubeconfigKey is needed.
	Directory string  `yaml:"directory" env:"OUTPOST_AUTO_MIGRATION_DIRECTORY"`
	Secrets   Secrets `yaml:"secrets"`
}

// Secrets lists labelled Secrets (metadata only) as the credentials source:
// each becomes an account referencing the Secret, resolved by the watcher.
type Secrets struct {
	// Kubeconfig of the cluster holding the Secrets; empty means in-cluster.
	Kubeconfig    string `yaml:"kubeconfig" env:"OUTPOST_AUTO_MIGRATION_SECRETS_KUBECONFIG"`
	Namespace     string `yaml:"namespace" env:"OUTPOST_AUTO_MIGRATION_SECRETS_NAMESPACE"`
	LabelSelector string `yaml:"label_selector" env:"OUTPOST_AUTO_MIGRATION_SECRETS_LABEL_SELECTOR"`
	// Key of the Secret's data holding the kubeconfig.
	Key string `yaml:"key" env:"OUTPOST_AUTO_MIGRATION_SECRETS_KEY"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Signing:            signing.DefaultSignerConfig(),
		Listen:             "127.0.0.1:8081",
		Auth:               auth.DefaultConfig(),
		LogLevel:           "info",
		Settings:           backend.DefaultSettings("account-migrator"),
		ShutdownGrace:      10 * time.Second,
		Tenants:            []string{"default"},
		DefaultTenant:      "default",
		RetryFrequency:     5 * time.Second,
		MaxRetries:         3,
		ActivationTimeout:  60 * time.Second,
		DeactivateTimeout:  30 * time.Second,
		ReconcileInterval:  time.Second,
		ChecksumMismatches: 2,
		MaxRequestBytes:    4 << 20,
		MaxOperationWait:   60 * time.Second,
		PresenceWindow:     5 * time.Minute,
		MaxDeliveries:      60,
		Instance:           instances.DefaultConfig(),
		AutoMigration: AutoMigration{
			Interval: 30 * time.Second,
			Secrets:  Secrets{Key: "config"},
		},
	}
}

// RetryEvery is the effective retry frequency: RetryFrequencySeconds when
// set, RetryFrequency otherwise.
func (c Config) RetryEvery() time.Duration {
	if c.RetryFrequencySeconds > 0 {
		return time.Duration(c.RetryFrequencySeconds) * time.Second
	}
	return c.RetryFrequency
}

// Keyring is the keyring of KubeconfigKeys and KubeconfigKey.
func (c Config) Keyring() (*seal.Keyring, error) {
	k, err := seal.Parse(c.KubeconfigKeys, c.KubeconfigKey)
	if err != nil {
		return nil, fmt.Errorf("%w: kubeconfig_keys or kubeconfig_key: %w", config.ErrInvalid, err)
	}
	return k, nil
}

// AutoTenant is the tenant automatic migration creates accounts in.
func (c Config) AutoTenant() string {
	if c.AutoMigration.Tenant != "" {
		return c.AutoMigration.Tenant
	}
	return c.DefaultTenant
}

// Validate reports the first unusable value.
func (c Config) Validate() error {
	switch {
	case c.Listen == "":
		return fmt.Errorf("%w: listen address is empty", config.ErrInvalid)
	case c.OpsListen == c.Listen:
		return fmt.Errorf("%w: ops_listen must differ from listen", config.ErrInvalid)
	case c.Auth.Validate() != nil:
		return fmt.Errorf("%w: %w", config.ErrInvalid, c.Auth.Validate())
	case c.Settings.Validate(backend.Requirements{}) != nil:
		return c.Settings.Validate(backend.Requirements{})
	case c.ShutdownGrace <= 0:
		return fmt.Errorf("%w: shutdown_grace must be positive", config.ErrInvalid)
	case len(c.Tenants) == 0:
		return fmt.Errorf("%w: tenants is empty", config.ErrInvalid)
	case !slices.Contains(c.Tenants, c.DefaultTenant):
		return fmt.Errorf("%w: default_tenant %q is not in tenants %v", config.ErrInvalid, c.DefaultTenant, c.Tenants)
	case c.RetryEvery() <= 0:
		return fmt.Errorf("%w: retry_frequency must be positive", config.ErrInvalid)
	case c.MaxRetries < 0:
		return fmt.Errorf("%w: max_retries must not be negative", config.ErrInvalid)
	case c.ActivationTimeout <= 0:
		return fmt.Errorf("%w: activation_timeout must be positive", config.ErrInvalid)
	case c.DeactivateTimeout <= 0:
		return fmt.Errorf("%w: deactivate_timeout must be positive", config.ErrInvalid)
	case c.ReconcileInterval <= 0:
		return fmt.Errorf("%w: reconcile_interval must be positive", config.ErrInvalid)
	case c.ChecksumMismatches < 1:
		return fmt.Errorf("%w: checksum_mismatches must be at least 1", config.ErrInvalid)
	case c.MaxRequestBytes <= 0:
		return fmt.Errorf("%w: max_request_bytes must be positive", config.ErrInvalid)
	case c.MaxOperationWait < 0:
		return fmt.Errorf("%w: max_operation_wait must not be negative", config.ErrInvalid)
	case c.PresenceWindow <= 0:
		return fmt.Errorf("%w: presence_window must be positive", config.ErrInvalid)
	case c.MaxDeliveries < 1:
		return fmt.Errorf("%w: max_deliveries must be at least 1", config.ErrInvalid)
	}
	for _, t := range c.Tenants {
		if !queue.ValidToken(t) {
			return fmt.Errorf("%w: tenant %q is not 1-64 characters of [a-zA-Z0-9_-]", config.ErrInvalid, t)
		}
	}
	if _, err := c.Keyring(); err != nil {
		return err
	}
	if err := c.Instance.Validate(); err != nil {
		return fmt.Errorf("%w: %w", config.ErrInvalid, err)
	}
	return c.AutoMigration.validate(c)
}

func (a AutoMigration) validate(c Config) error {
	if !a.Enabled {
		return nil
	}
	if _, err := regexp.Compile(a.Pattern); err != nil {
		return fmt.Errorf("%w: auto_migration.pattern: %w", config.ErrInvalid, err)
	}
	switch {
	case !slices.Contains(c.Tenants, c.AutoTenant()):
		return fmt.Errorf("%w: auto_migration.tenant %q is not in tenants", config.ErrInvalid, c.AutoTenant())
	case a.ZoneID != "" && !queue.ValidToken(a.ZoneID):
		return fmt.Errorf("%w: auto_migration.zone_id %q is not a valid subject token", config.ErrInvalid, a.ZoneID)
	case a.Interval <= 0:
		return fmt.Errorf("%w: auto_migration.interval must be positive", config.ErrInvalid)
	case a.Directory != "" && a.Secrets.Namespace != "":
		// Without a source only the accounts POSTed to /credentials are
		// migrated by name.
		return fmt.Errorf("%w: auto_migration takes at most one source: directory or secrets.namespace", config.ErrInvalid)
	case a.Directory != "" && c.KubeconfigKey == "" && len(c.KubeconfigKeys) == 0:
		return fmt.Errorf("%w: auto_migration.directory needs kubeconfig_keys or kubeconfig_key: kubeconfigs are sealed before they are stored", config.ErrInvalid)
	case a.Secrets.Namespace != "" && a.Secrets.Key == "":
		return fmt.Errorf("%w: auto_migration.secrets.key is empty", config.ErrInvalid)
	}
	return nil
}
