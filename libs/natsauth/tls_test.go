package natsauth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// pki is a CA and the PEM files of certificates it signed.
type pki struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	CA   string
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	p := &pki{dir: t.TempDir(), cert: cert, key: key}
	p.CA = p.write(t, "ca.pem", "CERTIFICATE", der)
	return p
}

func (p *pki) write(t *testing.T, name, kind string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600))
	return path
}

// issue signs a certificate for 127.0.0.1 (server) or a client.
func (p *pki) issue(t *testing.T, name string, server bool) (cert, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &k.PublicKey, p.key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(k)
	require.NoError(t, err)
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
}

// TestTLS: the embedded broker serves TLS with credentials; a client
// verifying the server with the right CA connects, one with another CA is
// refused; with a client CA (mTLS) a client without a certificate signed
// by it is refused.
func TestTLS(t *testing.T) {
	ca, other := newPKI(t, "outpost-ca"), newPKI(t, "other-ca")
	srvCert, srvKey := ca.issue(t, "broker", true)
	cliCert, cliKey := ca.issue(t, "runner", false)
	badCert, badKey := other.issue(t, "intruder", false)

	a, err := natsauth.Open(t.TempDir())
	require.NoError(t, err)
	creds := filepath.Join(t.TempDir(), "scheduler.creds")
	_, err = a.WriteCredentials(creds, "scheduler", natsauth.Scope{Role: natsauth.RoleScheduler}, time.Hour)
	require.NoError(t, err)

	for _, mtls := range []bool{false, true} {
		name := "tls"
		tlsOpts := &natsembed.TLS{Cert: srvCert, Key: srvKey}
		if mtls {
			name, tlsOpts.ClientCA = "mtls", ca.CA
		}
		t.Run(name, func(t *testing.T) {
			srv := natstest.RunServerWith(t, natsembed.Options{Auth: a.ServerAuth(), TLS: tlsOpts})
			require.Contains(t, srv.ClientURL(), "tls://")
			cases := []struct {
				name string
				tls  natsjs.TLS
				ok   bool
			}{
				{"right CA", natsjs.TLS{CA: ca.CA, Cert: cliCert, Key: cliKey}, true},
				{"wrong CA", natsjs.TLS{CA: other.CA, Cert: cliCert, Key: cliKey}, false},
				{"no client certificate", natsjs.TLS{CA: ca.CA}, !mtls},
				{"client certificate of another CA", natsjs.TLS{CA: ca.CA, Cert: badCert, Key: badKey}, !mtls},
			}
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
					defer cancel()
					conn, err := natsjs.Connect(ctx, natsjs.Config{URL: srv.ClientURL(), Credentials: creds, TLS: c.tls})
					if !c.ok {
						require.Error(t, err)
						return
					}
					require.NoError(t, err)
					require.NoError(t, conn.Close())
				})
			}
		})
	}
	_, err = natsjs.Connect(t.Context(), natsjs.Config{URL: "tls://127.0.0.1:1", TLS: natsjs.TLS{Cert: cliCert}})
	require.ErrorIs(t, err, natsjs.ErrTLSConfig)
}
