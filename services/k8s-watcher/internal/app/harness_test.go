package app

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/signing"
	"github.com/outposthq/outpost/libs/testenv"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/agent"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/config"
)

func TestMain(m *testing.M) { os.Exit(testenv.CheckLeaks(kubetest.Run(m))) }

const (
	tenant  = "acme"
	zone    = "eu"
	waitFor = 30 * time.Second
	poll    = 50 * time.Millisecond
)

// env is one test's broker and the shared cluster; the test plays the
// account-migrator through it.
type env struct {
	kc     *kubetest.Cluster
	srv    *natsembed.Server
	layout queue.Layout
	conn   *natsjs.Conn
	subj   queue.Subjects
	key    []byte
	// signer signs leases and operations as the control plane does;
	// watchers of e.config trust it.
	signer *signing.Signer
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvLayout(t, queue.LayoutPerTenant)
}

// newEnvLayout is newEnv on a stack of the given layout; e.config's
// watchers use it too.
func newEnvLayout(t *testing.T, layout queue.Layout) *env {
	t.Helper()
	kc := kubetest.Shared(t)
	srv := natstest.RunServer(t)
	ctx := context.Background()
	conn, err := natsjs.Connect(ctx, natsjs.Config{URL: srv.ClientURL(), Layout: layout})
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return &env{kc: kc, srv: srv, layout: layout, conn: conn, subj: conn.Subjects(), key: key, signer: newSigner(t, "control-1")}
}

// config is a watcher of the zone with short intervals, whose own cluster
// is the test cluster (admin identity).
func (e *env) config(t *testing.T) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Tenant, cfg.Zone = tenant, zone
	cfg.OpsAddr = testenv.FreeAddr(t)
	cfg.Broker.URL, cfg.Broker.Layout = e.srv.ClientURL(), e.layout
	cfg.Kubeconfig = e.kc.Kubeconfig
	cfg.KubeconfigKey = base64.StdEncoding.EncodeToString(e.key)
	// Files anywhere, Secrets of any namespace and the watcher's own
	// identity: the tests' namespaces and files are made as they go.
	cfg.KubeconfigDir, cfg.SecretNamespaces, cfg.AllowServiceAccount = "/", []string{"*"}, true
	cfg.LeaseAckWait = 3 * time.Second
	cfg.HeartbeatInterval = 200 * time.Millisecond
	cfg.ChecksumInterval = 300 * time.Millisecond
	cfg.ClusterTimeout = 5 * time.Second
	cfg.SyncTimeout = 30 * time.Second
	cfg.ShutdownGrace = 10 * time.Second
	cfg.Signing.TrustedKeys = []string{e.signer.Public().String()}
	return cfg
}

func newSigner(t *testing.T, kid string) *signing.Signer {
	t.Helper()
	key, err := signing.GenerateKey()
	require.NoError(t, err)
	s, err := signing.NewSigner(kid, key, time.Hour)
	require.NoError(t, err)
	return s
}

// signOp signs op with s as the account-migrator does.
func signOp(t *testing.T, s *signing.Signer, op *watchv1.Operation) *watchv1.Operation {
	t.Helper()
	require.NoError(t, s.Sign(op, signing.Binding{Tenant: tenant, Scope: signing.AccountScope(op.GetAccount()), Subject: op.GetId(), Attempt: 1}))
	return op
}

// signLease signs l with s as the account-migrator does.
func signLease(t *testing.T, s *signing.Signer, l *accountsv1.AccountLease) *accountsv1.AccountLease {
	t.Helper()
	require.NoError(t, s.Sign(l, signing.Binding{Tenant: tenant, Scope: signing.ZoneScope(l.GetZone()), Subject: l.GetSpec().GetName(), Attempt: 1}))
	return l
}

// start runs a watcher until the returned stop is called (or the test
// ends); stop waits for Run to return and checks its error.
func (e *env) start(t *testing.T, cfg config.Config) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	if os.Getenv("OUTPOST_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() { done <- Run(ctx, cfg, log) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(waitFor):
			t.Error("watcher did not stop")
		}
	}
	t.Cleanup(stop)
	return stop
}

func (e *env) publish(t *testing.T, subject string, m proto.Message) {
	t.Helper()
	msg, err := events.Encode(subject, m, "")
	require.NoError(t, err)
	require.NoError(t, e.conn.Publish(context.Background(), msg))
}

func (e *env) lease(t *testing.T, spec *accountsv1.AccountSpec, gen uint64) {
	t.Helper()
	e.publish(t, e.subj.Leases(tenant, zone), signLease(t, e.signer, &accountsv1.AccountLease{
		Envelope: events.NewEnvelope(tenant, 0, "", ""), Spec: spec, Generation: gen, Zone: zone,
	}))
}

func (e *env) control(t *testing.T, c *accountsv1.AccountControl) {
	t.Helper()
	c.Envelope = events.NewEnvelope(tenant, 0, "", "")
	e.publish(t, e.subj.ZoneControl(tenant, zone), c)
}

// read returns every message stored on subject (a filter), decoded as T;
// nil when the read fails (conditions poll it again).
func read[T proto.Message](e *env, subject string) []T {
	var out []T
	err := e.conn.Read(context.Background(), subject, queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		v, err := events.DecodeAs[T](m.Header, m.Data)
		if err == nil {
			out = append(out, v)
		}
		return true
	})
	if err != nil {
		return nil
	}
	return out
}

// waitStatus waits for a status of the account and generation of type typ.
func (e *env) waitStatus(t *testing.T, account string, gen uint64, typ accountsv1.AccountStatus_Type) *accountsv1.AccountStatus {
	t.Helper()
	var found *accountsv1.AccountStatus
	require.Eventually(t, func() bool {
		for _, s := range read[*accountsv1.AccountStatus](e, e.subj.AccountStatus(tenant)) {
			if s.GetAccount() == account && s.GetGeneration() == gen && s.GetType() == typ {
				found = s
				return true
			}
		}
		return false
	}, waitFor, poll, "no %s status for %s generation %d", typ, account, gen)
	return found
}

// activated leases the account and waits until it is ACTIVATED.
func (e *env) activated(t *testing.T, spec *accountsv1.AccountSpec, gen uint64) *accountsv1.AccountStatus {
	t.Helper()
	e.lease(t, spec, gen)
	return e.waitStatus(t, spec.GetName(), gen, accountsv1.AccountStatus_TYPE_ACTIVATED)
}

// last is the last message stored on an object's subject.
func (e *env) last(account, kindToken, namespace, name string) (queue.StreamMessage, *watchv1.ObjectDelta, bool) {
	subject := inventory.ObjectSubject(e.subj, tenant, account, kindToken, namespace, name)
	m, err := e.conn.Last(context.Background(), subject)
	if err != nil {
		return queue.StreamMessage{}, nil, false
	}
	d, err := events.DecodeAs[*watchv1.ObjectDelta](m.Header, m.Data)
	if err != nil {
		return m, nil, false
	}
	return m, d, true
}

// waitDelta waits until the object's subject holds a delta that ok accepts.
func (e *env) waitDelta(t *testing.T, account, kindToken, namespace, name string, ok func(*watchv1.ObjectDelta, map[string]string) bool) *watchv1.ObjectDelta {
	t.Helper()
	var found *watchv1.ObjectDelta
	require.Eventually(t, func() bool {
		m, d, present := e.last(account, kindToken, namespace, name)
		if present && ok(d, m.Header) {
			found = d
			return true
		}
		return false
	}, waitFor, poll, "no matching delta for %s %s/%s", kindToken, namespace, name)
	return found
}

// leaseBacklog is how many leases of the zone are stored or
// unacknowledged, or -1 when the consumer cannot be asked.
func (e *env) leaseBacklog() int {
	ctx := context.Background()
	js, err := jetstream.New(e.conn.NATS())
	if err != nil {
		return -1
	}
	cons, err := js.Consumer(ctx, e.conn.StreamName(tenant, queue.RoleLeases), natsjs.ConsumerName(agent.ConsumerName, e.subj.Leases(tenant, zone)))
	if err != nil {
		return -1
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return -1
	}
	return int(info.NumPending) + info.NumAckPending
}

// allMessages calls fn with every message of every stream of the broker.
func (e *env) allMessages(t *testing.T, fn func(subject string, header map[string][]string, data []byte)) {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(e.conn.NATS())
	require.NoError(t, err)
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err)
		info, err := s.Info(ctx)
		require.NoError(t, err)
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			require.NoError(t, err)
			fn(m.Subject, m.Header, m.Data)
		}
	}
	require.NoError(t, names.Err())
}

// spec is an account on the admin kubeconfig file that watches the
// ConfigMaps of one namespace.
func (e *env) spec(name, namespace string) *accountsv1.AccountSpec {
	return &accountsv1.AccountSpec{Name: name, KubeconfigFile: e.kc.Kubeconfig, Kinds: []string{"configmaps"}, Namespaces: []string{namespace}}
}
