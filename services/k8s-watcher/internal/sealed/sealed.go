// Package sealed seals and opens the inline kubeconfigs of accounts, so
// that a credential never crosses the queue in plain text. The
// account-migrator seals with the same format and key:
//
//	AES-256-GCM, key = 32 bytes, output = nonce (12 bytes) || ciphertext+tag
//
// with no additional data.
package sealed

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// KeySize is the length of a key: AES-256.
const KeySize = 32

// ErrNoKey is returned by Open and Seal without a key.
var ErrNoKey = errors.New("sealed: no key configured")

// ErrOpen is returned for a sealed value that the key does not open: a
// wrong key, or a truncated or altered value.
var ErrOpen = errors.New("sealed: cannot open: wrong key or corrupted value")

func aead(key []byte) (cipher.AEAD, error) {
	if len(key) == 0 {
		return nil, ErrNoKey
	}
	if len(key) != KeySize {
		return nil, fmt.Errorf("sealed: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("sealed: %w", err)
	}
	return cipher.NewGCM(block)
}

// Seal encrypts plain with key: nonce || ciphertext.
func Seal(key, plain []byte) ([]byte, error) {
	g, err := aead(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, g.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("sealed: nonce: %w", err)
	}
	return g.Seal(nonce, nonce, plain, nil), nil
}

// Open decrypts what Seal produced.
func Open(key, sealed []byte) ([]byte, error) {
	g, err := aead(key)
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
