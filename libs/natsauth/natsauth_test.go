package natsauth_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// env is a server in operator mode and the control plane's connection.
type env struct {
	auth  *natsauth.Authority
	srv   *natsembed.Server
	dir   string
	admin *natsjs.Conn // the scheduler
	migr  *natsjs.Conn // the account-migrator
	subj  queue.Subjects
}

func newEnv(t *testing.T, layout natsjs.Layout, nodes int) *env {
	t.Helper()
	dir := t.TempDir()
	a, err := natsauth.Open(filepath.Join(dir, "auth"))
	require.NoError(t, err)
	e := &env{auth: a, dir: dir, subj: queue.NewSubjects("")}
	var url string
	if nodes == 1 {
		e.srv = natstest.RunServerWith(t, natsembed.Options{Auth: a.ServerAuth()})
		url = e.srv.ClientURL()
	} else {
		servers := natstest.RunClusterWith(t, nodes, natsembed.Options{Auth: a.ServerAuth()})
		e.srv = servers[0]
		url = natstest.URL(servers...)
	}
	e.admin = e.connect(t, url, natsauth.Scope{Role: natsauth.RoleScheduler, Layout: layout}, nodes)
	e.migr = e.connect(t, url, natsauth.Scope{Role: natsauth.RoleAccountMigrator, Layout: layout}, nodes)
	ctx := t.Context()
	for _, tenant := range []string{"a", "b"} {
		require.NoError(t, e.admin.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
	}
	return e
}

func (e *env) credsFile(t *testing.T, scope natsauth.Scope, ttl time.Duration) (string, natsauth.Credentials) {
	t.Helper()
	path := filepath.Join(e.dir, "creds", string(scope.Role)+"-"+scope.Tenant+scope.Pool+scope.Zone+"-"+time.Now().Format("150405.000000000")+".creds")
	c, err := e.auth.WriteCredentials(path, "test-"+string(scope.Role), scope, ttl)
	require.NoError(t, err)
	return path, c
}

func (e *env) connect(t *testing.T, url string, scope natsauth.Scope, replicas int) *natsjs.Conn {
	t.Helper()
	path, _ := e.credsFile(t, scope, time.Hour)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	c, err := natsjs.Connect(ctx, natsjs.Config{URL: url, Credentials: path, Layout: scope.Layout, Replicas: replicas, Name: string(scope.Role)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawConn connects with nats.go directly and collects the permission
// violations the server reports.
type rawConn struct {
	nc   *nats.Conn
	mu   sync.Mutex
	errs []string
}

func (e *env) raw(t *testing.T, creds string, c natsauth.Credentials) *rawConn {
	t.Helper()
	r := &rawConn{}
	nc, err := nats.Connect(e.srv.ClientURL(), nats.UserCredentials(creds), nats.CustomInboxPrefix(natsjs.InboxPrefix(c.ID)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.errs = append(r.errs, err.Error())
		}))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	r.nc = nc
	return r
}

// violated waits until the server reported a permissions violation naming
// subject.
func (r *rawConn) violated(t *testing.T, subject string) {
	t.Helper()
	require.Eventually(t, func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, e := range r.errs {
			if strings.Contains(e, "Permissions Violation") && strings.Contains(e, subject) {
				return true
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "no permissions violation for %s", subject)
}

func publish(t *testing.T, c *natsjs.Conn, subject, dedupe string) {
	t.Helper()
	require.NoError(t, c.Publish(t.Context(), queue.Message{Subject: subject, Data: []byte("x"), Header: map[string]string{queue.HeaderType: "test"}, DedupeID: dedupe}))
}

// pendingOn counts the messages stored on one subject.
func pendingOn(t *testing.T, c *natsjs.Conn, subject string) uint64 {
	t.Helper()
	js, err := jetstream.New(c.NATS())
	require.NoError(t, err)
	tenant := strings.Split(subject, ".")[1]
	s, err := js.Stream(t.Context(), c.StreamName(tenant, queue.RoleJobs))
	require.NoError(t, err)
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	return info.State.Subjects[subject]
}

// TestControlPlanePublishes: the control plane's own credentials publish,
// through the queue library, every kind of message its service sends: a
// subject missing from its permissions is a request that fails only when
// it happens (an audit event, a dead letter).
func TestControlPlanePublishes(t *testing.T) {
	e := newEnv(t, natsjs.LayoutPerTenant, 1)
	ctx := t.Context()
	cases := []struct {
		name    string
		conn    *natsjs.Conn
		subject string
	}{
		{"scheduler submit", e.admin, e.subj.Submit("a")},
		{"scheduler dispatch", e.admin, e.subj.Jobs("a", "p")},
		{"scheduler control", e.admin, e.subj.Control("a", "p")},
		{"scheduler audit", e.admin, e.subj.Audit("a", "scheduler")},
		{"scheduler dead letter", e.admin, e.subj.DeadLetter("a", queue.RoleSubmit)},
		{"migrator lease", e.migr, e.subj.Leases("a", "z")},
		{"migrator audit", e.migr, e.subj.Audit("a", "account-migrator")},
		{"scheduler instance heartbeat", e.admin, e.subj.Instance("a", "scheduler", "s-0")},
		{"migrator instance heartbeat", e.migr, e.subj.Instance("a", "account-migrator", "m-0")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			require.NoError(t, tc.conn.Publish(pctx, queue.Message{Subject: tc.subject, Data: []byte("x")}))
		})
	}
}
