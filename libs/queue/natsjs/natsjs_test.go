package natsjs_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestEnsureTenantCreatesStreams(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx := testCtx(t)
	limits := queue.TenantLimits{MaxBytes: 8 << 20, MaxMessages: 1000}
	require.NoError(t, c.EnsureTenant(ctx, "acme", limits))

	js, err := jetstream.New(c.NATS())
	require.NoError(t, err)
	cases := []struct {
		role      queue.Role
		name      string
		retention jetstream.RetentionPolicy
		subjects  []string
	}{
		{queue.RoleJobs, "OUTPOST_acme_WORK", jetstream.WorkQueuePolicy, []string{"outpost.acme.submit", "outpost.acme.jobs.*"}},
		{queue.RoleJobEvents, "OUTPOST_acme_EVENTS", jetstream.LimitsPolicy, []string{"outpost.acme.job-events.>", "outpost.acme.control.>", "outpost.acme.runners.>", "outpost.acme.audit.>", "outpost.acme.instances.>"}},
		{queue.RoleDeadLetter, "OUTPOST_acme_DLQ", jetstream.LimitsPolicy, []string{"outpost.acme.dlq.>"}},
		{queue.RoleLeases, "OUTPOST_acme_ACCOUNT_WORK", jetstream.WorkQueuePolicy, []string{"outpost.acme.leases.*", "outpost.acme.ops.*"}},
		{queue.RoleAccounts, "OUTPOST_acme_ACCOUNT_EVENTS", jetstream.LimitsPolicy, []string{"outpost.acme.accounts.>"}},
		{queue.RoleWatch, "OUTPOST_acme_WATCH", jetstream.LimitsPolicy, []string{"outpost.acme.watch.*.*.*.*"}},
	}
	// The account streams are made on first use of an account subject,
	// with the tenant's limits.
	for _, name := range []string{"OUTPOST_acme_ACCOUNT_WORK", "OUTPOST_acme_ACCOUNT_EVENTS", "OUTPOST_acme_WATCH"} {
		_, err = js.Stream(ctx, name)
		require.ErrorIs(t, err, jetstream.ErrStreamNotFound, "EnsureTenant leaves %s to first use", name)
	}
	require.NoError(t, c.Publish(ctx, queue.Message{Subject: queue.NewSubjects("").Leases("acme", "zone-a"), Data: []byte("x")}))
	// A connection that did not add them (another process) finds them.
	other := connect(t, natsjs.Config{URL: srv.ClientURL()})
	require.NoError(t, other.Publish(ctx, queue.Message{Subject: queue.NewSubjects("").Watch("acme", "prod") + ".configmaps.default.app", Data: []byte("x")}))
	for _, tc := range cases {
		require.Equal(t, tc.name, c.StreamName("acme", tc.role))
		s, err := js.Stream(ctx, tc.name)
		require.NoError(t, err)
		cfg := s.CachedInfo().Config
		require.Equal(t, tc.retention, cfg.Retention, tc.name)
		require.Equal(t, tc.subjects, cfg.Subjects, tc.name)
		require.Equal(t, jetstream.FileStorage, cfg.Storage, tc.name)
		require.Equal(t, limits.MaxBytes, cfg.MaxBytes, tc.name)
		require.Equal(t, limits.MaxMessages, cfg.MaxMsgs, tc.name)
		require.Equal(t, natsjs.DefaultDuplicateWindow, cfg.Duplicates, tc.name)
	}
	s, err := js.Stream(ctx, "OUTPOST_acme_EVENTS")
	require.NoError(t, err)
	require.Equal(t, natsjs.DefaultEventsMaxAge, s.CachedInfo().Config.MaxAge)

	// Ensuring again with other limits updates the streams in place.
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{MaxMessages: 5}))
	s, err = js.Stream(ctx, "OUTPOST_acme_WORK")
	require.NoError(t, err)
	require.EqualValues(t, 5, s.CachedInfo().Config.MaxMsgs)
	require.EqualValues(t, -1, s.CachedInfo().Config.MaxBytes)
	s, err = js.Stream(ctx, "OUTPOST_acme_WATCH")
	require.NoError(t, err)
	require.EqualValues(t, 5, s.CachedInfo().Config.MaxMsgs, "an existing WATCH stream takes new limits too")
	s, err = js.Stream(ctx, "OUTPOST_acme_ACCOUNT_WORK")
	require.NoError(t, err)
	require.EqualValues(t, 5, s.CachedInfo().Config.MaxMsgs)

	require.ErrorIs(t, c.EnsureTenant(ctx, "bad.tenant", queue.TenantLimits{}), queue.ErrInvalidSubject)
	require.Error(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{MaxBytes: -1}))
}

func TestTenantLimits(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx := testCtx(t)
	s := c.Subjects()
	require.NoError(t, c.EnsureTenant(ctx, "small", queue.TenantLimits{MaxMessages: 3}))

	// Work is refused, not dropped, once the tenant is full.
	for i := range 3 {
		require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.Submit("small"), Data: []byte{byte(i)}}))
	}
	err := c.Publish(ctx, queue.Message{Subject: s.Submit("small"), Data: []byte("4th")})
	require.ErrorIs(t, err, queue.ErrLimitExceeded)

	// Events keep the newest.
	for i := range 5 {
		require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.JobStatus("small", "j"), Data: []byte(strconv.Itoa(i))}))
	}
	var got []string
	require.NoError(t, c.Read(ctx, s.All("small", queue.RoleJobEvents), queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		got = append(got, string(m.Data))
		return true
	}))
	require.Equal(t, []string{"2", "3", "4"}, got)

	// A bigger quota applies at once.
	require.NoError(t, c.EnsureTenant(ctx, "small", queue.TenantLimits{MaxMessages: 10}))
	require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.Submit("small"), Data: []byte("4th")}))
}

func TestUnknownTenantFailsFast(t *testing.T) {
	srv := natstest.RunServer(t)
	for _, layout := range []natsjs.Layout{natsjs.LayoutPerTenant, natsjs.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) {
			c := connect(t, natsjs.Config{URL: srv.ClientURL(), Stack: "fast-" + string(layout), Layout: layout})
			ctx := testCtx(t)
			require.NoError(t, c.EnsureTenant(ctx, "known", queue.TenantLimits{}))
			start := time.Now()
			err := c.Publish(ctx, queue.Message{Subject: c.Subjects().Jobs("unknown", "p"), Data: []byte("x")})
			require.ErrorIs(t, err, queue.ErrUnknownTenant)
			require.Less(t, time.Since(start), 200*time.Millisecond)
			err = c.Read(ctx, c.Subjects().All("unknown", queue.RoleJobEvents), queue.ReadOptions{}, func(queue.StreamMessage) bool { return true })
			require.ErrorIs(t, err, queue.ErrUnknownTenant)
		})
	}
}

// A tenant provisioned by another process is found on first use.
func TestTenantEnsuredElsewhere(t *testing.T) {
	srv := natstest.RunServer(t)
	for _, layout := range []natsjs.Layout{natsjs.LayoutPerTenant, natsjs.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) {
			cfg := natsjs.Config{URL: srv.ClientURL(), Stack: "elsewhere-" + string(layout), Layout: layout}
			admin := connect(t, cfg)
			user := connect(t, cfg)
			ctx := testCtx(t)
			subject := user.Subjects().Submit("acme")
			require.ErrorIs(t, user.Publish(ctx, queue.Message{Subject: subject, Data: []byte("x")}), queue.ErrUnknownTenant)
			require.NoError(t, admin.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
			require.NoError(t, user.Publish(ctx, queue.Message{Subject: subject, Data: []byte("x")}))
		})
	}
}

func TestSameNameOnTwoSubjects(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx := testCtx(t)
	s := c.Subjects()
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))

	var mu sync.Mutex
	got := map[string][]string{}
	for _, pool := range []string{"pool-a", "pool-b"} {
		k, err := c.Consume(ctx, queue.ConsumerConfig{Name: "runner", Subject: s.Jobs("acme", pool)}, func(ctx context.Context, d queue.Delivery) {
			mu.Lock()
			got[pool] = append(got[pool], d.Subject())
			mu.Unlock()
			_ = d.Ack(ctx)
		})
		require.NoError(t, err)
		t.Cleanup(func() { _ = k.Stop(context.Background()) })
	}
	for range 3 {
		require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.Jobs("acme", "pool-a"), Data: []byte("a")}))
		require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.Jobs("acme", "pool-b"), Data: []byte("b")}))
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got["pool-a"]) == 3 && len(got["pool-b"]) == 3
	}, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for pool, subjects := range got {
		for _, subj := range subjects {
			require.Equal(t, s.Jobs("acme", pool), subj, "a consumer got another pool's job")
		}
	}
}

// Only as many messages as there are free handler slots are pulled: the
// rest stay in the stream for other instances.
func TestConcurrencyBoundNothingHeld(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx := testCtx(t)
	s := c.Subjects()
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	subject := s.Jobs("acme", "pool")
	const conc, n = 3, 10
	var running, peak, done atomic.Int32
	release := make(chan struct{})
	k, err := c.Consume(ctx, queue.ConsumerConfig{Name: "bounded", Subject: subject, Concurrency: conc, AckWait: 30 * time.Second}, func(ctx context.Context, d queue.Delivery) {
		r := running.Add(1)
		for {
			p := peak.Load()
			if r <= p || peak.CompareAndSwap(p, r) {
				break
			}
		}
		<-release
		running.Add(-1)
		_ = d.Ack(ctx)
		done.Add(1)
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = k.Stop(context.Background()) })
	for i := range n {
		require.NoError(t, c.Publish(ctx, queue.Message{Subject: subject, Data: []byte(strconv.Itoa(i))}))
	}
	require.Eventually(t, func() bool { return running.Load() == conc }, 10*time.Second, 10*time.Millisecond)

	js, err := jetstream.New(c.NATS())
	require.NoError(t, err)
	cons, err := js.Consumer(ctx, c.StreamName("acme", queue.RoleJobs), natsjs.ConsumerName("bounded", subject))
	require.NoError(t, err)
	require.Never(t, func() bool {
		info, err := cons.Info(ctx)
		return err != nil || info.NumAckPending > conc || running.Load() > conc
	}, 500*time.Millisecond, 20*time.Millisecond, "more messages taken than handlers can run")
	info, err := cons.Info(ctx)
	require.NoError(t, err)
	require.Equal(t, conc, info.NumAckPending)
	require.EqualValues(t, n-conc, info.NumPending)

	close(release)
	require.Eventually(t, func() bool { return done.Load() == n }, 10*time.Second, 10*time.Millisecond)
	require.LessOrEqual(t, peak.Load(), int32(conc))
}

func TestReadyAndClose(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL(), ReconnectWait: 100 * time.Millisecond})
	ctx := testCtx(t)
	require.True(t, c.Ready())
	require.Equal(t, "CONNECTED", c.Status())

	srv.Stop()
	require.Eventually(t, func() bool { return !c.Ready() }, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, srv.Restart())
	require.Eventually(t, c.Ready, 10*time.Second, 10*time.Millisecond)

	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	handlerCtxDone := make(chan struct{})
	started := make(chan struct{})
	_, err := c.Consume(ctx, queue.ConsumerConfig{Name: "closer", Subject: c.Subjects().Submit("acme")}, func(ctx context.Context, d queue.Delivery) {
		close(started)
		<-ctx.Done() // Close cancels running handlers
		close(handlerCtxDone)
	})
	require.NoError(t, err)
	require.NoError(t, c.Publish(ctx, queue.Message{Subject: c.Subjects().Submit("acme"), Data: []byte("x")}))
	<-started

	require.NoError(t, c.Close())
	select {
	case <-handlerCtxDone:
	default:
		t.Fatal("Close returned before the running handler saw its context cancelled")
	}
	require.False(t, c.Ready())
	require.Equal(t, "CLOSED", c.Status())
	require.ErrorIs(t, c.Publish(ctx, queue.Message{Subject: c.Subjects().Submit("acme")}), queue.ErrClosed)
	_, err = c.Consume(ctx, queue.ConsumerConfig{Name: "late", Subject: c.Subjects().Submit("acme")}, func(context.Context, queue.Delivery) {})
	require.ErrorIs(t, err, queue.ErrClosed)
	require.ErrorIs(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}), queue.ErrClosed)
	require.NoError(t, c.Close(), "Close is idempotent")
}

func TestConnectGivesUpWithContext(t *testing.T) {
	port, err := natsembed.FreePort("")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = natsjs.Connect(ctx, natsjs.Config{URL: fmt.Sprintf("nats://127.0.0.1:%d", port), Logger: testLogger()})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestServerPayloadLimit(t *testing.T) {
	srv := natstest.RunServerWith(t, natsembed.Options{MaxPayload: 4096})
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx := testCtx(t)
	require.Equal(t, 4096, c.MaxPayload(), "defaults to the server's limit")
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	subject := c.Subjects().Submit("acme")
	err := c.Publish(ctx, queue.Message{Subject: subject, Data: make([]byte, 4097)})
	require.ErrorIs(t, err, queue.ErrPayloadTooLarge)
	require.Contains(t, err.Error(), "4096")
	// Data within the limit but headers pushing it over the server's.
	err = c.Publish(ctx, queue.Message{Subject: subject, Data: make([]byte, 4096), Header: map[string]string{"X-Big": string(make([]byte, 100))}})
	require.ErrorIs(t, err, queue.ErrPayloadTooLarge)
}

func TestDeadLetterHeadersOnDLQStream(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx := testCtx(t)
	s := c.Subjects()
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	subject := s.Jobs("acme", "p")
	require.NoError(t, c.Publish(ctx, queue.Message{Subject: subject, Data: []byte("x"), DedupeID: "orig-id"}))
	terminated := make(chan error, 1)
	k, err := c.Consume(ctx, queue.ConsumerConfig{Name: "t", Subject: subject}, func(ctx context.Context, d queue.Delivery) {
		terminated <- d.Term(ctx, "multi\nline reason")
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = k.Stop(context.Background()) })
	require.NoError(t, <-terminated)

	// The dead letter is readable history, and the work stream is empty.
	var got []queue.StreamMessage
	require.NoError(t, c.Read(ctx, s.All("acme", queue.RoleDeadLetter), queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		got = append(got, m)
		return true
	}))
	require.Len(t, got, 1)
	require.Equal(t, "multi line reason", got[0].Header[queue.HeaderDeadLetterReason])
	require.NotEqual(t, "orig-id", got[0].Header[jetstream.MsgIDHeader], "the original's dedupe id is not reused")
	js, err := jetstream.New(c.NATS())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := js.Stream(ctx, c.StreamName("acme", queue.RoleJobs))
		return err == nil && st.CachedInfo().State.Msgs == 0
	}, 5*time.Second, 20*time.Millisecond, "a terminated message is removed from the work queue")
}

// Without Follow, Read stops at what was stored when it started, even while
// more is being published.
func TestReadStopsAtStartSnapshot(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx := testCtx(t)
	s := c.Subjects()
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	subject := s.JobLogs("acme", "j")
	// More than one pull batch, so that later batches are served after
	// the late messages below were stored.
	const n = 1500
	for i := range n {
		require.NoError(t, c.Publish(ctx, queue.Message{Subject: subject, Data: []byte(strconv.Itoa(i))}))
	}
	got := 0
	require.NoError(t, c.Read(ctx, subject, queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		got++
		if got <= 10 {
			require.NoError(t, c.Publish(ctx, queue.Message{Subject: subject, Data: []byte("late")}))
		}
		return true
	}))
	require.Equal(t, n, got)
}

// A broker restarts while messages are being handled: everything published
// before and after is handled, and the connection is ready again. Single
// node: the whole server restarts on its data. Cluster: the node the client
// is connected to restarts, and replicated streams keep the work.
func TestConsumerSurvivesRestart(t *testing.T) {
	tests := []struct {
		name    string
		cluster bool
		n       int
		// work is how long each handler takes: with it, messages are in
		// flight when the broker goes.
		work   time.Duration
		within time.Duration
	}{
		{name: "single node", n: 10, work: 20 * time.Millisecond, within: 30 * time.Second},
		{name: "cluster node", cluster: true, n: 20, work: 20 * time.Millisecond, within: 45 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.cluster && testing.Short() {
				t.Skip("three-node cluster")
			}
			var c *natsjs.Conn
			var restart func()
			if tt.cluster {
				nodes := natstest.RunCluster(t, 3)
				c = connect(t, natsjs.Config{URL: natstest.URL(nodes...), Replicas: 3, ReconnectWait: 200 * time.Millisecond})
				restart = func() {
					connected := c.NATS().ConnectedUrl()
					restarted := false
					for _, n := range nodes {
						if n.ClientURL() == connected {
							require.NoError(t, n.Restart())
							restarted = true
						}
					}
					require.True(t, restarted, "connected to %s", connected)
				}
			} else {
				srv := natstest.RunServer(t)
				c = connect(t, natsjs.Config{URL: srv.ClientURL(), ReconnectWait: 200 * time.Millisecond})
				restart = func() { require.NoError(t, srv.Restart()) }
			}
			survivesRestart(t, c, tt.n, tt.work, restart, tt.within)
		})
	}
}

// survivesRestart consumes a work subject (each handler taking work) while
// n messages are published, restart is called, and n more are published;
// every one must be handled at least once.
func survivesRestart(t *testing.T, c *natsjs.Conn, n int, work time.Duration, restart func(), within time.Duration) {
	t.Helper()
	ctx := testCtx(t)
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	subject := c.Subjects().Jobs("acme", "pool")

	var mu sync.Mutex
	handled := map[string]int{}
	k, err := c.Consume(ctx, queue.ConsumerConfig{Name: "survivor", Subject: subject, AckWait: 2 * time.Second, Concurrency: 4}, func(ctx context.Context, d queue.Delivery) {
		if work > 0 {
			timer := time.NewTimer(work)
			<-timer.C
		}
		// Count the message as handled whatever the Ack returns: an ack
		// sent as the node goes down may be applied by the server while its
		// reply is lost, and then the message is rightly not redelivered.
		// The guarantee is at least once, so an ack that did not take is
		// seen as a second delivery.
		mu.Lock()
		handled[string(d.Data())]++
		mu.Unlock()
		_ = d.Ack(ctx)
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = k.Stop(context.Background()) })

	publish := func(data string) {
		// Right after a restart the stream may still be recovering.
		require.Eventually(t, func() bool {
			pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			return c.Publish(pctx, queue.Message{Subject: subject, Data: []byte(data), DedupeID: data}) == nil
		}, within, 50*time.Millisecond, "publish %s", data)
	}
	for i := range n {
		publish("before-" + strconv.Itoa(i))
	}
	restart()
	require.Eventually(t, c.Ready, 10*time.Second, 10*time.Millisecond)
	for i := range n {
		publish("after-" + strconv.Itoa(i))
	}
	missing := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for _, phase := range []string{"before-", "after-"} {
			for i := range n {
				if handled[phase+strconv.Itoa(i)] == 0 {
					out = append(out, phase+strconv.Itoa(i))
				}
			}
		}
		return out
	}
	if !assert.Eventually(t, func() bool { return len(missing()) == 0 }, within, 20*time.Millisecond) {
		t.Fatalf("not every message was handled across the restart; missing %v", missing())
	}
}

func TestWatchStreamCompactsLastAndPurges(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	s := queue.NewSubjects("")
	obj := s.Watch("acme", "prod") + ".configmaps.default.app"
	other := s.Watch("acme", "prod") + ".configmaps.default.other"
	for _, m := range []queue.Message{
		{Subject: obj, Data: []byte("v1")},
		{Subject: obj, Data: []byte("v2")},
		{Subject: other, Data: []byte("o1")},
	} {
		require.NoError(t, c.Publish(ctx, m))
	}

	last, err := c.Last(ctx, obj)
	require.NoError(t, err)
	require.Equal(t, "v2", string(last.Data))

	var seen []string
	require.NoError(t, c.Read(ctx, s.Watch("acme", "prod")+".>", queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		seen = append(seen, string(m.Data))
		return true
	}))
	require.Equal(t, []string{"v2", "o1"}, seen, "one message per object: the last")

	require.NoError(t, c.Purge(ctx, s.Watch("acme", "prod")+".>"))
	_, err = c.Last(ctx, obj)
	require.ErrorIs(t, err, natsjs.ErrNoMessage)
	_, err = c.Last(ctx, s.Jobs("acme", "pool"))
	require.ErrorIs(t, err, queue.ErrInvalidSubject)
}

// TestInProgressSkipsFreshExtension: an InProgress within a tenth of the
// ack wait of the receive (a short job checking it still holds its
// delivery) sends nothing to the server; once that has passed, it sends a
// progress acknowledgement again. Fenced or not, the answer is the same.
func TestInProgressSkipsFreshExtension(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx := testCtx(t)
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))

	// Every acknowledgement the consumer sends, as the server receives it.
	watcher, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(watcher.Close)
	var progress atomic.Int32
	sub, err := watcher.Subscribe("$JS.ACK.>", func(m *nats.Msg) {
		if string(m.Data) == "+WPI" {
			progress.Add(1)
		}
	})
	require.NoError(t, err)
	require.NoError(t, watcher.Flush())
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	for _, fenced := range []bool{false, true} {
		t.Run(fmt.Sprintf("fenced=%v", fenced), func(t *testing.T) {
			subject := c.Subjects().Jobs("acme", fmt.Sprintf("fresh-%v", fenced))
			held := make(chan queue.Delivery, 1)
			release := make(chan struct{})
			// Stored before the first pull: the delivery's ack wait starts
			// with that pull, not one that waited before the message came.
			// A tenth of this ack wait (1 s) leaves the checks below room
			// on a loaded machine.
			require.NoError(t, c.Publish(ctx, queue.Message{Subject: subject, Data: []byte("short job")}))
			k, err := c.Consume(ctx, queue.ConsumerConfig{Name: "fresh", Subject: subject, AckWait: 10 * time.Second, Fenced: fenced}, func(ctx context.Context, d queue.Delivery) {
				held <- d
				<-release
				assert.NoError(t, d.Ack(ctx))
			})
			require.NoError(t, err)
			t.Cleanup(func() { _ = k.Stop(context.Background()) })
			var d queue.Delivery
			select {
			case d = <-held:
			case <-ctx.Done():
				t.Fatal("nothing delivered")
			}
			defer close(release)

			before := progress.Load()
			require.NoError(t, d.InProgress(ctx), "fresh delivery")
			require.NoError(t, watcher.Flush())
			require.Never(t, func() bool { return progress.Load() != before }, 200*time.Millisecond, 10*time.Millisecond,
				"an InProgress right after the receive sends nothing")
			require.Eventually(t, func() bool {
				require.NoError(t, d.InProgress(ctx))
				return progress.Load() > before
			}, 5*time.Second, 50*time.Millisecond, "a later InProgress is sent")
			// Just sent: the next one is fresh again.
			sent := progress.Load()
			require.NoError(t, d.InProgress(ctx))
			require.Never(t, func() bool { return progress.Load() != sent }, 200*time.Millisecond, 10*time.Millisecond,
				"an InProgress right after the last one sends nothing")
		})
	}
}
