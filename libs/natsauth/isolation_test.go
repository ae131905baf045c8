package natsauth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// TestRunnerIsolation: a runner of tenant a, pool p works its own pool and
// gets a permissions violation for everything of tenant b and of pool q;
// tenant b's work is untouched.
func TestRunnerIsolation(t *testing.T) {
	for _, layout := range []natsjs.Layout{natsjs.LayoutPerTenant, natsjs.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) {
			e := newEnv(t, layout, 1)
			ctx := t.Context()
			publish(t, e.admin, e.subj.Jobs("a", "p"), "a1")
			publish(t, e.admin, e.subj.Jobs("b", "p"), "b1")
			publish(t, e.admin, e.subj.Jobs("a", "q"), "q1")
			scope := natsauth.Scope{Role: natsauth.RoleRunner, Layout: layout, Tenant: "a", Pool: "p"}

			// Its own pool: consume, report, heartbeat, follow its control subject.
			runner := e.connect(t, e.srv.ClientURL(), scope, 1)
			got := make(chan string, 4)
			cons, err := runner.Consume(ctx, queue.ConsumerConfig{Name: "runners-p", Subject: e.subj.Jobs("a", "p"), Concurrency: 1},
				func(ctx context.Context, d queue.Delivery) {
					if d.Ack(ctx) == nil {
						got <- d.Subject()
					}
				})
			require.NoError(t, err)
			t.Cleanup(func() { _ = cons.Stop(context.Background()) })
			require.Equal(t, e.subj.Jobs("a", "p"), <-got)
			publish(t, runner, e.subj.JobStatus("a", "j1"), "")
			publish(t, runner, e.subj.JobLogs("a", "j1"), "")
			publish(t, runner, e.subj.Runners("a", "p"), "")
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			readDone := make(chan error, 1)
			go func() {
				readDone <- runner.Read(rctx, e.subj.RunnerControl("a", "p", "r1"), queue.ReadOptions{OnlyNew: true, Follow: true}, func(m queue.StreamMessage) bool {
					return false
				})
			}()
			require.Eventually(t, func() bool {
				publish(t, e.admin, e.subj.RunnerControl("a", "p", "r1"), "")
				select {
				case err := <-readDone:
					require.NoError(t, err)
					return true
				default:
					return false
				}
			}, 20*time.Second, 200*time.Millisecond)
			cancel()

			// Through the library: another tenant's or pool's queue is refused.
			for _, subject := range []string{e.subj.Jobs("b", "p"), e.subj.Jobs("a", "q")} {
				sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				_, err := runner.Consume(sctx, queue.ConsumerConfig{Name: "runners-p", Subject: subject, Concurrency: 1}, func(context.Context, queue.Delivery) {})
				cancel()
				require.Error(t, err, subject)
				sctx, cancel = context.WithTimeout(ctx, 5*time.Second)
				err = runner.Publish(sctx, queue.Message{Subject: subject, Data: []byte("forged"), Header: map[string]string{queue.HeaderType: "test"}})
				cancel()
				require.Error(t, err, subject)
			}

			// Raw clients with the same credentials: every attempt is a
			// permissions violation.
			path, creds := e.credsFile(t, scope, time.Hour)
			r := e.raw(t, path, creds)
			bJobs := e.subj.Jobs("b", "p")
			bWork := e.admin.StreamName("b", queue.RoleJobs)
			bCons := natsjs.ConsumerName("runners-p", bJobs)
			attempts := []struct {
				name, subject string
				do            func() error
			}{
				{"subscribe to b's jobs", bJobs, func() error { _, err := r.nc.SubscribeSync(bJobs); return err }},
				{"subscribe to b's events", e.subj.AllJobStatus("b"), func() error { _, err := r.nc.SubscribeSync(e.subj.AllJobStatus("b")); return err }},
				{"subscribe to another inbox", "_INBOX.>", func() error { _, err := r.nc.SubscribeSync("_INBOX.>"); return err }},
				{"publish to b's jobs", bJobs, func() error { return r.nc.Publish(bJobs, []byte("forged")) }},
				{"publish to pool q", e.subj.Jobs("a", "q"), func() error { return r.nc.Publish(e.subj.Jobs("a", "q"), []byte("forged")) }},
				{"publish b's status", e.subj.JobStatus("b", "j1"), func() error { return r.nc.Publish(e.subj.JobStatus("b", "j1"), []byte("forged")) }},
				{"create a consumer on b's jobs", "$JS.API.CONSUMER.CREATE." + bWork, func() error {
					return r.nc.PublishRequest("$JS.API.CONSUMER.CREATE."+bWork+"."+bCons+"."+bJobs, r.nc.NewRespInbox(), []byte(`{}`))
				}},
				{"pull from b's consumer", "$JS.API.CONSUMER.MSG.NEXT." + bWork, func() error {
					return r.nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+bWork+"."+bCons, r.nc.NewRespInbox(), []byte(`{"batch":1}`))
				}},
				{"read b's stream", "$JS.API.STREAM.MSG.GET." + bWork, func() error {
					return r.nc.PublishRequest("$JS.API.STREAM.MSG.GET."+bWork, r.nc.NewRespInbox(), []byte(`{"seq":1}`))
				}},
				{"delete a stream", "$JS.API.STREAM.DELETE." + bWork, func() error {
					return r.nc.PublishRequest("$JS.API.STREAM.DELETE."+bWork, r.nc.NewRespInbox(), nil)
				}},
				{"write a KV bucket", "$KV.OUTPOST_accounts.x", func() error { return r.nc.Publish("$KV.OUTPOST_accounts.x", []byte("forged")) }},
				{"publish a control-plane heartbeat", e.subj.Instance("a", "scheduler", "forged"), func() error {
					return r.nc.Publish(e.subj.Instance("a", "scheduler", "forged"), []byte("forged"))
				}},
			}
			for _, a := range attempts {
				t.Run(a.name, func(t *testing.T) {
					require.NoError(t, a.do())
					require.NoError(t, r.nc.Flush())
					r.violated(t, a.subject)
				})
			}
			// Tenant b's job and pool q's job are still there.
			require.Equal(t, uint64(1), pendingOn(t, e.admin, bJobs))
			require.Equal(t, uint64(1), pendingOn(t, e.admin, e.subj.Jobs("a", "q")))
		})
	}
}

// TestWatcherCannotTouchJobs: a watcher's credentials reach no job subject.
func TestWatcherCannotTouchJobs(t *testing.T) {
	e := newEnv(t, natsjs.LayoutPerTenant, 1)
	ctx := t.Context()
	publish(t, e.admin, e.subj.Jobs("a", "p"), "a1")
	scope := natsauth.Scope{Role: natsauth.RoleWatcher, Tenant: "a", Zone: "z"}
	w := e.connect(t, e.srv.ClientURL(), scope, 1)
	// Before the control plane made the tenant's account streams, the
	// watcher is told so at once: it may not make them.
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := w.Consume(sctx, queue.ConsumerConfig{Name: "k8s-watcher", Subject: e.subj.Leases("a", "z"), Concurrency: 1}, func(context.Context, queue.Delivery) {})
	require.ErrorIs(t, err, queue.ErrUnknownTenant)
	require.NoError(t, sctx.Err())
	_, err = w.Consume(sctx, queue.ConsumerConfig{Name: "runners-p", Subject: e.subj.Jobs("a", "p"), Concurrency: 1}, func(context.Context, queue.Delivery) {})
	require.Error(t, err)

	path, creds := e.credsFile(t, scope, time.Hour)
	r := e.raw(t, path, creds)
	jobs := e.subj.Jobs("a", "p")
	work := e.admin.StreamName("a", queue.RoleJobs)
	// Nor may it pass itself off as a control-plane replica.
	for _, subject := range []string{jobs, e.subj.JobStatus("a", "j1"), e.subj.Submit("a"), e.subj.Instance("a", "account-migrator", "forged")} {
		require.NoError(t, r.nc.Publish(subject, []byte("forged")))
		require.NoError(t, r.nc.Flush())
		r.violated(t, subject)
	}
	_, err = r.nc.SubscribeSync(jobs)
	require.NoError(t, err)
	r.violated(t, "Subscription to \""+jobs)
	require.NoError(t, r.nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+work+"."+natsjs.ConsumerName("runners-p", jobs), r.nc.NewRespInbox(), []byte(`{"batch":1}`)))
	r.violated(t, "$JS.API.CONSUMER.MSG.NEXT."+work)
	require.Equal(t, uint64(1), pendingOn(t, e.admin, jobs))

	// Its own zone's leases work.
	publish(t, e.migr, e.subj.Leases("a", "z"), "l1")
	got := make(chan struct{}, 1)
	cons, err := w.Consume(ctx, queue.ConsumerConfig{Name: "k8s-watcher", Subject: e.subj.Leases("a", "z"), Concurrency: 1}, func(ctx context.Context, d queue.Delivery) {
		if d.Ack(ctx) == nil {
			got <- struct{}{}
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = cons.Stop(context.Background()) })
	<-got
}

// TestRevocation: a revoked user is disconnected within seconds and cannot
// connect again; the server keeps running.
func TestRevocation(t *testing.T) {
	e := newEnv(t, natsjs.LayoutPerTenant, 1)
	scope := natsauth.Scope{Role: natsauth.RoleRunner, Tenant: "a", Pool: "p"}
	path, creds := e.credsFile(t, scope, time.Hour)
	r := e.raw(t, path, creds)
	require.True(t, r.nc.IsConnected())

	sysPath, _ := e.credsFile(t, natsauth.Scope{Role: natsauth.RoleSystem}, time.Hour)
	sys, err := nats.Connect(e.srv.ClientURL(), nats.UserCredentials(sysPath))
	require.NoError(t, err)
	t.Cleanup(sys.Close)

	require.NoError(t, e.auth.Revoke(creds.ID))
	require.True(t, e.auth.Revoked(creds.ID))
	require.NoError(t, e.auth.Push(t.Context(), sys))
	require.Eventually(t, func() bool { return !r.nc.IsConnected() }, 10*time.Second, 20*time.Millisecond)
	_, err = nats.Connect(e.srv.ClientURL(), nats.UserCredentials(path))
	require.ErrorIs(t, err, nats.ErrAuthorization)

	// The revocation is kept: an authority opened again still has it.
	again, err := natsauth.Open(e.auth.Dir())
	require.NoError(t, err)
	require.True(t, again.Revoked(creds.ID))
	// Another runner is not affected.
	other, _ := e.credsFile(t, scope, time.Hour)
	nc, err := nats.Connect(e.srv.ClientURL(), nats.UserCredentials(other))
	require.NoError(t, err)
	nc.Close()
}

// TestRefused: anonymous, foreign, expired and wrong-role credentials.
func TestRefused(t *testing.T) {
	e := newEnv(t, natsjs.LayoutPerTenant, 1)
	foreign, err := natsauth.Open(t.TempDir())
	require.NoError(t, err)
	foreignPath := t.TempDir() + "/foreign.creds"
	_, err = foreign.WriteCredentials(foreignPath, "x", natsauth.Scope{Role: natsauth.RoleScheduler}, time.Hour)
	require.NoError(t, err)
	expired, _ := e.credsFile(t, natsauth.Scope{Role: natsauth.RoleRunner, Tenant: "a", Pool: "p"}, time.Second)
	// An expired user is refused (and one connected is dropped at expiry).
	require.Eventually(t, func() bool {
		nc, err := nats.Connect(e.srv.ClientURL(), nats.UserCredentials(expired))
		if err != nil {
			return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired)
		}
		nc.Close()
		return false
	}, 10*time.Second, 100*time.Millisecond)

	for name, opts := range map[string][]nats.Option{
		"anonymous": nil,
		"foreign":   {nats.UserCredentials(foreignPath)},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := nats.Connect(e.srv.ClientURL(), opts...)
			require.ErrorIs(t, err, nats.ErrAuthorization)
		})
	}
	// The library gives up at once on a refused connection.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err = natsjs.Connect(ctx, natsjs.Config{URL: e.srv.ClientURL(), Credentials: foreignPath})
	require.ErrorIs(t, err, natsjs.ErrConnectionClosed)
	require.NoError(t, ctx.Err())
}

func TestScopeValidation(t *testing.T) {
	for name, s := range map[string]natsauth.Scope{
		"no role":          {},
		"runner no pool":   {Role: natsauth.RoleRunner, Tenant: "a"},
		"runner with zone": {Role: natsauth.RoleRunner, Tenant: "a", Pool: "p", Zone: "z"},
		"watcher no zone":  {Role: natsauth.RoleWatcher, Tenant: "a"},
		"bad tenant":       {Role: natsauth.RoleRunner, Tenant: "a.b", Pool: "p"},
		"wildcard pool":    {Role: natsauth.RoleRunner, Tenant: "a", Pool: "*"},
		"scheduler tenant": {Role: natsauth.RoleScheduler, Tenant: "a"},
		"bad layout":       {Role: natsauth.RoleScheduler, Layout: "x"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := natsauth.Permissions(s, "U")
			require.ErrorIs(t, err, natsauth.ErrInvalidScope)
		})
	}
}
