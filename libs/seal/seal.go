// Package seal seals and opens the inline kubeconfigs of accounts with a
// key of their tenant, so that a credential rests in the accounts bucket
// and crosses the queue unreadable by the broker, and a watcher of one
// tenant cannot open another tenant's. The account-migrator seals, the
// k8s-watcher opens; both use this package only.
//
// Keys: a keyring holds master keys (32 bytes each) under short ids; the
// key of a tenant is derived from a master key with HKDF-SHA256, the
// tenant in its info, so one master key serves every tenant of an
// installation while no two tenants share a key. The first key of the
// keyring seals; every key opens, which is how keys rotate: add a new key
// first, let the migrator re-seal (a PATCH of kubeconfigContents), then
// drop the old one.
//
// Format of a sealed value:
//
//	"osk1" | len(key id) (1 byte) | key id | nonce (12 bytes) | AES-256-GCM(ciphertext || tag)
//
// with the header and the tenant as additional data, so a value moved to
// another tenant's account does not open. A value without the "osk1"
// header is one sealed before key ids: nonce || ciphertext with the
// legacy key itself (no derivation, no additional data); it opens only
// when the keyring has a legacy key.
package seal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// KeySize is the length of a master key and of a legacy key: AES-256.
const KeySize = 32

// DefaultKeyID names the legacy key when it also serves as the master key
// (a keyring configured with a legacy key only).
const DefaultKeyID = "default"

var (
	// ErrNoKey is returned by Seal and Open when the keyring has no key
	// for the work: nothing is ever stored in plain text instead.
	ErrNoKey = errors.New("seal: no key configured")
	// ErrUnknownKey is returned by Open for a value sealed with a key id
	// the keyring does not hold (a key dropped too early, another
	// installation's value).
	ErrUnknownKey = errors.New("seal: sealed with a key this keyring does not hold")
	// ErrOpen is returned for a value the key does not open: a wrong key
	// or tenant, or a truncated or altered value.
	ErrOpen = errors.New("seal: cannot open: wrong key or corrupted value")
	// ErrInvalidKey is returned for a key or key id that cannot be used.
	ErrInvalidKey = errors.New("seal: invalid key")
)

var magic = []byte("osk1")

var keyIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Key is one master key and its id.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring seals with its first key and opens with any of them.
type Keyring struct {
	keys   []Key
	legacy []byte
}

// NewKeyring returns a keyring of keys (the first seals) and legacy, the
// key of values sealed without a key id (nil: they do not open).
func NewKeyring(keys []Key, legacy []byte) (*Keyring, error) {
	seen := map[string]bool{}
	for _, k := range keys {
		if !keyIDPattern.MatchString(k.ID) {
			return nil, fmt.Errorf("%w: key id %q must be 1-32 characters of [A-Za-z0-9_-]", ErrInvalidKey, k.ID)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("%w: key id %q given twice", ErrInvalidKey, k.ID)
		}
		seen[k.ID] = true
		if len(k.Secret) != KeySize {
			return nil, fmt.Errorf("%w: key %q must be %d bytes, is %d", ErrInvalidKey, k.ID, KeySize, len(k.Secret))
		}
	}
	if legacy != nil && len(legacy) != KeySize {
		return nil, fmt.Errorf("%w: legacy key must be %d bytes, is %d", ErrInvalidKey, KeySize, len(legacy))
	}
	return &Keyring{keys: keys, legacy: legacy}, nil
}

// Parse builds a keyring from configuration: entries "id=<base64 key>"
// (the first seals) and legacy, a base64 key opening values without a key
// id. With no entries, the legacy key is also the master key, id
// DefaultKeyID, so that an installation configured with one key seals per
// tenant and still opens what it sealed before.
func Parse(entries []string, legacy string) (*Keyring, error) {
	var keys []Key
	for _, e := range entries {
		id, b64, ok := strings.Cut(e, "=")
		if !ok || !keyIDPattern.MatchString(id) {
			// The entry is not echoed: it may be a key without its id.
			return nil, fmt.Errorf("%w: entry %d must be id=<base64 key>, the id 1-32 characters of [A-Za-z0-9_-]", ErrInvalidKey, len(keys)+1)
		}
		secret, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("%w: key %q is not base64", ErrInvalidKey, id)
		}
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	var old []byte
	if legacy != "" {
		var err error
		if old, err = base64.StdEncoding.DecodeString(legacy); err != nil {
			return nil, fmt.Errorf("%w: legacy key is not base64", ErrInvalidKey)
		}
		if len(keys) == 0 && len(old) == KeySize {
			keys = []Key{{ID: DefaultKeyID, Secret: old}}
		}
	}
	return NewKeyring(keys, old)
}

// CanSeal tells whether the keyring has a key to seal with.
func (k *Keyring) CanSeal() bool { return k != nil && len(k.keys) > 0 }

// SealingKeyID is the id of the key Seal uses, "" when none.
func (k *Keyring) SealingKeyID() string {
	if !k.CanSeal() {
		return ""
	}
	return k.keys[0].ID
}

// KeyID returns the key id a sealed value names, and false for a value
// sealed without one.
func KeyID(sealed []byte) (string, bool) {
	h, _, ok := parse(sealed)
	return h.id, ok
}

type header struct {
	raw []byte
	id  string
}

func parse(sealed []byte) (header, []byte, bool) {
	if !bytes.HasPrefix(sealed, magic) || len(sealed) < len(magic)+1 {
		return header{}, nil, false
	}
	n := int(sealed[len(magic)])
	end := len(magic) + 1 + n
	if n == 0 || len(sealed) < end {
		return header{}, nil, false
	}
	return header{raw: sealed[:end], id: string(sealed[len(magic)+1 : end])}, sealed[end:], true
}

func tenantKey(master []byte, tenant string) ([]byte, error) {
	return hkdf.Key(sha256.New, master, nil, "outpost kubeconfig v1\x00"+tenant, KeySize)
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return cipher.NewGCM(block)
}

func additional(h []byte, tenant string) []byte {
	return append(append(bytes.Clone(h), 0), tenant...)
}

// Seal encrypts plain for tenant with the keyring's first key.
func (k *Keyring) Seal(tenant string, plain []byte) ([]byte, error) {
	if !k.CanSeal() {
		return nil, ErrNoKey
	}
	key := k.keys[0]
	tk, err := tenantKey(key.Secret, tenant)
	if err != nil {
		return nil, fmt.Errorf("seal: derive key: %w", err)
	}
	g, err := gcm(tk)
	if err != nil {
		return nil, err
	}
	h := append(append(bytes.Clone(magic), byte(len(key.ID))), key.ID...)
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	out := append(h, nonce...)
	return g.Seal(out, nonce, plain, additional(h, tenant)), nil
}

// Open decrypts what Seal produced for tenant, with whichever key of the
// keyring its id names; a value without a key id opens with the legacy
// key.
func (k *Keyring) Open(tenant string, sealed []byte) ([]byte, error) {
	if k == nil {
		return nil, ErrNoKey
	}
	h, body, ok := parse(sealed)
	if !ok {
		return k.openLegacy(sealed)
	}
	var master []byte
	for _, key := range k.keys {
		if key.ID == h.id {
			master = key.Secret
			break
		}
	}
	if master == nil {
		if plain, err := k.openLegacy(sealed); err == nil {
			return plain, nil // a legacy nonce that happened to look like a header
		}
		return nil, fmt.Errorf("%w: key id %q", ErrUnknownKey, h.id)
	}
	tk, err := tenantKey(master, tenant)
	if err != nil {
		return nil, fmt.Errorf("seal: derive key: %w", err)
	}
	g, err := gcm(tk)
	if err != nil {
		return nil, err
	}
	if len(body) < g.NonceSize()+g.Overhead() {
		return nil, ErrOpen
	}
	plain, err := g.Open(nil, body[:g.NonceSize()], body[g.NonceSize():], additional(h.raw, tenant))
	if err != nil {
		if plain, lerr := k.openLegacy(sealed); lerr == nil {
			return plain, nil
		}
		return nil, ErrOpen
	}
	return plain, nil
}

func (k *Keyring) openLegacy(sealed []byte) ([]byte, error) {
	if k.legacy == nil {
		return nil, fmt.Errorf("%w: the value has no key id and no legacy key is configured", ErrNoKey)
	}
	g, err := gcm(k.legacy)
	if err != nil {
		return nil, err
	}
	if len(sealed) < g.NonceSize()+g.Overhead() {
		return nil, ErrOpen
	}
	plain, err := g.Open(nil, sealed[:g.NonceSize()], sealed[g.NonceSize():], nil)
	if err != nil {
		return nil, ErrOpen
	}
	return plain, nil
}

// SealLegacy seals plain the way values were sealed before key ids: for
// tests of the upgrade path and nothing else.
func SealLegacy(key, plain []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("%w: legacy key must be %d bytes, is %d", ErrInvalidKey, KeySize, len(key))
	}
	g, err := gcm(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal: nonce: %w", err)
	}
	return g.Seal(nonce, nonce, plain, nil), nil
}
