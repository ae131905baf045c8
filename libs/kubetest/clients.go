package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// requestTimeout bounds each API call the helpers make.
const requestTimeout = 30 * time.Second

// kubectlTimeout bounds one Kubectl run.
const kubectlTimeout = 2 * time.Minute

// TokenTTL is how long the tokens of ServiceAccountToken are valid.
const TokenTTL = time.Hour

// CreateNamespace creates a namespace named after the test with a random
// suffix and returns its name. It is not deleted: without a
// controller-manager a deleted namespace only becomes Terminating, and the
// cluster is thrown away after the tests anyway.
func (c *Cluster) CreateNamespace(t testing.TB) string {
	t.Helper()
	name := namespaceName(t.Name())
	c.ensureNamespace(t, name)
	return name
}

var notDNSLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// namespaceName is a DNS label: the test name, lower-case, cut to leave room
// for a random suffix.
func namespaceName(testName string) string {
	base := strings.Trim(notDNSLabel.ReplaceAllString(strings.ToLower(testName), "-"), "-")
	if len(base) > 48 {
		base = strings.TrimRight(base[:48], "-")
	}
	if base == "" {
		base = "test"
	}
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	return base + "-" + hex.EncodeToString(suffix)
}

// ensureNamespace creates the namespace unless it exists.
func (c *Cluster) ensureNamespace(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	_, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kubetest: create namespace %s: %v", name, err)
	}
}

// ServiceAccountToken creates the ServiceAccount namespace/name (and its
// namespace) unless they exist, and returns a token for it from the
// TokenRequest API, valid for TokenTTL. The account has no permissions
// until the test binds a Role or ClusterRole to it.
func (c *Cluster) ServiceAccountToken(t testing.TB, namespace, name string) string {
	t.Helper()
	c.ensureNamespace(t, namespace)
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	sas := c.client.CoreV1().ServiceAccounts(namespace)
	_, err := sas.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("kubetest: create service account %s/%s: %v", namespace, name, err)
	}
	ttl := int64(TokenTTL / time.Second)
	tr, err := sas.CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("kubetest: request a token for service account %s/%s: %v", namespace, name, err)
	}
	return tr.Status.Token
}

// ServiceAccountKubeconfig is ServiceAccountToken written as a kubeconfig
// file (TokenKubeconfig): what a workload running as that account, or a
// customer handing Outpost a scoped kubeconfig, would have.
func (c *Cluster) ServiceAccountKubeconfig(t testing.TB, namespace, name string) string {
	t.Helper()
	token := c.ServiceAccountToken(t, namespace, name)
	return c.TokenKubeconfig(t, "system:serviceaccount:"+namespace+":"+name, token)
}

// TokenKubeconfig writes a kubeconfig file for this cluster that
// authenticates with a bearer token, into the test's temporary folder, and
// returns its path. The file is self-contained (CA inline). user only names
// the kubeconfig entry; a token the server does not accept gives a
// kubeconfig whose requests fail with 401 Unauthorized.
func (c *Cluster) TokenKubeconfig(t testing.TB, user, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := kubeconfig(c.Server, c.CACertPEM, user, &clientcmdapi.AuthInfo{Token: token})
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("kubetest: write kubeconfig: %v", err)
	}
	return path
}

// RESTConfigFor loads a kubeconfig file (such as ServiceAccountKubeconfig's)
// with client-side rate limits raised for tests.
func RESTConfigFor(t testing.TB, kubeconfigPath string) *rest.Config {
	t.Helper()
	rc, err := restConfigFromFile(kubeconfigPath)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	return rc
}

// ClientFor is a clientset for the identity of a kubeconfig file.
func ClientFor(t testing.TB, kubeconfigPath string) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(RESTConfigFor(t, kubeconfigPath))
	if err != nil {
		t.Fatalf("kubetest: clientset for %s: %v", kubeconfigPath, err)
	}
	return cs
}

// Kubectl runs kubectl with the admin kubeconfig and args, and returns its
// standard output; it fails the test, with kubectl's standard error, when
// kubectl fails. To run it as another identity pass "--kubeconfig=<path>"
// (a later --kubeconfig wins); to see a failure use KubectlCommand.
func (c *Cluster) Kubectl(t testing.TB, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), kubectlTimeout)
	defer cancel()
	cmd := c.KubectlCommand(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubetest: kubectl %s: %v\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String()
}

// KubectlCommand is an unstarted kubectl command with the admin kubeconfig
// and args, for tests that set its standard input or expect it to fail.
// kubectl's discovery cache goes into the cluster's folder, not ~/.kube.
func (c *Cluster) KubectlCommand(ctx context.Context, args ...string) *exec.Cmd {
	base := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--cache-dir=" + filepath.Join(c.dir, "kubectl-cache"),
		"--request-timeout=30s",
	}
	return exec.CommandContext(ctx, c.Binaries.Kubectl, append(base, args...)...)
}
