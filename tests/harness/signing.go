package harness

import (
	"path/filepath"
	"testing"

	"github.com/outposthq/outpost/libs/signing"
)

// SigningKey is a control-plane signing key made for one test: its file,
// for the signing services, and its public key, for the agents.
type SigningKey struct {
	ID     string
	File   string
	Signer *signing.Signer
}

// NewSigningKey generates a key with id kid and writes it (mode 0600) to a
// temporary folder of t.
func NewSigningKey(t testing.TB, kid string) *SigningKey {
	t.Helper()
	key, err := signing.GenerateKey()
	if err != nil {
		t.Fatalf("signing key: %v", err)
	}
	file := filepath.Join(t.TempDir(), kid+".key")
	if err := signing.WritePrivateKeyFile(file, key); err != nil {
		t.Fatalf("signing key: %v", err)
	}
	s, err := signing.NewSigner(kid, key, 0)
	if err != nil {
		t.Fatalf("signing key: %v", err)
	}
	return &SigningKey{ID: kid, File: file, Signer: s}
}

// SignerEnv configures a signing service (scheduler, account-migrator)
// with the key.
func (k *SigningKey) SignerEnv() map[string]string {
	return map[string]string{"OUTPOST_SIGNING_KEY_FILE": k.File, "OUTPOST_SIGNING_KEY_ID": k.ID}
}

// TrustEnv configures an agent (runner, watcher) to trust the given keys.
func TrustEnv(keys ...*SigningKey) map[string]string {
	var list string
	for i, k := range keys {
		if i > 0 {
			list += ","
		}
		list += k.Signer.Public().String()
	}
	return map[string]string{"OUTPOST_SIGNING_TRUSTED_KEYS": list}
}
