package natsjs_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

func TestDeadLetterStore(t *testing.T) {
	srv := natstest.RunServer(t)
	for _, layout := range []natsjs.Layout{natsjs.LayoutPerTenant, natsjs.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) {
			stack := "dl" + map[natsjs.Layout]string{natsjs.LayoutPerTenant: "pt", natsjs.LayoutShared: "sh"}[layout]
			c := connect(t, natsjs.Config{URL: srv.ClientURL(), Stack: stack, Layout: layout})
			ctx := testCtx(t)
			s := c.Subjects()
			for _, tn := range []string{"acme", "other"} {
				require.NoError(t, c.EnsureTenant(ctx, tn, queue.TenantLimits{}))
			}
			before := time.Now()

			// A job that keeps failing runs out of deliveries; a submit is
			// terminated by its handler; garbage is published directly on
			// a dead-letter subject, and another tenant has its own.
			jobs := s.Jobs("acme", "p")
			require.NoError(t, c.Publish(ctx, queue.Message{Subject: jobs, Data: []byte("job"), Header: map[string]string{"X-Keep": "1"}, DedupeID: "d1"}))
			naks := consumeAll(t, c, queue.ConsumerConfig{Name: "w", Subject: jobs, AckWait: 10 * time.Second, MaxDeliveries: 2}, func(ctx context.Context, d queue.Delivery) error {
				return d.Nak(ctx, 0)
			})
			require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.Submit("acme"), Data: []byte("submit")}))
			consumeAll(t, c, queue.ConsumerConfig{Name: "s", Subject: s.Submit("acme")}, func(ctx context.Context, d queue.Delivery) error {
				return d.Term(ctx, "malformed event: bad bytes")
			})
			require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.DeadLetter("acme", queue.RoleJobs), Data: []byte("garbage!")}))
			require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.DeadLetter("other", queue.RoleJobs), Data: []byte("theirs")}))

			var all []queue.DeadLetter
			require.Eventually(t, func() bool {
				var err error
				all, _, err = c.DeadLetters(ctx, "acme", queue.DeadLetterQuery{Limit: 10})
				require.NoError(t, err)
				return len(all) == 3
			}, 10*time.Second, 20*time.Millisecond)
			require.Equal(t, int64(2), naks.Load(), "the handler saw MaxDeliveries deliveries")

			byClass := map[string]queue.DeadLetter{}
			for _, d := range all {
				byClass[d.Class] = d
			}
			job := byClass[queue.ClassMaxDeliveries]
			require.Equal(t, queue.RoleJobs, job.Role)
			require.Equal(t, jobs, job.OriginalSubject)
			require.Equal(t, "max deliveries (2) exceeded", job.Reason)
			require.Equal(t, queue.ClassMaxDeliveries, job.Class)
			require.Equal(t, 2, job.Attempts)
			require.Equal(t, 3, job.Size())
			require.False(t, job.Direct)
			require.WithinRange(t, job.FirstTime, before.Add(-time.Second), job.Time)
			require.False(t, job.Time.Before(job.FirstTime))

			sub := byClass[queue.ClassMalformed]
			require.Equal(t, queue.RoleSubmit, sub.Role)
			require.Equal(t, queue.ClassMalformed, sub.Class)
			require.Equal(t, 1, sub.Attempts)

			garbage := byClass[queue.ClassDirect]
			require.True(t, garbage.Direct)
			require.Equal(t, queue.ReasonPublishedDirectly, garbage.Reason)
			require.Equal(t, queue.ClassDirect, garbage.Class)
			require.Equal(t, queue.RoleJobs, garbage.Role, "the role of its dead-letter subject")
			require.Empty(t, garbage.OriginalSubject)

			// Filters and pages.
			first, next, err := c.DeadLetters(ctx, "acme", queue.DeadLetterQuery{Role: queue.RoleJobs, Limit: 1})
			require.NoError(t, err)
			require.Len(t, first, 1)
			require.Equal(t, first[0].ID, next)
			second, next, err := c.DeadLetters(ctx, "acme", queue.DeadLetterQuery{Role: queue.RoleJobs, Limit: 1, After: next})
			require.NoError(t, err)
			require.Len(t, second, 1)
			require.Empty(t, next, "the last page")
			require.ElementsMatch(t, []string{job.ID, garbage.ID}, ids(append(first, second...)))
			theirs, _, err := c.DeadLetters(ctx, "other", queue.DeadLetterQuery{Limit: 10})
			require.NoError(t, err)
			require.Len(t, theirs, 1)
			_, _, err = c.DeadLetters(ctx, "acme", queue.DeadLetterQuery{Role: "a.>", Limit: 10})
			require.ErrorIs(t, err, queue.ErrInvalidSubject)

			// One by id; another tenant's id is not found.
			got, err := c.DeadLetter(ctx, "acme", job.ID)
			require.NoError(t, err)
			require.Equal(t, []byte("job"), got.Data)
			require.Equal(t, "1", got.Header["X-Keep"])
			// Ids are per stream: in the shared layout another tenant's id
			// is not found, in the per-tenant one it is another message.
			if mine, err := c.DeadLetter(ctx, "acme", theirs[0].ID); err == nil {
				require.Equal(t, natsjs.LayoutPerTenant, layout)
				require.NotEqual(t, []byte("theirs"), mine.Data)
			} else {
				require.ErrorIs(t, err, queue.ErrDeadLetterNotFound)
			}
			for _, bad := range []string{"0", "x", "-1", "99999"} {
				_, err = c.DeadLetter(ctx, "acme", bad)
				require.ErrorIs(t, err, queue.ErrDeadLetterNotFound, bad)
			}

			// The replay message: original subject and headers, without
			// the dead-letter ones, with a new dedupe id.
			m := queue.ReplayMessage(got, "replay-1")
			require.Equal(t, jobs, m.Subject)
			require.Equal(t, "1", m.Header["X-Keep"])
			require.Equal(t, job.ID, m.Header[queue.HeaderReplayOf])
			require.NotContains(t, m.Header, queue.HeaderDeadLetterReason)
			require.NotContains(t, m.Header, queue.HeaderDeadLetterFirstTime)

			// Delete.
			require.NoError(t, c.DeleteDeadLetter(ctx, "acme", job.ID))
			_, err = c.DeadLetter(ctx, "acme", job.ID)
			require.ErrorIs(t, err, queue.ErrDeadLetterNotFound)
			require.ErrorIs(t, c.DeleteDeadLetter(ctx, "acme", job.ID), queue.ErrDeadLetterNotFound)
			left, _, err := c.DeadLetters(ctx, "acme", queue.DeadLetterQuery{Limit: 10})
			require.NoError(t, err)
			require.ElementsMatch(t, []string{sub.ID, garbage.ID}, ids(left))
			still, _, err := c.DeadLetters(ctx, "other", queue.DeadLetterQuery{Limit: 10})
			require.NoError(t, err)
			require.Equal(t, ids(theirs), ids(still))
		})
	}
}

// A dead letter whose handling fails past its consumer's MaxDeliveries is
// not copied to the dead-letter stream again: it stays where it is.
func TestDeadLetterIsNotDeadLetteredAgain(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx := testCtx(t)
	s := c.Subjects()
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	require.NoError(t, c.Publish(ctx, queue.Message{Subject: s.DeadLetter("acme", queue.RoleJobs), Data: []byte("x")}))
	cfg := queue.ConsumerConfig{Name: "dlq", Subject: s.All("acme", queue.RoleDeadLetter), MaxDeliveries: 2}
	naks := consumeAll(t, c, cfg, func(ctx context.Context, d queue.Delivery) error { return d.Nak(ctx, 0) })

	js, err := jetstream.New(c.NATS())
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ci, err := js.Consumer(ctx, c.StreamName("acme", queue.RoleDeadLetter), natsjs.ConsumerName(cfg.Name, cfg.Subject))
		return err == nil && ci.CachedInfo().NumPending == 0 && ci.CachedInfo().NumAckPending == 0 && ci.CachedInfo().NumRedelivered == 0
	}, 10*time.Second, 20*time.Millisecond, "terminated after its deliveries")
	require.Equal(t, int64(2), naks.Load())
	all, _, err := c.DeadLetters(ctx, "acme", queue.DeadLetterQuery{Limit: 10})
	require.NoError(t, err)
	require.Len(t, all, 1, "no dead letter of the dead letter")
}

// Work and watch subjects take only the shapes their readers use: anything
// else is refused, by Publish and by the stream itself, instead of sitting
// in a stream nobody reads (the watch stream keeps messages forever).
func TestWorkSubjectShapes(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL()})
	ctx := testCtx(t)
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	require.NoError(t, c.Publish(ctx, queue.Message{Subject: c.Subjects().Leases("acme", "z"), Data: []byte("lease")}))
	js, err := jetstream.New(c.NATS())
	require.NoError(t, err)
	for _, subject := range []string{"outpost.acme.jobs.x.y", "outpost.acme.leases.x.y", "outpost.acme.ops.a.b.c", "outpost.acme.watch.a.b", "outpost.acme.watch.a.b.c.d.e"} {
		t.Run(subject, func(t *testing.T) {
			err := c.Publish(ctx, queue.Message{Subject: subject, Data: []byte("garbage")})
			require.ErrorIs(t, err, queue.ErrInvalidSubject)
			_, err = js.Publish(ctx, subject, []byte("garbage"))
			require.ErrorIs(t, err, jetstream.ErrNoStreamResponse, "no stream stores it")
		})
	}
	for _, role := range []queue.Role{queue.RoleJobs, queue.RoleLeases, queue.RoleWatch} {
		st, err := js.Stream(ctx, c.StreamName("acme", role))
		require.NoError(t, err)
		want := uint64(0)
		if role == queue.RoleLeases {
			want = 1 // the valid lease
		}
		require.Equal(t, want, st.CachedInfo().State.Msgs, role)
	}
}

// consumeAll consumes cfg with fn until the test ends and counts the calls.
func consumeAll(t *testing.T, c *natsjs.Conn, cfg queue.ConsumerConfig, fn func(context.Context, queue.Delivery) error) *atomic.Int64 {
	t.Helper()
	n := &atomic.Int64{}
	k, err := c.Consume(testCtx(t), cfg, func(ctx context.Context, d queue.Delivery) {
		n.Add(1)
		if err := fn(ctx, d); err != nil {
			t.Errorf("settle %s: %v", d.Subject(), err)
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = k.Stop(context.Background()) })
	return n
}

func ids(ds []queue.DeadLetter) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}
