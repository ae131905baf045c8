package signing_test

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"

	"github.com/outposthq/outpost/libs/signing"
	commonv1 "github.com/outposthq/outpost/proto/outpost/common/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

func newSigner(t *testing.T, kid string) *signing.Signer {
	t.Helper()
	key, err := signing.GenerateKey()
	require.NoError(t, err)
	s, err := signing.NewSigner(kid, key, time.Hour)
	require.NoError(t, err)
	return s
}

func job() *jobsv1.JobDispatched {
	return &jobsv1.JobDispatched{
		Envelope:     &commonv1.Envelope{Tenant: "acme", EventId: "e1", Attempt: 1},
		JobId:        "job-1",
		AttemptToken: "tok",
		Spec: &jobsv1.JobSpec{Pool: "default", Labels: map[string]string{"a": "1", "b": "2", "c": "3"}, Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{
			Command: "touch", Args: []string{"/tmp/x"}, Env: map[string]string{"X": "1", "Y": "2"},
		}}}},
	}
}

func binding(tenant, pool string) signing.Binding {
	return signing.Binding{Tenant: tenant, Scope: signing.PoolScope(pool), Subject: "job-1", Attempt: 1}
}

func TestSignVerify(t *testing.T) {
	s := newSigner(t, "k1")
	other := newSigner(t, "k2")
	v, err := signing.NewVerifier(s.Public())
	require.NoError(t, err)
	both, err := signing.NewVerifier(s.Public(), other.Public())
	require.NoError(t, err)

	tests := []struct {
		name   string
		mutate func(m *jobsv1.JobDispatched) // after signing
		signer *signing.Signer
		v      *signing.Verifier
		b      signing.Binding
		want   error
	}{
		{name: "valid", signer: s, v: v, b: binding("acme", "default")},
		{name: "rotation: new key on a verifier trusting both", signer: other, v: both, b: binding("acme", "default")},
		{name: "unsigned", signer: nil, v: v, b: binding("acme", "default"), want: signing.ErrUnsigned},
		{name: "tampered command", signer: s, v: v, b: binding("acme", "default"), want: signing.ErrBadSignature,
			mutate: func(m *jobsv1.JobDispatched) { m.GetSpec().GetTask().GetCommand().Command = "rm" }},
		{name: "tampered attempt token", signer: s, v: v, b: binding("acme", "default"), want: signing.ErrBadSignature,
			mutate: func(m *jobsv1.JobDispatched) { m.AttemptToken = "forged" }},
		{name: "tampered signature bytes", signer: s, v: v, b: binding("acme", "default"), want: signing.ErrBadSignature,
			mutate: func(m *jobsv1.JobDispatched) { m.Signature.Signature[0] ^= 1 }},
		{name: "truncated signature", signer: s, v: v, b: binding("acme", "default"), want: signing.ErrBadSignature,
			mutate: func(m *jobsv1.JobDispatched) { m.Signature.Signature = m.Signature.Signature[:40] }},
		{name: "extended expiry", signer: s, v: v, b: binding("acme", "default"), want: signing.ErrBadSignature,
			mutate: func(m *jobsv1.JobDispatched) { m.Signature.ExpiresAt.Seconds += 3600 }},
		{name: "key id swapped to a trusted one", signer: other, v: both, b: binding("acme", "default"), want: signing.ErrBadSignature,
			mutate: func(m *jobsv1.JobDispatched) { m.Signature.KeyId = "k1" }},
		{name: "unknown key", signer: other, v: v, b: binding("acme", "default"), want: signing.ErrUnknownKey},
		{name: "wrong tenant", signer: s, v: v, b: binding("other", "default"), want: signing.ErrWrongTenant},
		{name: "wrong pool", signer: s, v: v, b: signing.Binding{Tenant: "acme", Scope: signing.PoolScope("gpu"), Subject: "job-1", Attempt: 1}, want: signing.ErrWrongScope},
		{name: "scope rewritten", signer: s, v: v, b: signing.Binding{Tenant: "acme", Scope: signing.PoolScope("gpu"), Subject: "job-1", Attempt: 1}, want: signing.ErrBadSignature,
			mutate: func(m *jobsv1.JobDispatched) { m.Signature.Scope = signing.PoolScope("gpu") }},
		{name: "other subject", signer: s, v: v, b: signing.Binding{Tenant: "acme", Scope: signing.PoolScope("default"), Subject: "job-2", Attempt: 1}, want: signing.ErrBadSignature},
		{name: "other attempt", signer: s, v: v, b: signing.Binding{Tenant: "acme", Scope: signing.PoolScope("default"), Subject: "job-1", Attempt: 2}, want: signing.ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := job()
			if tc.signer != nil {
				require.NoError(t, tc.signer.Sign(m, binding("acme", "default")))
			}
			if tc.mutate != nil {
				tc.mutate(m)
			}
			// What is verified is what went over the wire.
			raw, err := events.Encode("s", m, "")
			require.NoError(t, err)
			got, err := events.DecodeAs[*jobsv1.JobDispatched](raw.Header, raw.Data)
			require.NoError(t, err)
			err = tc.v.Verify(got, raw.Data, got.GetEnvelope().GetTenant(), tc.b)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
		})
	}
}

// Signing a signed message replaces its signature: the old one is not
// part of what the new one covers.
func TestResign(t *testing.T) {
	s := newSigner(t, "k1")
	v, err := signing.NewVerifier(s.Public())
	require.NoError(t, err)
	m := job()
	require.NoError(t, newSigner(t, "k2").Sign(m, signing.Binding{Tenant: "acme", Scope: signing.PoolScope("default"), Subject: "job-1", Attempt: 2}))
	require.NoError(t, s.Sign(m, binding("acme", "default")))
	raw, err := events.Encode("s", m, "")
	require.NoError(t, err)
	got, err := events.DecodeAs[*jobsv1.JobDispatched](raw.Header, raw.Data)
	require.NoError(t, err)
	require.NoError(t, v.Verify(got, raw.Data, "acme", binding("acme", "default")))
	require.Equal(t, "k1", got.GetSignature().GetKeyId())
}

func TestExpired(t *testing.T) {
	s := newSigner(t, "k1")
	v, err := signing.NewVerifier(s.Public())
	require.NoError(t, err)
	m := &watchv1.Operation{Envelope: &commonv1.Envelope{Tenant: "acme"}, Id: "op-1", Account: "prod"}
	b := signing.Binding{Tenant: "acme", Scope: signing.ZoneScope("eu"), Subject: "op-1"}
	require.NoError(t, s.WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) }).Sign(m, b))
	err = v.Verify(m, nil, "acme", b)
	require.ErrorIs(t, err, signing.ErrExpired)
	require.Equal(t, signing.ReasonExpired, signing.Reason(err))
	require.NoError(t, v.WithClock(func() time.Time { return time.Now().Add(-90 * time.Minute) }).Verify(m, nil, "acme", b))
}

// A control plane newer than the agent signs fields the agent does not
// know: they reach it as unknown fields, and still verify, as sent; a
// change to one of them does not.
func TestUnknownFieldsVerify(t *testing.T) {
	s := newSigner(t, "k1")
	v, err := signing.NewVerifier(s.Public())
	require.NoError(t, err)
	newer := job()
	// Field 99 of JobDispatched, a string, as a newer version would send it.
	extra := protowire.AppendTag(nil, 99, protowire.BytesType)
	extra = protowire.AppendString(extra, "from a newer version")
	newer.ProtoReflect().SetUnknown(extra)
	require.NoError(t, s.Sign(newer, binding("acme", "default")))
	raw, err := events.Encode("s", newer, "")
	require.NoError(t, err)

	old := &jobsv1.JobDispatched{}
	require.NoError(t, proto.Unmarshal(raw.Data, old))
	require.NotEmpty(t, old.ProtoReflect().GetUnknown())
	require.NoError(t, v.Verify(old, raw.Data, "acme", binding("acme", "default")))

	tampered := bytes.Replace(raw.Data, []byte("newer version"), []byte("older version"), 1)
	require.NotEqual(t, raw.Data, tampered)
	require.ErrorIs(t, v.Verify(old, tampered, "acme", binding("acme", "default")), signing.ErrBadSignature)
}

func TestNotSignable(t *testing.T) {
	s := newSigner(t, "k1")
	require.ErrorIs(t, s.Sign(&jobsv1.JobStatus{}, signing.Binding{}), signing.ErrNotSignable)
}

func TestReason(t *testing.T) {
	require.Equal(t, signing.ReasonUnsigned, signing.Reason(signing.ErrUnsigned))
	require.Equal(t, signing.ReasonBadSignature, signing.Reason(signing.ErrBadSignature))
	require.Equal(t, signing.ReasonUnknownKey, signing.Reason(signing.ErrUnknownKey))
	require.Equal(t, signing.ReasonWrongTenant, signing.Reason(signing.ErrWrongTenant))
	require.Equal(t, signing.ReasonWrongScope, signing.Reason(signing.ErrWrongScope))
	require.Equal(t, signing.ReasonInvalid, signing.Reason(os.ErrClosed))
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "signing.key")

	_, err := signing.LoadOrGenerate(path, "k1", false)
	require.ErrorIs(t, err, os.ErrNotExist)

	key, err := signing.LoadOrGenerate(path, "k1", true)
	require.NoError(t, err)
	st, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	again, err := signing.LoadOrGenerate(path, "k1", true)
	require.NoError(t, err)
	require.True(t, key.Equal(again), "an existing key is kept")

	cfg := signing.VerifierConfig{TrustedKeysFile: path + ".pub"}
	v, err := cfg.Verifier()
	require.NoError(t, err)
	s, err := signing.SignerConfig{KeyFile: path, KeyID: "k1"}.Signer()
	require.NoError(t, err)
	m := job()
	require.NoError(t, s.Sign(m, binding("acme", "default")))
	require.NoError(t, v.Verify(m, nil, "acme", binding("acme", "default")))

	for _, mode := range []os.FileMode{0o644, 0o604, 0o660, 0o620} {
		require.NoError(t, os.Chmod(path, mode))
		_, err = signing.ReadPrivateKeyFile(path)
		require.ErrorIs(t, err, signing.ErrKeyFilePermissions, "mode %#o", mode)
	}
	// A Kubernetes Secret mounted for a non-root pod: read by its group.
	require.NoError(t, os.Chmod(path, 0o440))
	_, err = signing.ReadPrivateKeyFile(path)
	require.NoError(t, err)

	// A raw seed, and a base64 one.
	seed := key.Seed()
	raw := filepath.Join(dir, "raw.key")
	require.NoError(t, os.WriteFile(raw, seed, 0o600))
	k2, err := signing.ReadPrivateKeyFile(raw)
	require.NoError(t, err)
	require.True(t, key.Equal(k2))
	_, err = signing.ParsePrivateKey([]byte("not a key"))
	require.ErrorIs(t, err, signing.ErrInvalidKey)
}

func TestPublicKeyForms(t *testing.T) {
	a := newSigner(t, "a").Public()
	b := newSigner(t, "b").Public()
	pemA, err := a.PEM()
	require.NoError(t, err)
	pemB, err := b.PEM()
	require.NoError(t, err)

	keys, err := signing.ParsePublicKeys(append(pemA, pemB...))
	require.NoError(t, err)
	require.Equal(t, []signing.PublicKey{a, b}, keys)

	keys, err = signing.ParsePublicKeys([]byte("# trusted\n" + a.String() + "\n\n" + b.String() + "\n"))
	require.NoError(t, err)
	require.Equal(t, []signing.PublicKey{a, b}, keys)

	for _, bad := range []string{"nokid", ":AAAA", "k:not-base64!", "k:AAAA"} {
		t.Run(bad, func(t *testing.T) {
			_, err := signing.ParsePublicKey(bad)
			require.ErrorIs(t, err, signing.ErrInvalidKey)
		})
	}
}

func TestNewVerifier(t *testing.T) {
	a := newSigner(t, "a").Public()
	// y = 2 is no point's coordinate on the curve: no signature verifies
	// with such a key, so it is refused when the verifier is made.
	notAPoint := make(ed25519.PublicKey, ed25519.PublicKeySize)
	notAPoint[0] = 2
	tests := []struct {
		name string
		keys []signing.PublicKey
		ok   bool
	}{
		{name: "one key", keys: []signing.PublicKey{a}, ok: true},
		{name: "the same key twice", keys: []signing.PublicKey{a, a}, ok: true},
		{name: "no key"},
		{name: "short key", keys: []signing.PublicKey{{ID: "k", Key: a.Key[:31]}}},
		{name: "not a point of the curve", keys: []signing.PublicKey{{ID: "k", Key: notAPoint}}},
		{name: "one id for two keys", keys: []signing.PublicKey{a, {ID: "a", Key: newSigner(t, "b").Public().Key}}},
		{name: "bad key id", keys: []signing.PublicKey{{ID: "a b", Key: a.Key}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := signing.NewVerifier(tc.keys...)
			if tc.ok {
				require.NoError(t, err)
				require.NotNil(t, v)
				return
			}
			require.ErrorIs(t, err, signing.ErrInvalidKey)
		})
	}
}

// BenchmarkVerify is an agent's check of one no-op JobDispatched as it
// arrives: the signature, the binding and the message less its signature.
func BenchmarkVerify(b *testing.B) {
	key, err := signing.GenerateKey()
	require.NoError(b, err)
	s, err := signing.NewSigner("k1", key, time.Hour)
	require.NoError(b, err)
	v, err := signing.NewVerifier(s.Public())
	require.NoError(b, err)
	m := job()
	require.NoError(b, s.Sign(m, binding("acme", "default")))
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	require.NoError(b, err)
	b.ReportAllocs()
	for b.Loop() {
		if err := v.Verify(m, raw, "acme", binding("acme", "default")); err != nil {
			b.Fatal(err)
		}
	}
}

func TestVerifierConfig(t *testing.T) {
	a := newSigner(t, "a").Public()
	tests := []struct {
		name    string
		cfg     signing.VerifierConfig
		wantNil bool
		want    error
	}{
		{name: "keys", cfg: signing.VerifierConfig{TrustedKeys: []string{a.String()}}},
		{name: "none refused", cfg: signing.VerifierConfig{}, want: signing.ErrNoTrustedKeys},
		{name: "none, unsigned allowed", cfg: signing.VerifierConfig{AllowUnsigned: true}, wantNil: true},
		{name: "same key twice", cfg: signing.VerifierConfig{TrustedKeys: []string{a.String(), a.String()}}},
		{name: "one id, two keys", cfg: signing.VerifierConfig{TrustedKeys: []string{a.String(), "a:" + newSigner(t, "x").Public().String()[2:]}}, want: signing.ErrInvalidKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := tc.cfg.Verifier()
			if tc.want != nil {
				require.ErrorIs(t, err, tc.want)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantNil, v == nil)
		})
	}
}

// Processes that start together generate one key: every caller gets it.
func TestLoadOrGenerateConcurrently(t *testing.T) {
	path := filepath.Join(t.TempDir(), "signing.key")
	keys := make(chan ed25519.PrivateKey, 8)
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			k, err := signing.LoadOrGenerate(path, "k1", true)
			keys <- k
			errs <- err
		}()
	}
	var first ed25519.PrivateKey
	for range 8 {
		require.NoError(t, <-errs)
		k := <-keys
		if first == nil {
			first = k
		}
		require.True(t, first.Equal(k))
	}
	require.ErrorIs(t, signing.WritePrivateKeyFile(path, first), os.ErrExist)
}

func TestWithTTL(t *testing.T) {
	s := newSigner(t, "k1")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	long := s.WithTTL(365 * 24 * time.Hour).WithClock(func() time.Time { return now })
	m := &watchv1.Operation{Envelope: &commonv1.Envelope{Tenant: "acme"}, Id: "op-1"}
	require.NoError(t, long.Sign(m, signing.Binding{Tenant: "acme", Scope: signing.ZoneScope("eu")}))
	require.Equal(t, now.Add(365*24*time.Hour), m.GetSignature().GetExpiresAt().AsTime())
	require.NoError(t, s.WithClock(func() time.Time { return now }).Sign(m, signing.Binding{Tenant: "acme", Scope: signing.ZoneScope("eu")}))
	require.Equal(t, now.Add(time.Hour), m.GetSignature().GetExpiresAt().AsTime(), "the original keeps its TTL")
}
