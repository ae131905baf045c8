package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// AdminUser and AdminGroup are the identity of the admin client certificate
// in Cluster.Kubeconfig: system:masters is bound to cluster-admin.
const (
	AdminUser  = "kubetest-admin"
	AdminGroup = "system:masters"
)

// pki is what the harness generates for one cluster: a CA that signs the
// apiserver's serving certificate and the admin client certificate (one CA
// for both, as kubeadm does), and the service-account token signing key.
type pki struct {
	caCertPEM                 []byte
	adminCertPEM, adminKeyPEM []byte
	files                     pkiFiles
}

// pkiFiles are the paths handed to kube-apiserver and kubeconfigs.
type pkiFiles struct {
	caCert, servingCert, servingKey, adminCert, adminKey, saKey, saPub string
}

// certValidity is long enough for any test run, short enough not to matter.
const certValidity = 7 * 24 * time.Hour

// newPKI generates the keys and certificates and writes them into dir.
func newPKI(dir string) (*pki, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "outpost-kubetest-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caCert, caDER, err := sign(caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("self-sign CA: %w", err)
	}

	p := &pki{
		files: pkiFiles{
			caCert:      filepath.Join(dir, "ca.crt"),
			servingCert: filepath.Join(dir, "apiserver.crt"),
			servingKey:  filepath.Join(dir, "apiserver.key"),
			adminCert:   filepath.Join(dir, "admin.crt"),
			adminKey:    filepath.Join(dir, "admin.key"),
			saKey:       filepath.Join(dir, "sa.key"),
			saPub:       filepath.Join(dir, "sa.pub"),
		},
	}
	if p.caCertPEM, err = writePEM(p.files.caCert, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}

	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(certValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc.cluster.local"},
	}
	if _, _, err := issue(serving, caCert, caKey, p.files.servingCert, p.files.servingKey); err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}
	admin := &x509.Certificate{
		Subject:     pkix.Name{CommonName: AdminUser, Organization: []string{AdminGroup}},
		NotBefore:   now.Add(-time.Hour),
		NotAfter:    now.Add(certValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if p.adminCertPEM, p.adminKeyPEM, err = issue(admin, caCert, caKey, p.files.adminCert, p.files.adminKey); err != nil {
		return nil, fmt.Errorf("admin client certificate: %w", err)
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate service-account signing key: %w", err)
	}
	if _, err := writeKey(p.files.saKey, saKey); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("marshal service-account public key: %w", err)
	}
	if _, err := writePEM(p.files.saPub, "PUBLIC KEY", pub); err != nil {
		return nil, err
	}
	return p, nil
}

// issue generates a key, signs tmpl with the CA, writes both files and
// returns them (PEM).
func issue(tmpl, ca *x509.Certificate, caKey *ecdsa.PrivateKey, certPath, keyPath string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	_, der, err := sign(tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	if certPEM, err = writePEM(certPath, "CERTIFICATE", der); err != nil {
		return nil, nil, err
	}
	if keyPEM, err = writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// sign creates a certificate with a random serial number.
func sign(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, signer *ecdsa.PrivateKey) (*x509.Certificate, []byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, nil, fmt.Errorf("serial number: %w", err)
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, nil, fmt.Errorf("create certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("parse certificate %q: %w", tmpl.Subject.CommonName, err)
	}
	return cert, der, nil
}

// writeKey writes key to path as PEM and returns the PEM.
func writeKey(path string, key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key for %s: %w", path, err)
	}
	return writePEM(path, "EC PRIVATE KEY", der)
}

// writePEM writes der to path as one PEM block and returns the PEM.
func writePEM(path, blockType string, der []byte) ([]byte, error) {
	b := pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return b, nil
}
