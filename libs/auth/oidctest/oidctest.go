// Package oidctest is an OpenID Connect issuer for tests: it serves
// discovery and JWKS on 127.0.0.1, signs tokens (RS256 or ES256) with the
// claims asked for, rotates its key on demand, and mints the bad tokens a
// verifier must refuse. Its authorization and token endpoints run the
// authorization-code flow with PKCE for one configured login (AllowLogin).
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/stretchr/testify/require"
)

// Issuer is a running test issuer.
type Issuer struct {
	// URL is the issuer URL (the iss of its tokens).
	URL string

	t   testing.TB
	srv *http.Server

	mu   sync.Mutex
	keys []jose.JSONWebKey // private; the last one signs
	alg  jose.SignatureAlgorithm

	login    *Login
	codes    map[string]grant
	redeemed int
}

// New starts an issuer signing with alg (jose.RS256 or jose.ES256); it
// stops when the test ends.
func New(t testing.TB, alg jose.SignatureAlgorithm) *Issuer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	is := &Issuer{URL: "http://" + ln.Addr().String(), t: t, alg: alg}
	is.Rotate()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                is.URL,
			"jwks_uri":                              is.URL + "/jwks",
			"authorization_endpoint":                is.URL + "/authorize",
			"token_endpoint":                        is.URL + "/token",
			"id_token_signing_alg_values_supported": []string{string(alg)},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, _ *http.Request) {
		is.mu.Lock()
		set := jose.JSONWebKeySet{}
		for _, k := range is.keys {
			set.Keys = append(set.Keys, k.Public())
		}
		is.mu.Unlock()
		writeJSON(w, set)
	})
	is.routeLogin(mux)
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = is.srv.Serve(ln) }()
	t.Cleanup(func() { _ = is.srv.Close() })
	return is
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Rotate makes a new signing key; the JWKS keeps only the new one, so
// tokens signed before no longer verify.
func (is *Issuer) Rotate() {
	var priv crypto.Signer
	var err error
	switch is.alg {
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	}
	require.NoError(is.t, err)
	kid := make([]byte, 8)
	_, _ = rand.Read(kid)
	is.mu.Lock()
	is.keys = []jose.JSONWebKey{{Key: priv, KeyID: hex.EncodeToString(kid), Algorithm: string(is.alg), Use: "sig"}}
	is.mu.Unlock()
}

// Claims are a token's claims; Token fills iss, iat, exp (one hour) and
// aud when they are absent.
type Claims map[string]any

func (is *Issuer) fill(c Claims) Claims {
	out := Claims{"iss": is.URL, "iat": time.Now().Unix(), "exp": time.Now().Add(time.Hour).Unix()}
	for k, v := range c {
		out[k] = v
	}
	return out
}

// Token signs claims with the current key.
func (is *Issuer) Token(c Claims) string {
	is.mu.Lock()
	key := is.keys[len(is.keys)-1]
	is.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: is.alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	require.NoError(is.t, err)
	payload, err := json.Marshal(is.fill(c))
	require.NoError(is.t, err)
	jws, err := signer.Sign(payload)
	require.NoError(is.t, err)
	s, err := jws.CompactSerialize()
	require.NoError(is.t, err)
	return s
}

// Expired signs claims that expired two hours ago.
func (is *Issuer) Expired(c Claims) string {
	out := Claims{"iat": time.Now().Add(-3 * time.Hour).Unix(), "exp": time.Now().Add(-2 * time.Hour).Unix()}
	for k, v := range c {
		out[k] = v
	}
	return is.Token(out)
}

// AlgNone returns an unsigned token ("alg": "none").
func (is *Issuer) AlgNone(c Claims) string {
	return unsigned(map[string]any{"alg": "none", "typ": "JWT"}, is.fill(c)) + "."
}

// HS256WithPublicKey returns a token signed with HMAC-SHA256 keyed by the
// issuer's public key (PEM), the algorithm-confusion attack.
func (is *Issuer) HS256WithPublicKey(c Claims) string {
	is.mu.Lock()
	key := is.keys[len(is.keys)-1]
	is.mu.Unlock()
	der, err := x509.MarshalPKIXPublicKey(key.Public().Key)
	require.NoError(is.t, err)
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	head := unsigned(map[string]any{"alg": "HS256", "typ": "JWT", "kid": key.KeyID}, is.fill(c))
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(head))
	return head + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func unsigned(header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
}
