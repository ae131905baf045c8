// Package kubetest runs a real Kubernetes API server for tests: etcd and
// kube-apiserver as child processes, bound to 127.0.0.1 on free ports, with
// RBAC authorization, service-account tokens and an admin kubeconfig. There
// is no controller-manager, scheduler or kubelet: objects are stored and
// watched, nothing reconciles them (a deleted namespace stays Terminating).
//
// kube-apiserver and kubectl are built at Version by scripts/install-kube.sh
// into the repository's gitignored .cache/kube/<Version>/ (or are found in
// OUTPOST_KUBE_BIN_DIR); etcd comes from PATH (Debian's etcd-server). When
// they are missing a test is skipped with the command to run, except in CI
// (CI=true), where it fails.
//
// One cluster per package, shared by its tests, each in its own namespace:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
//
//	func TestX(t *testing.T) {
//		c := kubetest.Shared(t)
//		ns := c.CreateNamespace(t)
//		c.Kubectl(t, "-n", ns, "apply", "-f", "manifest.yaml")
//		cms, err := c.Client().CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
//	}
//
// A test that restarts or stops the API server uses its own, from Start.
package kubetest

import (
	_ "embed" // kube-version.txt
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/outposthq/outpost/libs/testenv"
)

//go:embed kube-version.txt
var versionFile string

// Version is the Kubernetes version of the kube-apiserver and kubectl the
// harness runs. It is pinned in kube-version.txt beside this file, read by
// scripts/install-kube.sh; k8s.io/client-go in libs/go.mod is the matching
// v0.Y.Z.
var Version = strings.TrimSpace(versionFile)

// EnvBinDir names a folder holding kube-apiserver and kubectl (and
// optionally etcd), used instead of .cache/kube/<Version>.
const EnvBinDir = "OUTPOST_KUBE_BIN_DIR"

// ErrNotInstalled is wrapped by the errors of FindBinaries and Launch when a
// program is missing.
var ErrNotInstalled = errors.New("not installed")

// installHint is what to run when the binaries are missing.
const installHint = "run scripts/install-kube.sh from the repository root " +
	"(builds kube-apiserver and kubectl into .cache/kube, installs etcd from Debian)"

// Binaries are the programs a Cluster runs.
type Binaries struct {
	APIServer string // kube-apiserver
	Kubectl   string // kubectl
	Etcd      string // etcd
}

// FindBinaries locates kube-apiserver and kubectl in OUTPOST_KUBE_BIN_DIR or
// the repository's .cache/kube/<Version>, and etcd in OUTPOST_KUBE_BIN_DIR
// or on PATH. Its error wraps ErrNotInstalled and says what to run.
func FindBinaries() (Binaries, error) {
	dir := os.Getenv(EnvBinDir)
	if dir == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return Binaries{}, fmt.Errorf("kubetest: %w", err)
		}
		dir = filepath.Join(root, ".cache", "kube", Version)
	}
	b := Binaries{
		APIServer: filepath.Join(dir, "kube-apiserver"),
		Kubectl:   filepath.Join(dir, "kubectl"),
		Etcd:      filepath.Join(dir, "etcd"),
	}
	for _, f := range []string{b.APIServer, b.Kubectl} {
		if _, err := os.Stat(f); err != nil {
			return Binaries{}, fmt.Errorf("kubetest: %s %s %w (%s missing): %s", filepath.Base(f), Version, ErrNotInstalled, f, installHint)
		}
	}
	if _, err := os.Stat(b.Etcd); err != nil {
		etcd, err := exec.LookPath("etcd")
		if err != nil {
			return Binaries{}, fmt.Errorf("kubetest: etcd %w (not on PATH nor in %s): %s", ErrNotInstalled, dir, installHint)
		}
		b.Etcd = etcd
	}
	return b, nil
}

// Options change how a cluster starts. The zero value is what tests want.
type Options struct {
	// APIServerArgs are extra kube-apiserver flags ("--name=value"), put after
	// the harness's own: a later single-valued flag wins.
	APIServerArgs []string
	// StartTimeout bounds the wait for etcd and for kube-apiserver's /readyz
	// (each). Zero means 2 minutes.
	StartTimeout time.Duration
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// Kubeconfig is the path of a kubeconfig file for the admin identity
	// (AdminUser in group system:masters, a client certificate).
	Kubeconfig string
	// Server is the API server's URL, https://127.0.0.1:<port>.
	Server string
	// CACertPEM is the cluster CA certificate (PEM): it signs the serving
	// certificate and the admin client certificate.
	CACertPEM []byte
	// Binaries are the programs the cluster runs (Kubectl runs Binaries.Kubectl).
	Binaries Binaries

	dir        string // everything of this cluster: certificates, data, logs
	pki        *pki
	apiArgs    []string
	timeout    time.Duration
	restConfig *rest.Config
	client     kubernetes.Interface
	dynamic    dynamic.Interface

	mu       sync.Mutex // guards the processes and stopped
	etcd     *testenv.Process
	api      *testenv.Process
	stopped  bool
	stopErr  error
	stopOnce sync.Once
}

// Start runs a cluster for this test alone and stops it on t.Cleanup. It
// skips the test when the binaries are missing, or fails it when CI=true.
// Starting takes several seconds: prefer Shared unless the test stops or
// restarts the API server.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options) *Cluster {
	t.Helper()
	SkipIfNotInstalled(t)
	c, err := Launch(opts)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubetest: kube-apiserver log tail:\n%s", c.apiLogTail(30))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("kubetest: stop: %v", err)
		}
	})
	return c
}

// SkipIfNotInstalled skips the test when kube-apiserver, kubectl or etcd is
// missing, naming scripts/install-kube.sh; when CI=true it fails it instead.
func SkipIfNotInstalled(t testing.TB) {
	t.Helper()
	_, err := FindBinaries()
	testenv.Require(t, "kube-apiserver", err)
}

var shared struct {
	mu      sync.Mutex
	started bool
	cluster *Cluster
	err     error
}

// Shared returns the cluster shared by the tests of this package, starting it
// on first use; a failed start fails every test that asks. Tests sharing it
// keep to their own namespaces (CreateNamespace) and must not stop or
// restart it. Call Main from TestMain to stop it when the tests are done;
// otherwise its processes are killed when the test binary exits (Linux) and
// its temporary folder is left behind. Like Start, it skips or fails the
// test when the binaries are missing.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	SkipIfNotInstalled(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.started {
		shared.started = true
		shared.cluster, shared.err = Launch(Options{})
	}
	if shared.err != nil {
		t.Fatalf("kubetest: shared cluster: %v", shared.err)
	}
	return shared.cluster
}

// StopShared stops the shared cluster if it was started. Main calls it.
func StopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil {
		return nil
	}
	return shared.cluster.Stop()
}

// Main runs the package's tests, stops the shared cluster and exits:
//
//	func TestMain(m *testing.M) { kubetest.Main(m) }
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main returning the exit code instead of exiting, for a TestMain
// that checks more once the cluster is stopped:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.CheckLeaks(kubetest.Run(m))) }
func Run(m *testing.M) int {
	code := m.Run()
	if err := StopShared(); err != nil {
		fmt.Fprintf(os.Stderr, "kubetest: stop shared cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// RESTConfig is a copy of the admin identity's client configuration, with
// client-side rate limits raised for tests.
func (c *Cluster) RESTConfig() *rest.Config {
	return rest.CopyConfig(c.restConfig)
}

// Client is a clientset for the admin identity.
func (c *Cluster) Client() kubernetes.Interface {
	return c.client
}

// Dynamic is a dynamic client for the admin identity.
func (c *Cluster) Dynamic() dynamic.Interface {
	return c.dynamic
}

// Stop stops kube-apiserver and etcd and removes the cluster's folder. It
// may be called more than once; Start's clusters are stopped on t.Cleanup.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.stopped = true
		if c.api != nil {
			stopProc(c.api, stopGrace)
		}
		if c.etcd != nil {
			stopProc(c.etcd, stopGrace)
		}
		if err := os.RemoveAll(c.dir); err != nil {
			c.stopErr = fmt.Errorf("kubetest: remove %s: %w", c.dir, err)
		}
	})
	return c.stopErr
}

// StopAPIServer stops kube-apiserver, leaving etcd and its data: clients see
// the cluster unreachable until StartAPIServer. Not for the shared cluster.
func (c *Cluster) StopAPIServer(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api != nil {
		stopProc(c.api, stopGrace)
		c.api = nil
	}
}

// StartAPIServer starts kube-apiserver again after StopAPIServer, on the
// same address with the same certificates and data, and waits until it is
// ready. Not for the shared cluster.
func (c *Cluster) StartAPIServer(t testing.TB) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		t.Fatalf("kubetest: StartAPIServer on a stopped cluster")
	}
	if c.api != nil && !c.api.Exited() {
		t.Fatalf("kubetest: StartAPIServer while kube-apiserver runs: call StopAPIServer first")
	}
	if err := c.runAPIServer(); err != nil {
		t.Fatalf("kubetest: restart kube-apiserver: %v", err)
	}
}

// RestartAPIServer is StopAPIServer then StartAPIServer: watches break and
// clients reconnect to the same cluster. Not for the shared cluster.
func (c *Cluster) RestartAPIServer(t testing.TB) {
	t.Helper()
	c.StopAPIServer(t)
	c.StartAPIServer(t)
}

// apiLogTail is the end of kube-apiserver's log, for failure messages.
func (c *Cluster) apiLogTail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.api == nil {
		return "(kube-apiserver is stopped)"
	}
	return c.api.LogTail(n)
}
