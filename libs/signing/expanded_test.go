package signing

import (
	"crypto/ed25519"
	"crypto/fips140"
	"crypto/rand"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"slices"
	"testing"

	voied25519 "github.com/oasisprotocol/curve25519-voi/primitives/ed25519"
	"github.com/stretchr/testify/require"
)

// groupOrder is ℓ, the order of the ed25519 base point.
var groupOrder, _ = new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)

// withUnreducedS returns sig with ℓ added to its S: the same point
// equation holds, but RFC 8032 (and crypto/ed25519) refuse an S that is not
// below ℓ, so that a signature cannot be altered into a second valid one.
func withUnreducedS(sig []byte) []byte {
	le := slices.Clone(sig[32:])
	slices.Reverse(le)
	s := new(big.Int).Add(new(big.Int).SetBytes(le), groupOrder)
	be := s.FillBytes(make([]byte, 32))
	slices.Reverse(be)
	return append(slices.Clone(sig[:32]), be...)
}

// The expanded verification accepts and refuses what crypto/ed25519.Verify
// does, on valid signatures and on each way a signature can be wrong,
// including the edge cases where verification rules differ between
// implementations: an unreduced S, and a small-order key with a small-order R.
func TestExpandedVerifyMatchesStdlib(t *testing.T) {
	type tc struct {
		name     string
		pub      ed25519.PublicKey
		msg, sig []byte
	}
	var cases []tc
	for i := range 50 {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		msg := make([]byte, i*7)
		_, _ = rand.Read(msg)
		sig := ed25519.Sign(priv, msg)
		flipR, flipS := slices.Clone(sig), slices.Clone(sig)
		flipR[i%32] ^= 1 << (i % 8)
		flipS[32+i%31] ^= 1 << (i % 8)
		other := append(slices.Clone(msg), 0)
		cases = append(cases,
			tc{fmt.Sprintf("%d valid", i), pub, msg, sig},
			tc{fmt.Sprintf("%d R altered", i), pub, msg, flipR},
			tc{fmt.Sprintf("%d S altered", i), pub, msg, flipS},
			tc{fmt.Sprintf("%d S not reduced", i), pub, msg, withUnreducedS(sig)},
			tc{fmt.Sprintf("%d other message", i), pub, other, sig},
			tc{fmt.Sprintf("%d truncated", i), pub, msg, sig[:63]},
			tc{fmt.Sprintf("%d empty", i), pub, msg, nil},
		)
	}
	// The neutral point as the key and as R, with S = 0: the cofactorless
	// equation holds, and crypto/ed25519 accepts it.
	identity := make([]byte, 32)
	identity[0] = 1
	cases = append(cases, tc{"small-order key and R", identity, []byte("m"), append(slices.Clone(identity), make([]byte, 32)...)})

	for _, c := range cases {
		want := ed25519.Verify(c.pub, c.msg, c.sig)
		expanded, err := voied25519.NewExpandedPublicKey(voied25519.PublicKey(c.pub))
		require.NoError(t, err, c.name)
		got := voied25519.VerifyExpandedWithOptions(expanded, c.msg, c.sig, verifyOptions)
		require.Equal(t, want, got, c.name)
		if c.name == "0 valid" || c.name == "small-order key and R" {
			require.True(t, got, c.name)
		}
	}
}

// In FIPS 140-3 mode, verification is crypto/ed25519's: this test runs
// itself again with GODEBUG=fips140=on, and there checks a valid, an
// altered and an unreduced signature.
func TestVerifyInFIPSMode(t *testing.T) {
	if !fips140.Enabled() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestVerifyInFIPSMode$", "-test.v")
		cmd.Env = append(os.Environ(), "GODEBUG=fips140=on")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		require.Contains(t, string(out), "verified in FIPS mode")
		return
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	expanded, err := voied25519.NewExpandedPublicKey(voied25519.PublicKey(pub))
	require.NoError(t, err)
	k := trustedKey{key: pub, expanded: expanded}
	msg := []byte("payload")
	sig := ed25519.Sign(priv, msg)
	altered := slices.Clone(sig)
	altered[0] ^= 1
	require.True(t, k.verify(msg, sig))
	require.False(t, k.verify(msg, altered))
	require.False(t, k.verify(msg, withUnreducedS(sig)))
	t.Log("verified in FIPS mode")
}
