package harness

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"
)

// Plane is the Kubernetes side of Outpost as real processes: a broker, an
// account-migrator and any number of k8s-watchers, sharing one AES key for
// inline kubeconfigs. The broker runs in operator mode as `make run` runs
// it: the migrator has its own credentials and each watcher credentials
// for its tenant and zone.
type Plane struct {
	t      testing.TB
	Tenant string
	// NATS is the broker; BrokerURL its URL.
	NATS      *NATS
	BrokerURL string
	Broker    *Process
	Migrator  *Process
	// API is the account-migrator's base URL.
	API string
	// Key is the base64 AES-256 key both sides seal inline kubeconfigs with.
	Key string
	// Signing is the key the migrator signs leases and operations with;
	// watchers trust it.
	Signing *SigningKey
	// Token is the admin API key the migrator bootstrapped.
	Token string

	migEnv map[string]string
}

// PlaneOptions configures StartPlane.
type PlaneOptions struct {
	Tenant string // default "default"
	// MigratorEnv adds to (and overrides) the migrator's environment.
	MigratorEnv map[string]string
}

// Intervals short enough for tests: a lease lapses after 6 s (a fenced
// lease is held for its ack wait less a second's margin and renewed every
// third of that, so a watcher stalled by a loaded machine for less than
// about 3 s keeps its accounts), a watcher is
// seen as gone after 3 missed 300 ms heartbeats, FAILED accounts are retried
// every second.
var (
	testMigratorEnv = map[string]string{
		"OUTPOST_RETRY_FREQUENCY":    "1s",
		"OUTPOST_RECONCILE_INTERVAL": "200ms",
		"OUTPOST_ACTIVATION_TIMEOUT": "30s",
	}
	testWatcherEnv = map[string]string{
		"OUTPOST_LEASE_ACK_WAIT":     "6s",
		"OUTPOST_HEARTBEAT_INTERVAL": "300ms",
		"OUTPOST_CHECKSUM_INTERVAL":  "1s",
		"OUTPOST_CLUSTER_TIMEOUT":    "3s",
		// The tests' accounts use the watcher's own identity and Secrets
		// of namespaces they create.
		"OUTPOST_ALLOW_SERVICE_ACCOUNT": "true",
		"OUTPOST_SECRET_NAMESPACES":     "*",
	}
)

// StartPlane starts the broker and the account-migrator and waits until
// both are ready. Watchers are started with StartWatcher.
func StartPlane(t testing.TB, opts PlaneOptions) *Plane {
	t.Helper()
	if opts.Tenant == "" {
		opts.Tenant = "default"
	}
	apiPort := testenv.FreePort(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	p := &Plane{
		t: t, Tenant: opts.Tenant,
		API:     fmt.Sprintf("http://127.0.0.1:%d", apiPort),
		Key:     base64.StdEncoding.EncodeToString(key),
		Signing: NewSigningKey(t, "plane-1"),
	}
	dataDir := t.TempDir()
	p.NATS = StartNATS(t, NATSOptions{Dir: filepath.Join(dataDir, "broker")})
	p.Broker, p.BrokerURL = p.NATS.Nodes[0], p.NATS.URL
	env := map[string]string{
		"OUTPOST_LISTEN":             fmt.Sprintf("127.0.0.1:%d", apiPort),
		"OUTPOST_BROKER_URL":         p.BrokerURL,
		"OUTPOST_BROKER_CREDENTIALS": p.NATS.Creds("account-migrator", "-role", "account-migrator"),
		"OUTPOST_TENANTS":            opts.Tenant,
		"OUTPOST_DEFAULT_TENANT":     opts.Tenant,
		"OUTPOST_KUBECONFIG_KEY":     p.Key,
	}
	maps.Copy(env, p.Signing.SignerEnv())
	keyFile := AuthEnv(env, dataDir)
	maps.Copy(env, testMigratorEnv)
	maps.Copy(env, opts.MigratorEnv)
	p.migEnv = env
	p.Migrator = Start(t, "account-migrator", "account-migrator", env)
	p.Migrator.waitReady(p.API+"/readyz", 30*time.Second)
	p.Token = ReadKey(t, keyFile)
	return p
}

// StartWatcher starts a k8s-watcher replica named name (its watcher id) in
// zone, whose own cluster credentials are the kubeconfig at home, with env
// added, and waits until it is connected. Its broker credentials are
// issued for its tenant and zone as `make run` issues the watcher's,
// unless env gives a credentials file.
func (p *Plane) StartWatcher(name, zone, home string, env map[string]string) *Process {
	p.t.Helper()
	opsPort := testenv.FreePort(p.t)
	e := map[string]string{
		"OUTPOST_BROKER_URL":     p.BrokerURL,
		"OUTPOST_TENANT":         p.Tenant,
		"OUTPOST_ZONE":           zone,
		"OUTPOST_WATCHER_ID":     name,
		"OUTPOST_OPS_ADDR":       fmt.Sprintf("127.0.0.1:%d", opsPort),
		"OUTPOST_KUBECONFIG":     home,
		"OUTPOST_KUBECONFIG_KEY": p.Key,
	}
	maps.Copy(e, TrustEnv(p.Signing))
	maps.Copy(e, testWatcherEnv)
	maps.Copy(e, env)
	if e["OUTPOST_BROKER_CREDENTIALS"] == "" {
		e["OUTPOST_BROKER_CREDENTIALS"] = p.NATS.Creds(name, "-role", "watcher",
			"-tenant", e["OUTPOST_TENANT"], "-zone", e["OUTPOST_ZONE"], "-expiry", agentExpiry)
	}
	w := Start(p.t, name, "k8s-watcher", e)
	w.Ops = fmt.Sprintf("http://127.0.0.1:%d", opsPort)
	w.waitReady(w.Ops+"/readyz", 30*time.Second)
	return w
}

// Client returns a client of the accounts API for the plane's tenant.
func (p *Plane) Client() *Client {
	return &Client{t: p.t, Base: p.API, Tenant: p.Tenant, Token: p.Token}
}

// Account is an account as the accounts API returns it (the fields the
// tests look at).
type Account struct {
	Name         string `json:"name"`
	State        string `json:"state"`
	ZoneID       string `json:"zoneId"`
	Agent        string `json:"agent"`
	FailedCount  int    `json:"failedCount"`
	ErrorMessage string `json:"errorMessage"`
	Generation   uint64 `json:"generation"`
	Cluster      struct {
		Host                string `json:"host"`
		CAFingerprintSHA256 string `json:"caFingerprintSha256"`
		ServerVersion       string `json:"serverVersion"`
	} `json:"cluster"`
	Kinds []struct {
		Kind     string `json:"kind"`
		Resource string `json:"resource"`
		Group    string `json:"group"`
		Token    string `json:"token"`
	} `json:"kinds"`
	SkippedKinds []struct {
		Kind   string `json:"kind"`
		Reason string `json:"reason"`
	} `json:"skippedKinds"`
	LastSeen *time.Time `json:"lastSeen"`
	// History is the account's last transitions, oldest first.
	History []struct {
		From   string `json:"from"`
		To     string `json:"to"`
		Reason string `json:"reason"`
		Error  string `json:"error"`
	} `json:"history"`
}

// Account returns one account; a status other than 200 fails the test.
func (c *Client) Account(name string) Account {
	c.t.Helper()
	code, body := c.Do(http.MethodGet, "/api/v1/accounts/"+name, nil)
	require.Equal(c.t, http.StatusOK, code, "get account %s: %s", name, body)
	var a Account
	require.NoError(c.t, json.Unmarshal(body, &a))
	return a
}

// WaitAccount polls an account until cond holds and returns it.
func (c *Client) WaitAccount(name string, timeout time.Duration, cond func(Account) bool) Account {
	c.t.Helper()
	var last Account
	var lastErr error
	ok := func() bool {
		code, body, err := c.Try(http.MethodGet, "/api/v1/accounts/"+name, nil)
		if err != nil || code != http.StatusOK {
			lastErr = fmt.Errorf("status %d, %w: %s", code, err, body)
			return false
		}
		var a Account
		if err := json.Unmarshal(body, &a); err != nil {
			lastErr = err
			return false
		}
		last, lastErr = a, nil
		return cond(a)
	}
	require.Eventually(c.t, ok, timeout, 50*time.Millisecond, "account %s: last %+v (%v)", name, last, lastErr)
	return last
}

// WaitAccountState waits until the account is in state.
func (c *Client) WaitAccountState(name, state string, timeout time.Duration) Account {
	c.t.Helper()
	return c.WaitAccount(name, timeout, func(a Account) bool { return a.State == state })
}

// InventoryObject is one object of the inventory API.
type InventoryObject struct {
	APIVersion      string         `json:"apiVersion"`
	Kind            string         `json:"kind"`
	Namespace       string         `json:"namespace"`
	Name            string         `json:"name"`
	UID             string         `json:"uid"`
	ResourceVersion string         `json:"resourceVersion"`
	Object          map[string]any `json:"object"`
}

// Objects lists an account's inventory with a query such as
// "kind=configmaps&namespace=web" (may be empty).
func (c *Client) Objects(account, query string) ([]InventoryObject, error) {
	path := "/api/v1/accounts/" + account + "/objects"
	if query != "" {
		path += "?" + query
	}
	code, body, err := c.Try(http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("list objects: status %d: %s", code, body)
	}
	var out struct {
		Items []InventoryObject `json:"items"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}
