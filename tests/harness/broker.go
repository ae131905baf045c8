package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/testenv"
)

// NATS is the broker of a test as `make run` runs it: outpost-broker
// processes (one node, or a JetStream cluster of three) in operator mode,
// trusting the operator and accounts kept in AuthDir (libs/natsauth).
// Every client needs credentials issued from that folder; anonymous ones
// are refused.
type NATS struct {
	t testing.TB
	// URL is the client URL, comma-separated for a cluster.
	URL string
	// Nodes are the broker processes, Readyz their /readyz URLs, in the
	// same order.
	Nodes  []*Process
	Readyz []string
	// AuthDir is the folder of the operator and its accounts, as
	// `outpost-broker -auth-dir` and `outpost-broker creds` keep it.
	AuthDir string

	credsDir string
	timeout  time.Duration

	observerOnce sync.Once
	observer     string
}

// NATSOptions configures StartNATS.
type NATSOptions struct {
	// Nodes is 1 (the default) or 3, a JetStream cluster.
	Nodes int
	// Dir holds the nodes' data, the authority and the credentials;
	// default a temporary folder of the test.
	Dir string
}

// StartNATS starts the broker in operator mode and waits until every node
// is ready. The operator and its accounts are made in the auth folder
// before the first node starts, as `make run`'s first `outpost-broker
// creds` makes them, so that the nodes of a cluster share them.
func StartNATS(t testing.TB, opts NATSOptions) *NATS {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 1
	}
	require.Contains(t, []int{1, 3}, opts.Nodes, "a broker has 1 or 3 nodes")
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	n := &NATS{
		t:        t,
		AuthDir:  filepath.Join(opts.Dir, "nats-auth"),
		credsDir: filepath.Join(opts.Dir, "nats-auth", "creds"),
		timeout:  30 * time.Second,
	}
	_, err := natsauth.Open(n.AuthDir)
	require.NoError(t, err, "broker authority")

	client, health := make([]int, opts.Nodes), make([]int, opts.Nodes)
	routes := make([]string, opts.Nodes)
	urls := make([]string, opts.Nodes)
	for i := range opts.Nodes {
		client[i], health[i] = testenv.FreePort(t), testenv.FreePort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", testenv.FreePort(t))
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", client[i])
		n.Readyz = append(n.Readyz, fmt.Sprintf("http://127.0.0.1:%d/readyz", health[i]))
	}
	n.URL = strings.Join(urls, ",")
	for i := range opts.Nodes {
		name, data := "broker", filepath.Join(opts.Dir, "jetstream")
		args := []string{
			"-auth-dir", n.AuthDir,
			"-listen", fmt.Sprintf("127.0.0.1:%d", client[i]),
			"-health", fmt.Sprintf("127.0.0.1:%d", health[i]),
		}
		if opts.Nodes > 1 {
			// A cluster elects its leaders on a loaded machine too.
			n.timeout = 90 * time.Second
			name, data = fmt.Sprintf("broker-n%d", i+1), filepath.Join(opts.Dir, fmt.Sprintf("n%d", i+1))
			args = append(args,
				"-name", fmt.Sprintf("n%d", i+1),
				"-cluster-name", "outpost",
				"-cluster", strings.TrimPrefix(routes[i], "nats://"),
				"-routes", strings.Join(routes, ","))
		}
		n.Nodes = append(n.Nodes, Start(t, name, "outpost-broker", nil, append(args, "-data", data)...))
	}
	for i, p := range n.Nodes {
		p.waitReady(n.Readyz[i], n.timeout)
	}
	return n
}

// Restart kills node i with SIGKILL, starts it again on its ports and
// data, and waits until it is ready.
func (n *NATS) Restart(i int) {
	n.t.Helper()
	p := n.Nodes[i]
	p.Kill()
	p.Restart()
	p.waitReady(n.Readyz[i], n.timeout)
}

// Creds issues a user with `outpost-broker creds`, as `make run` does for
// every service, into a file named after name, and returns its path. args
// are the command's flags: -role and, for an agent, -tenant with -pool or
// -zone; -stack for a stack other than the default.
func (n *NATS) Creds(name string, args ...string) string {
	n.t.Helper()
	out := filepath.Join(n.credsDir, name+".creds")
	full := append([]string{"creds", "-auth-dir", n.AuthDir, "-name", name, "-out", out}, args...)
	cmd := exec.Command(Bin(n.t, "outpost-broker"), full...)
	raw, err := cmd.CombinedOutput()
	require.NoError(n.t, err, "outpost-broker %s: %s", strings.Join(full, " "), raw)
	return out
}

// ObserverCreds is a control-plane (scheduler role) credentials file for
// the tests themselves, which read the broker's streams and change them as
// the control plane may; it is made on first use.
func (n *NATS) ObserverCreds() string {
	n.t.Helper()
	n.observerOnce.Do(func() { n.observer = n.Creds("test-observer", "-role", string(natsauth.RoleScheduler)) })
	require.NotEmpty(n.t, n.observer, "observer credentials")
	return n.observer
}

// Observer connects to the broker with ObserverCreds; the connection is
// closed when the test ends.
func (n *NATS) Observer() *BrokerConn {
	n.t.Helper()
	return n.Dial(n.ObserverCreds())
}

// BrokerConn is a plain nats.go connection of one user that keeps the
// asynchronous errors the server sends it, permission violations among
// them.
type BrokerConn struct {
	*nats.Conn
	// UserID is the user's public key.
	UserID string

	mu   sync.Mutex
	errs []string
}

// Dial connects to the broker as the user of the credentials file creds,
// with its own reply inbox (the only one its permissions let it read); the
// connection is closed when the test ends.
func (n *NATS) Dial(creds string, opts ...nats.Option) *BrokerConn {
	n.t.Helper()
	c, err := Dial(n.URL, creds, opts...)
	require.NoError(n.t, err)
	n.t.Cleanup(c.Close)
	return c
}

// Dial connects to url as the user of the credentials file creds, as Dial
// of NATS does, returning its error; the caller closes the connection.
func Dial(url, creds string, opts ...nats.Option) (*BrokerConn, error) {
	user, err := credsUser(creds)
	if err != nil {
		return nil, err
	}
	c := &BrokerConn{UserID: user}
	base := []nats.Option{
		nats.UserCredentials(creds),
		nats.CustomInboxPrefix(natsjs.InboxPrefix(user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.errs = append(c.errs, err.Error())
		}),
	}
	nc, err := nats.Connect(url, append(base, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("connect as %s: %w", filepath.Base(creds), err)
	}
	c.Conn = nc
	return c, nil
}

// ClientOptions are the nats.go options of the user of the credentials
// file creds: the credentials and the user's own reply inbox prefix
// (natsjs.InboxPrefix), which its permissions require.
func ClientOptions(creds string) ([]nats.Option, error) {
	user, err := credsUser(creds)
	if err != nil {
		return nil, err
	}
	return []nats.Option{nats.UserCredentials(creds), nats.CustomInboxPrefix(natsjs.InboxPrefix(user))}, nil
}

// credsUser is the user id (public key) of a credentials file.
func credsUser(creds string) (string, error) {
	raw, err := os.ReadFile(creds)
	if err != nil {
		return "", fmt.Errorf("credentials: %w", err)
	}
	token, err := jwt.ParseDecoratedJWT(raw)
	if err != nil {
		return "", fmt.Errorf("credentials %s: %w", creds, err)
	}
	claims, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return "", fmt.Errorf("credentials %s: %w", creds, err)
	}
	return claims.Subject, nil
}

// Errors returns the asynchronous errors the server sent so far.
func (c *BrokerConn) Errors() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.errs...)
}

// Violated reports whether the server reported a permissions violation
// whose text contains subject.
func (c *BrokerConn) Violated(subject string) bool {
	for _, e := range c.Errors() {
		if strings.Contains(e, "Permissions Violation") && strings.Contains(e, subject) {
			return true
		}
	}
	return false
}

// WaitViolated waits until the server reported a permissions violation
// naming subject.
func (c *BrokerConn) WaitViolated(t testing.TB, subject string) {
	t.Helper()
	require.Eventually(t, func() bool { return c.Violated(subject) }, 10*time.Second, 20*time.Millisecond,
		"no permissions violation for %s; errors: %v", subject, c.Errors())
}
