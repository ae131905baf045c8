package signing

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrNoTrustedKeys is returned by VerifierConfig.Verifier when no trusted
// key is configured and unsigned work is not explicitly allowed.
var ErrNoTrustedKeys = errors.New("signing: no trusted public key configured (set signing.trusted_keys or signing.trusted_keys_file, or signing.allow_unsigned for development)")

// SignerConfig is the control plane's signing key, shared by the services
// that sign (scheduler, account-migrator).
type SignerConfig struct {
	// KeyFile is the ed25519 private key: PKCS #8 PEM or a 32-byte seed
	// (raw or base64), mode 0600. Required.
	KeyFile string `yaml:"key_file" env:"OUTPOST_SIGNING_KEY_FILE"`
	// KeyID names the key in signatures; agents look it up among their
	// trusted keys.
	KeyID string `yaml:"key_id" env:"OUTPOST_SIGNING_KEY_ID"`
	// Generate creates KeyFile (and KeyFile+".pub", "kid:base64") when it
	// does not exist: for local use.
	Generate bool `yaml:"generate" env:"OUTPOST_SIGNING_GENERATE"`
	// TTL is how long a signature is valid (DefaultTTL when 0).
	TTL time.Duration `yaml:"ttl" env:"OUTPOST_SIGNING_TTL"`
	// LeaseTTL is how long the signature of an account lease is valid
	// (DefaultLeaseTTL when 0): a lease message lives as long as its
	// account is held, and is handed to another watcher on failover; its
	// generation fences it.
	LeaseTTL time.Duration `yaml:"lease_ttl" env:"OUTPOST_SIGNING_LEASE_TTL"`
}

// DefaultLeaseTTL is the default of SignerConfig.LeaseTTL.
const DefaultLeaseTTL = 365 * 24 * time.Hour

// DefaultSignerConfig is the signer configuration before any file or
// variable is read.
func DefaultSignerConfig() SignerConfig {
	return SignerConfig{KeyID: "outpost-1", TTL: DefaultTTL, LeaseTTL: DefaultLeaseTTL}
}

// Signer loads (or generates) the key and returns its signer.
func (c SignerConfig) Signer() (*Signer, error) {
	if c.KeyFile == "" {
		return nil, fmt.Errorf("%w: signing.key_file (OUTPOST_SIGNING_KEY_FILE) is required", ErrInvalidKey)
	}
	key, err := LoadOrGenerate(c.KeyFile, c.KeyID, c.Generate)
	if err != nil {
		return nil, err
	}
	return NewSigner(c.KeyID, key, c.TTL)
}

// VerifierConfig is an agent's trust in the control plane's keys.
type VerifierConfig struct {
	// TrustedKeys are public keys "kid:base64".
	TrustedKeys []string `yaml:"trusted_keys" env:"OUTPOST_SIGNING_TRUSTED_KEYS"`
	// TrustedKeysFile holds more: lines "kid:base64" or PEM blocks with a
	// Key-Id header.
	TrustedKeysFile string `yaml:"trusted_keys_file" env:"OUTPOST_SIGNING_TRUSTED_KEYS_FILE"`
	// AllowUnsigned lets an agent without trusted keys run unsigned work:
	// for development only. With trusted keys configured it has no effect:
	// every message is verified.
	AllowUnsigned bool `yaml:"allow_unsigned" env:"OUTPOST_SIGNING_ALLOW_UNSIGNED"`
}

// Verifier returns the verifier of the configured keys. With none it
// returns nil and no error when AllowUnsigned is set (nothing is
// verified), else ErrNoTrustedKeys.
func (c VerifierConfig) Verifier() (*Verifier, error) {
	var keys []PublicKey
	for _, s := range c.TrustedKeys {
		k, err := ParsePublicKey(s)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if c.TrustedKeysFile != "" {
		raw, err := os.ReadFile(c.TrustedKeysFile)
		if err != nil {
			return nil, fmt.Errorf("signing: trusted keys file: %w", err)
		}
		more, err := ParsePublicKeys(raw)
		if err != nil {
			return nil, fmt.Errorf("trusted keys file %s: %w", c.TrustedKeysFile, err)
		}
		keys = append(keys, more...)
	}
	if len(keys) == 0 {
		if c.AllowUnsigned {
			return nil, nil
		}
		return nil, ErrNoTrustedKeys
	}
	return NewVerifier(keys...)
}
