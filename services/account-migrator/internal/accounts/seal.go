package accounts

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// ErrNoKey is returned by Seal when no kubeconfig key is configured: an
// inline kubeconfig is never stored in plain text.
var ErrNoKey = errors.New("inline kubeconfigs need kubeconfig_key to be configured")

// Sealer seals inline kubeconfigs with AES-256-GCM so that they rest in the
// KV bucket and travel to the watcher without ever being readable by the
// broker. Only the watchers, configured with the same key, open them.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a sealer for a 32-byte key, or one that refuses to seal
// when key is nil.
func NewSealer(key []byte) (*Sealer, error) {
	if key == nil {
		return &Sealer{}, nil
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig key: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// Enabled reports whether a key is configured.
func (s *Sealer) Enabled() bool { return s.aead != nil }

// Seal returns nonce (12 bytes) || ciphertext.
func (s *Sealer) Seal(plain []byte) ([]byte, error) {
	if s.aead == nil {
		return nil, ErrNoKey
	}
	nonce := make([]byte, s.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("seal kubeconfig: %w", err)
	}
	return s.aead.Seal(nonce, nonce, plain, nil), nil
}

// Open reverses Seal; the migrator itself only needs it in tests.
func (s *Sealer) Open(sealed []byte) ([]byte, error) {
	if s.aead == nil {
		return nil, ErrNoKey
	}
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return nil, errors.New("open kubeconfig: too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], nil)
	if err != nil {
		return nil, fmt.Errorf("open kubeconfig: %w", err)
	}
	return plain, nil
}
