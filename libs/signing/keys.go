package signing

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ErrKeyFilePermissions is returned for a private key file that group or
// others may read or write: the key would not be the control plane's alone.
var ErrKeyFilePermissions = errors.New("signing: private key file is readable by others (want mode 0600)")

// PEM block types and the header naming a public key's id.
const (
	pemPrivate  = "PRIVATE KEY"
	pemPublic   = "PUBLIC KEY"
	pemKeyIDHdr = "Key-Id"
)

func checkKeyID(kid string) error {
	if kid == "" || len(kid) > 128 || strings.ContainsAny(kid, ": \t\r\n,") {
		return fmt.Errorf("%w: key id %q must be 1-128 characters without ':', ',' or white space", ErrInvalidKey, kid)
	}
	return nil
}

// GenerateKey returns a new ed25519 private key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("signing: generate key: %w", err)
	}
	return key, nil
}

// WritePrivateKeyFile writes key to path as a PKCS #8 PEM block with mode
// 0600; it refuses to replace an existing file (an error wrapping
// fs.ErrExist). The file appears whole or not at all: another process
// never reads it half written.
func WritePrivateKeyFile(path string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("signing: encode private key: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".signing-key-*")
	if err != nil {
		return fmt.Errorf("signing: create private key file: %w", err)
	}
	defer os.Remove(f.Name()) //nolint:errcheck // linked to path below, or garbage
	if err := f.Chmod(0o600); err != nil {
		_ = f.Close()
		return fmt.Errorf("signing: create private key file: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: pemPrivate, Bytes: der}); err != nil {
		_ = f.Close()
		return fmt.Errorf("signing: write private key file: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("signing: write private key file: %w", err)
	}
	// A hard link fails where path exists: an atomic create-if-absent.
	if err := os.Link(f.Name(), path); err != nil {
		return fmt.Errorf("signing: create private key file: %w", err)
	}
	return nil
}

// ReadPrivateKeyFile reads an ed25519 private key from path: a PKCS #8
// PEM block, or a 32-byte seed, raw or in base64. The file must not be
// readable by others nor writable by anyone but its owner
// (ErrKeyFilePermissions); its group may read it, as a Kubernetes Secret
// mounted for a non-root pod is (mode 0440, group fsGroup).
func ReadPrivateKeyFile(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("signing: private key file: %w", err)
	}
	if st.Mode().Perm()&0o037 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %#o", ErrKeyFilePermissions, path, st.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("signing: private key file: %w", err)
	}
	return ParsePrivateKey(raw)
}

// ParsePrivateKey reads an ed25519 private key: a PKCS #8 PEM block, or a
// 32-byte seed, raw or in base64.
func ParsePrivateKey(raw []byte) (ed25519.PrivateKey, error) {
	if b, _ := pem.Decode(raw); b != nil {
		if b.Type != pemPrivate {
			return nil, fmt.Errorf("%w: PEM block %q, want %q", ErrInvalidKey, b.Type, pemPrivate)
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
		}
		ek, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("%w: PEM key is %T, want ed25519", ErrInvalidKey, k)
		}
		return ek, nil
	}
	if len(raw) == ed25519.SeedSize {
		return ed25519.NewKeyFromSeed(raw), nil
	}
	seed, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(raw)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: neither a PKCS #8 PEM block nor a 32-byte seed (raw or base64)", ErrInvalidKey)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// String renders k as "kid:base64", the form ParsePublicKey and the
// trusted-keys settings read.
func (k PublicKey) String() string {
	return k.ID + ":" + base64.StdEncoding.EncodeToString(k.Key)
}

// PEM renders k as a PEM block (PKIX) with a Key-Id header.
func (k PublicKey) PEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k.Key)
	if err != nil {
		return nil, fmt.Errorf("signing: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Headers: map[string]string{pemKeyIDHdr: k.ID}, Bytes: der}), nil
}

// ParsePublicKey reads one "kid:base64" public key.
func ParsePublicKey(s string) (PublicKey, error) {
	kid, b64, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return PublicKey{}, fmt.Errorf("%w: public key must be \"<key id>:<base64>\"", ErrInvalidKey)
	}
	if err := checkKeyID(kid); err != nil {
		return PublicKey{}, err
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) != ed25519.PublicKeySize {
		return PublicKey{}, fmt.Errorf("%w: public key %q is not %d bytes of base64", ErrInvalidKey, kid, ed25519.PublicKeySize)
	}
	return PublicKey{ID: kid, Key: ed25519.PublicKey(key)}, nil
}

// ParsePublicKeys reads public keys: PEM blocks of type PUBLIC KEY with a
// Key-Id header, or lines "kid:base64"; blank lines and lines starting
// with '#' are skipped.
func ParsePublicKeys(raw []byte) ([]PublicKey, error) {
	var keys []PublicKey
	if bytes.Contains(raw, []byte("-----BEGIN")) {
		rest := raw
		for {
			var b *pem.Block
			b, rest = pem.Decode(rest)
			if b == nil {
				break
			}
			if b.Type != pemPublic {
				return nil, fmt.Errorf("%w: PEM block %q, want %q", ErrInvalidKey, b.Type, pemPublic)
			}
			k, err := x509.ParsePKIXPublicKey(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidKey, err)
			}
			ek, ok := k.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("%w: PEM key is %T, want ed25519", ErrInvalidKey, k)
			}
			kid := b.Headers[pemKeyIDHdr]
			if err := checkKeyID(kid); err != nil {
				return nil, fmt.Errorf("PEM public key needs a %s header: %w", pemKeyIDHdr, err)
			}
			keys = append(keys, PublicKey{ID: kid, Key: ek})
		}
		return keys, nil
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := ParsePublicKey(line)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("signing: read public keys: %w", err)
	}
	return keys, nil
}

// LoadOrGenerate reads the private key at path; when the file does not
// exist and generate is set, it creates one (mode 0600) and writes its
// public key beside it, at path+".pub", as "kid:base64", for the agents.
func LoadOrGenerate(path, kid string, generate bool) (ed25519.PrivateKey, error) {
	key, err := ReadPrivateKeyFile(path)
	if err == nil || !generate || !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if err := checkKeyID(kid); err != nil {
		return nil, err
	}
	if key, err = GenerateKey(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("signing: key directory: %w", err)
	}
	if err := WritePrivateKeyFile(path, key); err != nil {
		// Another process generated it first: use that one.
		if errors.Is(err, fs.ErrExist) {
			return ReadPrivateKeyFile(path)
		}
		return nil, err
	}
	pub := PublicKey{ID: kid, Key: key.Public().(ed25519.PublicKey)}
	if err := os.WriteFile(path+".pub", []byte(pub.String()+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("signing: write public key file: %w", err)
	}
	return key, nil
}
