package natsjs_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

func TestListWork(t *testing.T) {
	srv := natstest.RunServer(t)
	for _, layout := range []natsjs.Layout{natsjs.LayoutPerTenant, natsjs.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) {
			c := connect(t, natsjs.Config{URL: srv.ClientURL(), Stack: "lw-" + string(layout), Layout: layout})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
			subs := queue.NewSubjects("lw-" + string(layout))
			a, b := subs.Jobs("acme", "pool-a"), subs.Jobs("acme", "pool-b")
			for _, m := range []queue.Message{{Subject: a, Data: []byte("a1")}, {Subject: b, Data: []byte("b1")}, {Subject: a, Data: []byte("a2")}, {Subject: a, Data: []byte("a3")}} {
				require.NoError(t, c.Publish(ctx, m))
			}
			list := func() []string {
				var out []string
				require.NoError(t, c.ListWork(ctx, a, func(m queue.StreamMessage) bool {
					require.Equal(t, a, m.Subject)
					out = append(out, string(m.Data))
					return true
				}))
				return out
			}
			require.Equal(t, []string{"a1", "a2", "a3"}, list())

			// An acknowledged message is gone; one being handled is not.
			held := make(chan queue.Delivery, 3)
			cons, err := c.Consume(ctx, queue.ConsumerConfig{Name: "lw", Subject: a, AckWait: time.Minute, Concurrency: 3}, func(ctx context.Context, d queue.Delivery) {
				if string(d.Data()) == "a2" {
					require.NoError(t, d.Ack(ctx))
					return
				}
				held <- d
			})
			require.NoError(t, err)
			t.Cleanup(func() { _ = cons.Stop(context.Background()) })
			require.Eventually(t, func() bool { return len(held) == 2 }, 10*time.Second, 10*time.Millisecond)
			require.Eventually(t, func() bool { return len(list()) == 2 }, 10*time.Second, 10*time.Millisecond)
			require.Equal(t, []string{"a1", "a3"}, list())

			var first []string
			require.NoError(t, c.ListWork(ctx, a, func(m queue.StreamMessage) bool {
				first = append(first, string(m.Data))
				return false
			}))
			require.Equal(t, []string{"a1"}, first, "fn returning false stops the walk")
			require.NoError(t, c.ListWork(ctx, subs.Jobs("acme", "pool-empty"), func(queue.StreamMessage) bool {
				t.Error("message on an empty subject")
				return true
			}))
			require.ErrorIs(t, c.ListWork(ctx, subs.JobStatus("acme", "j1"), func(queue.StreamMessage) bool { return true }), queue.ErrInvalidSubject)
			require.ErrorIs(t, c.ListWork(ctx, subs.All("acme", queue.RoleJobs), func(queue.StreamMessage) bool { return true }), queue.ErrInvalidSubject)
			for range 2 {
				require.NoError(t, (<-held).Ack(ctx))
			}
		})
	}
}
