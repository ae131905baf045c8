package natsauth_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// probeUser signs, with the account key in the folder, a user that may
// publish anything: natstest's readiness probe writes to a stream of its
// own, which no Outpost role may.
func probeUser(t *testing.T, a *natsauth.Authority) nats.Option {
	t.Helper()
	seed, err := os.ReadFile(filepath.Join(a.Dir(), "outpost.nk"))
	require.NoError(t, err)
	acct, err := nkeys.FromSeed(seed)
	require.NoError(t, err)
	user, err := nkeys.CreateUser()
	require.NoError(t, err)
	pub, _ := user.PublicKey()
	uc := jwt.NewUserClaims(pub)
	uc.Expires = time.Now().Add(time.Hour).Unix()
	token, err := uc.Encode(acct)
	require.NoError(t, err)
	us, _ := user.Seed()
	return nats.UserJWTAndSeed(token, string(us))
}

// TestCluster: on a 3-node cluster in operator mode, a runner of tenant a
// works its pool through one node and is refused tenant b's; a revocation
// pushed through another node cuts it off.
func TestCluster(t *testing.T) {
	a, err := natsauth.Open(filepath.Join(t.TempDir(), "auth"))
	require.NoError(t, err)
	nodes := natstest.RunClusterWith(t, 3, natsembed.Options{Auth: a.ServerAuth()}, probeUser(t, a))
	ctx := t.Context()
	subj := queue.NewSubjects("")
	e := &env{auth: a, dir: t.TempDir(), srv: nodes[2], subj: subj}
	e.admin = e.connect(t, natstest.URL(nodes...), natsauth.Scope{Role: natsauth.RoleScheduler}, 3)
	for _, tenant := range []string{"a", "b"} {
		require.NoError(t, e.admin.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
	}
	publish(t, e.admin, subj.Jobs("a", "p"), "a1")
	publish(t, e.admin, subj.Jobs("b", "p"), "b1")

	scope := natsauth.Scope{Role: natsauth.RoleRunner, Tenant: "a", Pool: "p"}
	runner := e.connect(t, nodes[2].ClientURL(), scope, 3)
	got := make(chan struct{}, 1)
	cons, err := runner.Consume(ctx, queue.ConsumerConfig{Name: "runners-p", Subject: subj.Jobs("a", "p"), Concurrency: 1}, func(ctx context.Context, d queue.Delivery) {
		if d.Ack(ctx) == nil {
			got <- struct{}{}
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cons.Stop(context.Background()) })
	<-got

	path, creds := e.credsFile(t, scope, time.Hour)
	r := e.raw(t, path, creds) // connected to nodes[2]
	bJobs := subj.Jobs("b", "p")
	require.NoError(t, r.nc.Publish(bJobs, []byte("forged")))
	r.violated(t, bJobs)
	bWork := natsjs.StreamNameFor("", "", "b", queue.RoleJobs)
	require.NoError(t, r.nc.PublishRequest("$JS.API.CONSUMER.CREATE."+bWork+".x."+bJobs, r.nc.NewRespInbox(), []byte(`{}`)))
	r.violated(t, "$JS.API.CONSUMER.CREATE."+bWork)
	require.Equal(t, uint64(1), pendingOn(t, e.admin, bJobs))

	require.NoError(t, a.Revoke(creds.ID))
	require.NoError(t, a.PushTo(ctx, nodes[0].ClientURL()))
	require.Eventually(t, func() bool { return !r.nc.IsConnected() }, 15*time.Second, 50*time.Millisecond)
	for _, n := range nodes {
		_, err := nats.Connect(n.ClientURL(), nats.UserCredentials(path))
		require.ErrorIs(t, err, nats.ErrAuthorization, n.Name())
	}
}
