// Package cluster turns an account's spec into a connection to its
// Kubernetes cluster: the kubeconfig (a reference resolved inside the
// customer network, a sealed inline one, or the watcher's own identity),
// what the cluster is (host, CA fingerprint, version) and which kinds the
// account's credentials can watch.
package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/outposthq/outpost/libs/seal"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
)

// Causes of a failed activation. Every error of this package wraps one of
// them, so that the FAILED status (and the operator reading it) names why.
var (
	// ErrBadKubeconfig is a kubeconfig that cannot be parsed or used.
	ErrBadKubeconfig = errors.New("bad kubeconfig")
	// ErrBadReference is a kubeconfig_file that is not a reference the
	// watcher understands.
	ErrBadReference = errors.New("bad kubeconfig reference")
	// ErrSecretNotFound is an encryptedFile reference to a Secret, or a key
	// of it, that does not exist.
	ErrSecretNotFound = errors.New("kubeconfig secret not found")
	// ErrNoCredentials is a spec that names no way to reach its cluster.
	ErrNoCredentials = errors.New("account has no kubeconfig")
	// ErrUnreachable is a cluster whose API server does not answer.
	ErrUnreachable = errors.New("cluster unreachable")
	// ErrUnauthorized is a cluster that rejects the account's credentials
	// (401: expired or revoked token, unknown certificate).
	ErrUnauthorized = errors.New("credentials rejected by the cluster (401 Unauthorized)")
	// ErrOwnCluster is the watcher's own cluster credentials not being
	// usable (no in-cluster ServiceAccount and no kubeconfig configured).
	ErrOwnCluster = errors.New("watcher's own cluster credentials unavailable")
	// ErrRefused is a spec the watcher's own configuration does not allow:
	// a file outside kubeconfig_dir, a Secret outside secret_namespaces,
	// the watcher's ServiceAccount without allow_service_account. The
	// customer, not the control plane, decides what the watcher may read.
	ErrRefused = errors.New("refused by the watcher's policy")
)

// Resolver builds REST configurations from account specs.
type Resolver struct {
	// OwnKubeconfig is the watcher's own kubeconfig file; empty means the
	// in-cluster ServiceAccount.
	OwnKubeconfig string
	// Keys open sealed inline kubeconfigs of Tenant (libs/seal); nil or
	// empty refuses them.
	Keys   *seal.Keyring
	Tenant string
	// KubeconfigDir is the only directory "file:" references resolve
	// under (links included); empty refuses them.
	KubeconfigDir string
	// SecretNamespaces are the namespaces "encryptedFile:k8s!..."
	// references may read Secrets from ("*": any); empty refuses them.
	SecretNamespaces []string
	// AllowServiceAccount lets an account use the watcher's own identity
	// ("serviceAccount": true); off, such an account fails.
	AllowServiceAccount bool
	// Timeout bounds every request made with the returned configurations.
	Timeout time.Duration
	// Log receives the API servers' warnings (deprecated kinds and the
	// like), each message once; nil drops them.
	Log *slog.Logger

	warnings sync.Map // message → struct{}
}

// HandleWarningHeader implements rest.WarningHandler. Informers list and
// watch every kind again and again; a deprecation warning said on each
// request would flood the log, so each message is logged once.
func (r *Resolver) HandleWarningHeader(code int, _ string, message string) {
	if code != 299 || message == "" || r.Log == nil {
		return
	}
	if _, seen := r.warnings.LoadOrStore(message, struct{}{}); !seen {
		r.Log.Info("api server warning", "warning", message)
	}
}

// Own is the watcher's own cluster configuration.
func (r *Resolver) Own() (*rest.Config, error) {
	var (
		rc  *rest.Config
		err error
	)
	if r.OwnKubeconfig == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", r.OwnKubeconfig)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOwnCluster, err)
	}
	return r.tune(rc), nil
}

// tune sets what every configuration of the watcher shares: a user agent,
// rate limits for discovery and probes, and the request timeout.
func (r *Resolver) tune(rc *rest.Config) *rest.Config {
	rc = rest.CopyConfig(rc)
	rc.UserAgent = "outpost-k8s-watcher"
	rc.QPS, rc.Burst = 50, 100
	rc.Timeout = r.Timeout
	rc.WarningHandler = r
	return rc
}

// RESTConfig resolves the spec's credentials. The returned configuration
// has Timeout set: informers must clear it, or every watch is cut after it.
func (r *Resolver) RESTConfig(ctx context.Context, spec *accountsv1.AccountSpec) (*rest.Config, error) {
	switch {
	case spec.GetServiceAccount():
		if !r.AllowServiceAccount {
			return nil, fmt.Errorf("%w: the account uses the watcher's own ServiceAccount and allow_service_account is off", ErrRefused)
		}
		return r.Own()
	case len(spec.GetKubeconfigSealed()) > 0:
		plain, err := r.Keys.Open(r.Tenant, spec.GetKubeconfigSealed())
		if err != nil {
			return nil, fmt.Errorf("%w: sealed kubeconfig: %w", ErrBadKubeconfig, err)
		}
		cfg, err := clientcmd.Load(plain)
		if err != nil {
			return nil, fmt.Errorf("%w: sealed kubeconfig: %w", ErrBadKubeconfig, err)
		}
		if err := checkInline(cfg); err != nil {
			return nil, err
		}
		return r.fromConfig(cfg, spec.GetContext(), "sealed kubeconfig")
	case spec.GetKubeconfigFile() != "":
		return r.fromReference(ctx, spec.GetKubeconfigFile(), spec.GetContext())
	}
	return nil, ErrNoCredentials
}

// checkInline refuses what a kubeconfig sent by the control plane (not a
// file or Secret of the customer's) could make the watcher do on its own
// host: run a credential plugin or an auth provider, or read a local file.
func checkInline(cfg *clientcmdapi.Config) error {
	for name, a := range cfg.AuthInfos {
		switch {
		case a.Exec != nil:
			return fmt.Errorf("%w: sealed kubeconfig user %s runs a credential plugin (exec); inline kubeconfigs carry their credentials as data", ErrRefused, name)
		case a.AuthProvider != nil:
			return fmt.Errorf("%w: sealed kubeconfig user %s uses an auth provider; inline kubeconfigs carry their credentials as data", ErrRefused, name)
		case a.ClientCertificate != "" || a.ClientKey != "" || a.TokenFile != "":
			return fmt.Errorf("%w: sealed kubeconfig user %s names a local file; inline kubeconfigs carry their credentials as data", ErrRefused, name)
		}
	}
	for name, c := range cfg.Clusters {
		if c.CertificateAuthority != "" {
			return fmt.Errorf("%w: sealed kubeconfig cluster %s names a local CA file; use certificate-authority-data", ErrRefused, name)
		}
	}
	return nil
}

// SecretRef is a parsed "encryptedFile:k8s!n:<secret>!k:<key>!ns:<namespace>".
type SecretRef struct {
	Namespace, Name, Key string
}

func (s SecretRef) String() string { return s.Namespace + "/" + s.Name + " key " + s.Key }

const encryptedPrefix = "encryptedFile:"

// ParseSecretRef parses an encryptedFile reference; the three fields may
// come in any order after "k8s".
func ParseSecretRef(ref string) (SecretRef, error) {
	body, ok := strings.CutPrefix(ref, encryptedPrefix)
	parts := strings.Split(body, "!")
	if !ok || len(parts) < 2 || parts[0] != "k8s" {
		return SecretRef{}, fmt.Errorf("%w: %q: want encryptedFile:k8s!n:<secret>!k:<key>!ns:<namespace>", ErrBadReference, ref)
	}
	var s SecretRef
	for _, p := range parts[1:] {
		k, v, _ := strings.Cut(p, ":")
		switch k {
		case "n":
			s.Name = v
		case "k":
			s.Key = v
		case "ns":
			s.Namespace = v
		default:
			return SecretRef{}, fmt.Errorf("%w: %q: unknown field %q", ErrBadReference, ref, k)
		}
	}
	if s.Name == "" || s.Key == "" || s.Namespace == "" {
		return SecretRef{}, fmt.Errorf("%w: %q: n, k and ns are all required", ErrBadReference, ref)
	}
	return s, nil
}

func (r *Resolver) fromReference(ctx context.Context, ref, kubeContext string) (*rest.Config, error) {
	if strings.HasPrefix(ref, encryptedPrefix) {
		s, err := ParseSecretRef(ref)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(r.SecretNamespaces, s.Namespace) && !slices.Contains(r.SecretNamespaces, "*") {
			return nil, fmt.Errorf("%w: secret %s/%s: namespace %s is not in secret_namespaces", ErrRefused, s.Namespace, s.Name, s.Namespace)
		}
		data, err := r.readSecret(ctx, s)
		if err != nil {
			return nil, err
		}
		return r.fromBytes(data, kubeContext, "secret "+s.String())
	}
	path, err := r.kubeconfigPath(strings.TrimPrefix(ref, "file:"))
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: file %s does not exist", ErrBadKubeconfig, path)
		}
		return nil, fmt.Errorf("%w: file %s: %w", ErrBadKubeconfig, path, err)
	}
	return r.fromConfig(cfg, kubeContext, "file "+path)
}

// kubeconfigPath is the file a "file:" reference names, once it is known
// to be inside KubeconfigDir: a relative name is taken in it, and neither
// ".." nor a symbolic link may lead out (os.Root draws that line).
func (r *Resolver) kubeconfigPath(name string) (string, error) {
	if r.KubeconfigDir == "" {
		return "", fmt.Errorf("%w: file references are refused: kubeconfig_dir is not set", ErrRefused)
	}
	dir := filepath.Clean(r.KubeconfigDir)
	path := name
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	path = filepath.Clean(path)
	rel, err := filepath.Rel(dir, path)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%w: file %s is not under kubeconfig_dir %s", ErrRefused, name, dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return "", fmt.Errorf("%w: kubeconfig_dir %s: %w", ErrBadKubeconfig, dir, err)
	}
	defer root.Close()
	switch _, err := root.Stat(rel); {
	case errors.Is(err, os.ErrNotExist):
		return "", fmt.Errorf("%w: file %s does not exist", ErrBadKubeconfig, path)
	case err != nil:
		return "", fmt.Errorf("%w: file %s leads out of kubeconfig_dir %s", ErrRefused, name, dir)
	}
	return path, nil
}

func (r *Resolver) readSecret(ctx context.Context, s SecretRef) ([]byte, error) {
	own, err := r.Own()
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(own)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOwnCluster, err)
	}
	sec, err := cs.CoreV1().Secrets(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("%w: secret %s/%s does not exist", ErrSecretNotFound, s.Namespace, s.Name)
	case err != nil:
		return nil, fmt.Errorf("read kubeconfig secret %s/%s from the watcher's cluster: %w", s.Namespace, s.Name, err)
	}
	data, ok := sec.Data[s.Key]
	if !ok {
		return nil, fmt.Errorf("%w: secret %s/%s has no key %q", ErrSecretNotFound, s.Namespace, s.Name, s.Key)
	}
	return data, nil
}

func (r *Resolver) fromBytes(data []byte, kubeContext, source string) (*rest.Config, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKubeconfig, source, err)
	}
	return r.fromConfig(cfg, kubeContext, source)
}

func (r *Resolver) fromConfig(cfg *clientcmdapi.Config, kubeContext, source string) (*rest.Config, error) {
	rc, err := clientcmd.NewNonInteractiveClientConfig(*cfg, kubeContext, &clientcmd.ConfigOverrides{}, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKubeconfig, source, err)
	}
	return r.tune(rc), nil
}

// CAFingerprint is the hex SHA-256 of the DER of the first CA certificate
// of rc, or "" when it trusts the system roots.
func CAFingerprint(rc *rest.Config) (string, error) {
	data := rc.CAData
	if len(data) == 0 && rc.CAFile != "" {
		var err error
		if data, err = os.ReadFile(rc.CAFile); err != nil {
			return "", fmt.Errorf("%w: read CA file: %w", ErrBadKubeconfig, err)
		}
	}
	for len(data) > 0 {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			sum := sha256.Sum256(b.Bytes)
			return hex.EncodeToString(sum[:]), nil
		}
	}
	return "", nil
}

// Classify wraps err from a request to an account's API server with its
// cause: ErrUnauthorized for a 401, ErrUnreachable when the server did
// not answer with a Kubernetes status at all.
func Classify(host string, err error) error {
	if err == nil {
		return nil
	}
	if apierrors.IsUnauthorized(err) {
		return fmt.Errorf("%w: %s: %w", ErrUnauthorized, host, err)
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return err
	}
	return fmt.Errorf("%w: %s: %w", ErrUnreachable, host, err)
}
