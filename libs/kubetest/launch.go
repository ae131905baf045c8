package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/outposthq/outpost/libs/testenv"
)

// ServiceAccountIssuer is the apiserver's --service-account-issuer, the iss
// claim of its service-account tokens.
const ServiceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// ServiceClusterIPRange is the apiserver's --service-cluster-ip-range. The
// addresses are only allocated to Service objects: nothing routes to them.
const ServiceClusterIPRange = "10.96.0.0/16"

// startAttempts bounds the retries when a port picked as free was taken
// before the server bound it.
const startAttempts = 3

// Launch starts etcd and kube-apiserver, waits until the API server is
// ready and writes the admin kubeconfig. Stop the cluster with Stop. Start
// and Shared wrap it for tests; Launch suits a TestMain that needs a cluster
// before any test runs. Its error wraps ErrNotInstalled when a program is
// missing.
func Launch(opts Options) (*Cluster, error) {
	bins, err := FindBinaries()
	if err != nil {
		return nil, err
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 2 * time.Minute
	}
	base := tempBase()
	sweepStale(base)
	dir, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("kubetest: make cluster folder: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("kubetest: write %s: %w", ownerFile, err)
	}
	c := &Cluster{Binaries: bins, dir: dir, timeout: opts.StartTimeout, apiArgs: opts.APIServerArgs}
	if err := c.launch(); err != nil {
		_ = c.Stop()
		return nil, fmt.Errorf("kubetest: start cluster: %w", err)
	}
	return c, nil
}

// dirPrefix starts the name of every cluster folder; ownerFile in it holds
// the pid of the test process that made it.
const (
	dirPrefix = "kubetest-"
	ownerFile = "owner.pid"
)

// staleAfter is how long a cluster folder must have gone unwritten before
// it is swept: a live cluster's etcd writes every few seconds (the
// apiserver renews its leases), so a pid that looks dead from another pid
// namespace cannot get a running cluster removed.
const staleAfter = 2 * time.Minute

// sweepStale removes the cluster folders under base left by test processes
// that died without stopping their cluster (killed, timed out, no
// TestMain): their etcd data would otherwise hold memory in /dev/shm. The
// children themselves died with the process (testenv gives them a
// parent-death signal).
func sweepStale(base string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), dirPrefix) {
			continue
		}
		dir := filepath.Join(base, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being made
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 || processAlive(pid) || time.Since(lastWrite(dir)) < staleAfter {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// lastWrite is the newest modification time of anything in dir.
func lastWrite(dir string) time.Time {
	var newest time.Time
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // skip what vanished or cannot be read
		}
		if info, err := d.Info(); err == nil && info.ModTime().After(newest) {
			newest = info.ModTime()
		}
		return nil
	})
	return newest
}

func (c *Cluster) launch() error {
	p, err := newPKI(c.dir)
	if err != nil {
		return err
	}
	c.pki = p
	c.CACertPEM = p.caCertPEM
	if err := c.runEtcd(); err != nil {
		return err
	}
	ports, err := testenv.FreePorts(1)
	if err != nil {
		return err
	}
	if err := c.setServer(ports[0]); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := c.runAPIServer()
		if err == nil || attempt == startAttempts || !errors.Is(err, testenv.ErrExited) || !addressInUse(c.api) {
			if err != nil {
				return err
			}
			break
		}
		ports, err := testenv.FreePorts(1)
		if err != nil {
			return err
		}
		if err := c.setServer(ports[0]); err != nil {
			return err
		}
	}
	// The apiserver creates the system namespaces just after it is ready.
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	return c.api.WaitReady(c.timeout, func(context.Context) error {
		if _, err := c.client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("namespace default not created yet: %w", err)
		}
		return nil
	})
}

// runEtcd starts etcd on two free ports with its data in the cluster folder.
func (c *Cluster) runEtcd() error {
	for attempt := 1; ; attempt++ {
		ports, err := testenv.FreePorts(2)
		if err != nil {
			return err
		}
		client := "http://127.0.0.1:" + strconv.Itoa(ports[0])
		peer := "http://127.0.0.1:" + strconv.Itoa(ports[1])
		data := filepath.Join(c.dir, "etcd-data-"+strconv.Itoa(attempt))
		args := []string{
			"--name=kubetest",
			"--data-dir=" + data,
			"--listen-client-urls=" + client,
			"--advertise-client-urls=" + client,
			"--listen-peer-urls=" + peer,
			"--initial-advertise-peer-urls=" + peer,
			"--initial-cluster=kubetest=" + peer,
			"--initial-cluster-state=new",
			"--logger=zap",
			"--log-level=warn",
		}
		etcd, err := startProc("etcd", c.Binaries.Etcd, args, 50*time.Millisecond)
		if err != nil {
			return err
		}
		c.etcd = etcd
		err = etcd.WaitReady(c.timeout, testenv.HTTPProbe(&http.Client{Timeout: 2 * time.Second}, client+"/health"))
		if err == nil {
			c.apiArgs = append([]string{"--etcd-servers=" + client}, c.apiArgs...)
			return nil
		}
		stopProc(etcd, 5*time.Second)
		if attempt == startAttempts || !errors.Is(err, testenv.ErrExited) || !addressInUse(etcd) {
			return err
		}
	}
}

// setServer points the cluster at https://127.0.0.1:port: Server, the admin
// kubeconfig and the clients.
func (c *Cluster) setServer(port int) error {
	c.Server = "https://127.0.0.1:" + strconv.Itoa(port)
	c.Kubeconfig = filepath.Join(c.dir, "admin.kubeconfig")
	cfg := kubeconfig(c.Server, c.CACertPEM, "admin", &clientcmdapi.AuthInfo{
		ClientCertificateData: c.pki.adminCertPEM,
		ClientKeyData:         c.pki.adminKeyPEM,
	})
	if err := clientcmd.WriteToFile(*cfg, c.Kubeconfig); err != nil {
		return fmt.Errorf("write admin kubeconfig: %w", err)
	}
	rc, err := restConfigFromFile(c.Kubeconfig)
	if err != nil {
		return err
	}
	c.restConfig = rc
	if c.client, err = kubernetes.NewForConfig(rc); err != nil {
		return fmt.Errorf("admin clientset: %w", err)
	}
	if c.dynamic, err = dynamic.NewForConfig(rc); err != nil {
		return fmt.Errorf("admin dynamic client: %w", err)
	}
	return nil
}

// apiServerArgs are kube-apiserver's flags for the current Server port.
func (c *Cluster) apiServerArgs() []string {
	f := c.pki.files
	port := c.Server[len("https://127.0.0.1:"):]
	args := []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + port,
		"--cert-dir=" + filepath.Join(c.dir, "apiserver-certs"),
		"--tls-cert-file=" + f.servingCert,
		"--tls-private-key-file=" + f.servingKey,
		"--client-ca-file=" + f.caCert,
		"--service-account-issuer=" + ServiceAccountIssuer,
		"--service-account-key-file=" + f.saPub,
		"--service-account-signing-key-file=" + f.saKey,
		"--service-cluster-ip-range=" + ServiceClusterIPRange,
		"--authorization-mode=RBAC",
		// No controller-manager creates the default ServiceAccount that this
		// plugin would require of every pod.
		"--disable-admission-plugins=ServiceAccount",
		// A loopback address may not be an Endpoints address, and there is
		// no other apiserver to reconcile with.
		"--endpoint-reconciler-type=none",
		"--allow-privileged=true",
		"--profiling=false",
	}
	return append(args, c.apiArgs...)
}

// runAPIServer starts kube-apiserver and waits for /readyz. The caller holds
// c.mu or has the cluster to itself.
func (c *Cluster) runAPIServer() error {
	httpc, err := rest.HTTPClientFor(c.restConfig)
	if err != nil {
		return fmt.Errorf("admin HTTP client: %w", err)
	}
	httpc.Timeout = 5 * time.Second
	api, err := startProc("kube-apiserver", c.Binaries.APIServer, c.apiServerArgs(), 100*time.Millisecond)
	if err != nil {
		return err
	}
	c.api = api
	if err := api.WaitReady(c.timeout, testenv.HTTPProbe(httpc, c.Server+"/readyz")); err != nil {
		stopProc(api, 5*time.Second)
		return fmt.Errorf("kube-apiserver: %w", err)
	}
	return nil
}

// kubeconfig is a one-context kubeconfig for server with the given user.
func kubeconfig(server string, caPEM []byte, user string, auth *clientcmdapi.AuthInfo) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = auth
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: user}
	cfg.CurrentContext = "kubetest"
	return cfg
}

// restConfigFromFile loads a kubeconfig file, raising the client-side rate
// limits so tests are not throttled.
func restConfigFromFile(path string) (*rest.Config, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", path, err)
	}
	rc.QPS, rc.Burst = 100, 200
	rc.UserAgent = "outpost-kubetest"
	return rc, nil
}
