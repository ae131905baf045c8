package accounts

import (
	"errors"

	"github.com/outposthq/outpost/libs/seal"
)

// ErrNoKey is returned by Seal when no kubeconfig key is configured: an
// inline kubeconfig is never stored in plain text.
var ErrNoKey = errors.New("inline kubeconfigs need kubeconfig_key to be configured")

// Sealer seals inline kubeconfigs (libs/seal) with a key of one tenant,
// so that they rest in the KV bucket and travel to that tenant's watchers
// without ever being readable by the broker or by another tenant's
// watchers.
type Sealer struct {
	keys   *seal.Keyring
	tenant string
}

// NewSealer returns a sealer of keys, or one that refuses to seal when
// keys is nil or holds no key. ForTenant binds it to a tenant.
func NewSealer(keys *seal.Keyring) *Sealer { return &Sealer{keys: keys} }

// ForTenant is the sealer of tenant's accounts.
func (s *Sealer) ForTenant(tenant string) *Sealer { return &Sealer{keys: s.keys, tenant: tenant} }

// Enabled reports whether a key is configured.
func (s *Sealer) Enabled() bool { return s.keys.CanSeal() }

// Seal seals plain with the keyring's sealing key, for the tenant.
func (s *Sealer) Seal(plain []byte) ([]byte, error) {
	if !s.Enabled() {
		return nil, ErrNoKey
	}
	return s.keys.Seal(s.tenant, plain)
}

// Open reverses Seal; the migrator itself only needs it in tests.
func (s *Sealer) Open(sealed []byte) ([]byte, error) {
	if s.keys == nil {
		return nil, ErrNoKey
	}
	return s.keys.Open(s.tenant, sealed)
}
