package seal_test

import (
	"bytes"
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/seal"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, seal.KeySize) }

func ring(t *testing.T, legacy []byte, keys ...seal.Key) *seal.Keyring {
	t.Helper()
	k, err := seal.NewKeyring(keys, legacy)
	require.NoError(t, err)
	return k
}

func TestSealOpen(t *testing.T) {
	plain := []byte("apiVersion: v1\nkind: Config\n")
	k1, k2 := seal.Key{ID: "k1", Secret: key(1)}, seal.Key{ID: "k2", Secret: key(2)}
	old := ring(t, nil, k1)
	rotated := ring(t, nil, k2, k1)
	newOnly := ring(t, nil, k2)
	withLegacy := ring(t, key(9), k2)

	byOld, err := old.Seal("acme", plain)
	require.NoError(t, err)
	byNew, err := rotated.Seal("acme", plain)
	require.NoError(t, err)
	legacy, err := seal.SealLegacy(key(9), plain)
	require.NoError(t, err)
	tampered := bytes.Clone(byNew)
	tampered[len(tampered)-1] ^= 1

	id, ok := seal.KeyID(byNew)
	require.True(t, ok)
	require.Equal(t, "k2", id, "the first key of the keyring seals")
	_, ok = seal.KeyID(legacy)
	require.False(t, ok)

	tests := []struct {
		name   string
		ring   *seal.Keyring
		tenant string
		sealed []byte
		err    error
	}{
		{"same key and tenant", old, "acme", byOld, nil},
		{"old value on a rotated keyring", rotated, "acme", byOld, nil},
		{"new value on a rotated keyring", rotated, "acme", byNew, nil},
		{"old value once its key is dropped", newOnly, "acme", byOld, seal.ErrUnknownKey},
		{"new value on a keyring not yet rotated", old, "acme", byNew, seal.ErrUnknownKey},
		{"another tenant", rotated, "globex", byNew, seal.ErrOpen},
		{"tampered", rotated, "acme", tampered, seal.ErrOpen},
		{"truncated", rotated, "acme", byNew[:10], seal.ErrOpen},
		{"legacy value with the legacy key", withLegacy, "acme", legacy, nil},
		{"legacy value with the legacy key, any tenant", withLegacy, "globex", legacy, nil},
		{"legacy value without a legacy key", rotated, "acme", legacy, seal.ErrNoKey},
		{"legacy value with another legacy key", ring(t, key(8), k2), "acme", legacy, seal.ErrOpen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ring.Open(tt.tenant, tt.sealed)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, plain, got)
		})
	}

	// Per tenant: the same plain text for two tenants gives values that
	// open only for their own tenant.
	a, err := old.Seal("acme", plain)
	require.NoError(t, err)
	b, err := old.Seal("globex", plain)
	require.NoError(t, err)
	require.NotEqual(t, a, b)
	_, err = old.Open("globex", a)
	require.ErrorIs(t, err, seal.ErrOpen)
	got, err := old.Open("globex", b)
	require.NoError(t, err)
	require.Equal(t, plain, got)
	require.NotContains(t, string(a), "Config")
}

func TestNoKey(t *testing.T) {
	empty := ring(t, nil)
	require.False(t, empty.CanSeal())
	_, err := empty.Seal("acme", []byte("x"))
	require.ErrorIs(t, err, seal.ErrNoKey)
	var nilRing *seal.Keyring
	_, err = nilRing.Open("acme", []byte("x"))
	require.ErrorIs(t, err, seal.ErrNoKey)
}

func TestParse(t *testing.T) {
	b64 := func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
	tests := []struct {
		name    string
		entries []string
		legacy  string
		sealID  string
		wantErr string
	}{
		{name: "nothing", sealID: ""},
		{name: "legacy only also seals", legacy: b64(key(1)), sealID: seal.DefaultKeyID},
		{name: "keys, first seals", entries: []string{"k2=" + b64(key(2)), "k1=" + b64(key(1))}, sealID: "k2"},
		{name: "keys and legacy", entries: []string{"k2=" + b64(key(2))}, legacy: b64(key(1)), sealID: "k2"},
		{name: "no id", entries: []string{b64(key(2))}, wantErr: "must be id=<base64 key>"},
		{name: "bad id", entries: []string{"a.b=" + b64(key(2))}, wantErr: "entry 1 must be id=<base64 key>"},
		{name: "twice", entries: []string{"a=" + b64(key(2)), "a=" + b64(key(3))}, wantErr: "given twice"},
		{name: "short", entries: []string{"a=" + b64([]byte("short"))}, wantErr: "must be 32 bytes, is 5"},
		{name: "not base64", entries: []string{"a=%%%"}, wantErr: "not base64"},
		{name: "legacy short", legacy: b64([]byte("short")), wantErr: "legacy key must be 32 bytes, is 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := seal.Parse(tt.entries, tt.legacy)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, seal.ErrInvalidKey)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.sealID, k.SealingKeyID())
		})
	}
}
