package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/apispec/apispectest"
	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/testenv"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
	"github.com/outposthq/outpost/services/account-migrator/internal/openapi"
)

const (
	tenant   = "default"
	wait     = 10 * time.Second
	tick     = 10 * time.Millisecond
	hbPeriod = 100 * time.Millisecond
)

// env is a migrator on an in-process JetStream; the test plays the watchers.
type env struct {
	t    *testing.T
	srv  *natsembed.Server
	ctx  context.Context
	conn backend.JetStream
	url  string
	cfg  config.Config
	logs *testenv.SyncBuffer
	migs []*Migrator
	regs []*prometheus.Registry
	http []string
	subj queue.Subjects
	// token is a platform admin's API key, from the shared keys bucket.
	token string
	// spec checks every request of do and its answer against the
	// OpenAPI document.
	spec *http.Client
}

func testConfig() config.Config {
	cfg := config.Default()
	cfg.ReconcileInterval = 20 * time.Millisecond
	cfg.RetryFrequency = 200 * time.Millisecond
	cfg.ActivationTimeout = 5 * time.Second
	cfg.DeactivateTimeout = 5 * time.Second
	cfg.MaxRequestBytes = 64 << 10
	cfg.MaxOperationWait = 5 * time.Second
	cfg.Auth.RateLimit = auth.RateLimit{} // the tests poll
	return cfg
}

// newEnv starts replicas migrators (1 when 0) sharing one broker and KV.
func newEnv(t *testing.T, replicas int, edit ...func(*config.Config)) *env {
	t.Helper()
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	cfg := testConfig()
	cfg.Signing.KeyFile = filepath.Join(t.TempDir(), "signing.key")
	cfg.Signing.Generate = true
	for _, f := range edit {
		f(&cfg)
	}
	require.NoError(t, cfg.Validate())
	e := &env{t: t, srv: srv, ctx: ctx, url: srv.ClientURL(), cfg: cfg, logs: &testenv.SyncBuffer{}, subj: queue.NewSubjects(cfg.Broker.Stack),
		spec: apispectest.New(t, openapi.Spec).Client()}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// The test's connection and each replica's are opened as the
	// service opens its own: from the settings (stack, layout).
	settings := cfg.Settings
	settings.Broker.URL = e.url
	open := func() *backend.Backend {
		b, err := backend.Open(ctx, settings, backend.Options{Logger: log})
		require.NoError(t, err)
		return b
	}
	conn := open()
	e.conn = conn.JetStream()
	var err error
	_, e.token, err = auth.NewKeys(e.conn, nil).Create(ctx, auth.KeyRequest{Owner: "test", Tenants: []string{auth.AllTenants}, Role: auth.RoleAdmin})
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = conn.Close()
	})
	for range max(replicas, 1) {
		// Each replica has its own connection, as separate processes do.
		c := open()
		reg := prometheus.NewRegistry()
		m, err := New(ctx, cfg, log, c.JetStream(), reg, WithBrokerReady(c.Ready))
		require.NoError(t, err)
		wg.Go(func() {
			defer func() { _ = c.Close() }()
			_ = m.Run(ctx)
		})
		require.Eventually(t, func() bool { return m.Ready() == nil }, wait, tick)
		ts := httptest.NewServer(m)
		t.Cleanup(ts.Close)
		e.migs, e.regs = append(e.migs, m), append(e.regs, reg)
		e.http = append(e.http, ts.URL)
	}
	return e
}

// do sends a request to the first replica; body is JSON-encoded unless it
// is a string or []byte.
func (e *env) do(method, path string, body any) (int, []byte) {
	e.t.Helper()
	return e.doOn(0, method, path, body, nil)
}

func (e *env) doOn(replica int, method, path string, body any, header map[string]string) (int, []byte) {
	e.t.Helper()
	code, b, err := e.tryDo(replica, method, path, body, header)
	require.NoError(e.t, err)
	return code, b
}

// tryDo is doOn for conditions polled by require.Eventually, which must
// not fail the test themselves.
func (e *env) tryDo(replica int, method, path string, body any, header map[string]string) (int, []byte, error) {
	api := testenv.Client{Base: e.http[replica], Token: e.token, HTTP: e.spec}
	return api.Send(e.ctx, method, path, body, header)
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	return testenv.DecodeJSON[T](t, b)
}

// account is GET's view, as far as the tests look.
type account struct {
	Name         string `json:"name"`
	State        string `json:"state"`
	ZoneID       string `json:"zoneId"`
	Agent        string `json:"agent"`
	FailedCount  int    `json:"failedCount"`
	ErrorMessage string `json:"errorMessage"`
	Generation   uint64 `json:"generation"`
	History      []struct {
		From, To, Reason, Error string
	} `json:"history"`
	LastSeen *time.Time
	Cluster  *struct {
		Host string `json:"host"`
	} `json:"cluster"`
	Spec struct {
		KubeconfigFile      string `json:"kubeconfigFile"`
		KubeconfigContents  string `json:"kubeconfigContents"`
		HasInlineKubeconfig bool   `json:"hasInlineKubeconfig"`
	} `json:"spec"`
}

type result struct {
	Name  string `json:"name"`
	OK    bool   `json:"ok"`
	State string `json:"state"`
	Error string `json:"error"`
}

// get returns the account, or a zero view with State "" when it is absent.
func (e *env) get(name string) account {
	e.t.Helper()
	a, err := e.lookup(name)
	require.NoError(e.t, err)
	return a
}

// lookup is get for polled conditions.
func (e *env) lookup(name string) (account, error) {
	code, b, err := e.tryDo(0, http.MethodGet, "/api/v1/accounts/"+name, nil, nil)
	switch {
	case err != nil:
		return account{}, err
	case code == http.StatusNotFound:
		return account{}, nil
	case code != http.StatusOK:
		return account{}, fmt.Errorf("GET %s: %d %s", name, code, b)
	}
	var a account
	return a, json.Unmarshal(b, &a)
}

// stateOf is the account's state for polled conditions ("?" on errors).
func (e *env) stateOf(name string) string {
	a, err := e.lookup(name)
	if err != nil {
		return "?"
	}
	return a.State
}

// waitState polls until the account reaches want ("" = deleted).
func (e *env) waitState(name, want string) account {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return e.stateOf(name) == want }, wait, tick, "account %s never became %q", name, want)
	return e.get(name)
}

func (e *env) publish(subject string, m proto.Message) {
	e.t.Helper()
	msg, err := events.Encode(subject, m, "")
	require.NoError(e.t, err)
	require.NoError(e.t, e.conn.Publish(e.ctx, msg))
}

// watcher is a fake k8s-watcher replica: it sends heartbeats while alive
// and lists what it holds in them.
type watcher struct {
	e      *env
	zone   string
	id     string
	mu     sync.Mutex
	held   map[string]uint64
	cancel context.CancelFunc
	done   chan struct{}
}

// startWatcher sends heartbeats every hbPeriod until stop.
func (e *env) startWatcher(zone, id string) *watcher {
	ctx, cancel := context.WithCancel(e.ctx)
	w := &watcher{e: e, zone: zone, id: id, held: map[string]uint64{}, cancel: cancel, done: make(chan struct{})}
	w.beat(false)
	go func() {
		defer close(w.done)
		t := time.NewTicker(hbPeriod)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				w.beat(false)
			}
		}
	}()
	e.t.Cleanup(w.kill)
	// The migrator learns of a watcher from its heartbeats, asynchronously:
	// an account offered before it has seen this one would skip its zone.
	require.Eventually(e.t, func() bool { return e.watcherLive(zone, id) }, wait, tick, "the migrator never saw watcher %s of zone %s", id, zone)
	return w
}

// watcherLive reports whether GET /api/v1/zones lists watcher id of zone
// as live.
func (e *env) watcherLive(zone, id string) bool {
	code, b := e.do(http.MethodGet, "/api/v1/zones", nil)
	if code != http.StatusOK {
		return false
	}
	var out struct {
		Zones []struct {
			ZoneID   string `json:"zoneId"`
			Watchers []struct {
				ID   string `json:"id"`
				Live bool   `json:"live"`
			} `json:"watchers"`
		} `json:"zones"`
	}
	if json.Unmarshal(b, &out) != nil {
		return false
	}
	for _, z := range out.Zones {
		for _, w := range z.Watchers {
			if z.ZoneID == zone && w.ID == id && w.Live {
				return true
			}
		}
	}
	return false
}

func (w *watcher) beat(stopping bool) {
	w.mu.Lock()
	hb := &accountsv1.WatcherHeartbeat{Envelope: events.NewEnvelope(tenant, 1, "", ""), Zone: w.zone, WatcherId: w.id, IntervalMs: uint32(hbPeriod.Milliseconds()), Stopping: stopping}
	for a, g := range w.held {
		hb.Accounts = append(hb.Accounts, &accountsv1.HeldAccount{Account: a, Generation: g})
	}
	w.mu.Unlock()
	msg, err := events.Encode(w.e.subj.WatcherPresence(tenant, w.zone, w.id), hb, "")
	if err == nil {
		_ = w.e.conn.Publish(context.WithoutCancel(w.e.ctx), msg)
	}
}

// kill stops the heartbeats without a last word.
func (w *watcher) kill() {
	w.cancel()
	<-w.done
}

// stop stops the heartbeats with a last one that says stopping.
func (w *watcher) stop() {
	w.kill()
	w.beat(true)
}

func (w *watcher) hold(account string, gen uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if gen == 0 {
		delete(w.held, account)
		return
	}
	w.held[account] = gen
}

// report publishes an AccountStatus from w.
func (w *watcher) report(account string, gen uint64, typ accountsv1.AccountStatus_Type, errMsg string) {
	st := &accountsv1.AccountStatus{
		Envelope: events.NewEnvelope(tenant, 1, "", ""), Account: account, Generation: gen, Type: typ,
		Zone: w.zone, WatcherId: w.id, ErrorMessage: errMsg,
	}
	if typ == accountsv1.AccountStatus_TYPE_ACTIVATED {
		st.Cluster = &accountsv1.ClusterInfo{Host: "https://" + w.zone + ".example:6443", ServerVersion: "v1.36.0"}
		st.Kinds = testKinds
		w.hold(account, gen)
	}
	if typ == accountsv1.AccountStatus_TYPE_RELEASED {
		w.hold(account, 0)
	}
	w.e.publish(w.e.subj.AccountStatus(tenant), st)
}

var testKinds = []*accountsv1.WatchedKind{
	{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespaced: true, Token: "configmaps"},
	{Group: "apps", Version: "v1", Kind: "Deployment", Resource: "deployments", Namespaced: true, Token: inventory.KindToken("apps", "deployments")},
	{Version: "v1", Kind: "Namespace", Resource: "namespaces", Token: "namespaces"},
}

// leases collects the leases put on a zone's queue, as its watchers would
// receive them.
type leases struct {
	mu  sync.Mutex
	got []*accountsv1.AccountLease
	at  []time.Time
}

func (e *env) leases(zone string) *leases {
	e.t.Helper()
	l := &leases{}
	cons, err := e.conn.Consume(e.ctx, queue.ConsumerConfig{Name: "k8s-watcher", Subject: e.subj.Leases(tenant, zone), MaxDeliveries: -1},
		func(ctx context.Context, d queue.Delivery) {
			lease, err := events.DecodeAs[*accountsv1.AccountLease](d.Header(), d.Data())
			if err == nil {
				l.mu.Lock()
				l.got, l.at = append(l.got, lease), append(l.at, time.Now())
				l.mu.Unlock()
			}
			_ = d.Ack(ctx)
		})
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = cons.Stop(context.Background()) })
	return l
}

func (l *leases) all() []*accountsv1.AccountLease {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*accountsv1.AccountLease(nil), l.got...)
}

func (l *leases) times() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]time.Time(nil), l.at...)
}

// forAccount returns the leases of account received so far.
func (l *leases) forAccount(account string) []*accountsv1.AccountLease {
	var out []*accountsv1.AccountLease
	for _, x := range l.all() {
		if x.GetSpec().GetName() == account {
			out = append(out, x)
		}
	}
	return out
}

// waitLease waits for the n-th (1-based) lease of account.
func (e *env) waitLease(l *leases, account string, n int) *accountsv1.AccountLease {
	e.t.Helper()
	require.Eventually(e.t, func() bool { return len(l.forAccount(account)) >= n }, wait, tick, "lease %d of %s never came", n, account)
	return l.forAccount(account)[n-1]
}

// controls returns the AccountControl commands sent to zone so far.
func (e *env) controls(zone string) []*accountsv1.AccountControl {
	e.t.Helper()
	cs, err := e.tryControls(zone)
	require.NoError(e.t, err)
	return cs
}

// tryControls is controls for polled conditions.
func (e *env) tryControls(zone string) ([]*accountsv1.AccountControl, error) {
	var (
		out  []*accountsv1.AccountControl
		derr error
	)
	err := e.conn.Read(e.ctx, e.subj.ZoneControl(tenant, zone), queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		c, err := events.DecodeAs[*accountsv1.AccountControl](m.Header, m.Data)
		if err != nil {
			derr = err
			return false
		}
		out = append(out, c)
		return true
	})
	return out, errors.Join(err, derr)
}

// waitControl waits for a command to zone about account that match accepts.
func (e *env) waitControl(zone, account string, match func(*accountsv1.AccountControl) bool) *accountsv1.AccountControl {
	e.t.Helper()
	var found *accountsv1.AccountControl
	require.Eventually(e.t, func() bool {
		cs, _ := e.tryControls(zone)
		for _, c := range cs {
			if c.GetAccount() == account && match(c) {
				found = c
				return true
			}
		}
		return false
	}, wait, tick, "no matching control for %s in zone %s", account, zone)
	return found
}

func isDeactivate(c *accountsv1.AccountControl) bool { return c.GetDeactivate() != nil }

// putObject publishes an object (or its tombstone) to the watch stream as
// the watcher does.
func (e *env) putObject(account, group, version, kind, token, ns, name, rv string, deleted bool) {
	e.t.Helper()
	typ := watchv1.ObjectDelta_TYPE_UPDATED
	if deleted {
		typ = watchv1.ObjectDelta_TYPE_DELETED
	}
	obj, _ := json.Marshal(map[string]any{"kind": kind, "metadata": map[string]any{"name": name, "namespace": ns, "resourceVersion": rv}})
	d := &watchv1.ObjectDelta{
		Envelope: events.NewEnvelope(tenant, 1, "", ""), Account: account, Type: typ, Group: group, Version: version, Kind: kind,
		Namespace: ns, Name: name, Uid: "uid-" + name, ResourceVersion: rv, Object: obj, Generation: 1,
	}
	msg, err := events.Encode(inventory.ObjectSubject(e.subj, tenant, account, token, ns, name), d, "")
	require.NoError(e.t, err)
	msg.Header[inventory.HeaderResourceVersion] = rv
	if deleted {
		msg.Header[inventory.HeaderDeleted] = "true"
	}
	require.NoError(e.t, e.conn.Publish(e.ctx, msg))
}

// activate migrates name to zone through the API and plays w activating
// it; it returns the account's generation.
func (e *env) activate(w *watcher, l *leases, name string) uint64 {
	e.t.Helper()
	code, b := e.do(http.MethodPost, "/api/v1/accounts", []map[string]any{{"name": name, "state": "ACTIVE", "zoneId": w.zone, "kubeconfigFile": "/etc/kube/" + name}})
	require.Equal(e.t, http.StatusOK, code, string(b))
	lease := e.waitLease(l, name, 1)
	w.report(name, lease.GetGeneration(), accountsv1.AccountStatus_TYPE_ACTIVATED, "")
	e.waitState(name, "ACTIVE")
	return lease.GetGeneration()
}

// metric sums the samples of a metric family of the first replica whose
// labels include labels (-1 when they cannot be gathered).
func (e *env) metric(name string, labels map[string]string) float64 {
	families, err := e.regs[0].Gather()
	if err != nil {
		return -1
	}
	sum := 0.0
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}
