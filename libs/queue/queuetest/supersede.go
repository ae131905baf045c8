package queuetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

// testSupersededSettle: on a fenced consumer, a handler that outlives its
// ack wait (a paused or starved process) is superseded by the redelivery to
// another consumer. Its late Ack, Nak or Term must fail with ErrSuperseded
// and leave the current delivery alone: no removal (the current holder's
// InProgress and Ack still work), no redelivery while the current holder
// works on it, no dead letter. The ack wait is generous (3s) and the current
// holder renews every twelfth of it, so it keeps its lease through
// scheduling stalls of more than a second on a loaded machine.
func testSupersededSettle(t *testing.T, s *suite) {
	t.Run("short ack wait refused", func(t *testing.T) {
		_, err := s.Broker.Consume(s.ctx(t), queue.ConsumerConfig{Name: "fenced-short", Subject: s.Subjects.Jobs(s.Tenant, "pool-fenced-short"),
			AckWait: queue.MinFencedAckWait - time.Millisecond, Fenced: true}, func(context.Context, queue.Delivery) {})
		require.ErrorIs(t, err, queue.ErrInvalidConsumer)
	})
	ops := []struct {
		name   string
		settle func(ctx context.Context, d queue.Delivery) error
	}{
		{"ack", func(ctx context.Context, d queue.Delivery) error { return d.Ack(ctx) }},
		{"nak", func(ctx context.Context, d queue.Delivery) error { return d.Nak(ctx, 0) }},
		{"term", func(ctx context.Context, d queue.Delivery) error { return d.Term(ctx, "stale") }},
	}
	runAll(t, ops, func(o struct {
		name   string
		settle func(ctx context.Context, d queue.Delivery) error
	}) string {
		return o.name
	}, func(t *testing.T, op struct {
		name   string
		settle func(ctx context.Context, d queue.Delivery) error
	}) {
		ackWait := s.dur(queue.MinFencedAckWait)
		subject := s.Subjects.Jobs(s.Tenant, "pool-stale-"+op.name)
		rec := &recorder{}
		var (
			mu         sync.Mutex
			staleErrs  []error
			second     = make(chan struct{})
			secondOnce sync.Once
			staleDone  = make(chan struct{})
			acked      = make(chan struct{})
		)
		handler := func(consumer int) queue.Handler {
			return func(ctx context.Context, d queue.Delivery) {
				rec.add(d, consumer)
				if d.Attempt() == 1 {
					// Paused past the ack wait: wake up only once the
					// message was handed to the other consumer.
					select {
					case <-second:
					case <-ctx.Done():
						return
					}
					errs := []error{d.InProgress(ctx), op.settle(ctx, d)}
					mu.Lock()
					staleErrs = errs
					mu.Unlock()
					close(staleDone)
					return
				}
				// The first later delivery is the current one (attempt 2,
				// or a later one if a delivery was lost on the way).
				current := false
				secondOnce.Do(func() { current = true; close(second) })
				if !current {
					rec.fail(d.Ack(ctx))
					return
				}
				// The current attempt keeps working for an ack wait
				// after the stale settlement, so a redelivery it caused
				// would show, then acks.
				tick := time.NewTicker(ackWait / 12)
				defer tick.Stop()
				var until <-chan time.Time
				for {
					select {
					case <-tick.C:
						rec.fail(d.InProgress(ctx))
					case <-staleDone:
						staleDone = nil
						until = time.After(ackWait + s.tol)
					case <-until:
						rec.fail(d.Ack(ctx))
						close(acked)
						return
					case <-ctx.Done():
						return
					}
				}
			}
		}
		dlq := s.deadLetters(t, queue.RoleJobs)
		name := "stale-" + op.name
		s.consume(t, queue.ConsumerConfig{Name: name, Subject: subject, AckWait: ackWait, Fenced: true}, handler(0))
		s.consume(t, queue.ConsumerConfig{Name: name, Subject: subject, AckWait: ackWait, Fenced: true}, handler(1))
		s.publish(t, queue.Message{Subject: subject, Data: []byte("job")})

		require.Eventually(t, func() bool {
			select {
			case <-acked:
				return true
			default:
				return false
			}
		}, 3*ackWait+2*s.tol+15*time.Second, 10*time.Millisecond, "the current attempt did not finish")
		mu.Lock()
		errs := staleErrs
		mu.Unlock()
		require.Len(t, errs, 2)
		require.ErrorIs(t, errs[0], queue.ErrSuperseded, "stale InProgress")
		require.ErrorIs(t, errs[1], queue.ErrSuperseded, "stale %s", op.name)
		require.Never(t, func() bool { return rec.len() > 2 }, ackWait+s.tol, 50*time.Millisecond, "redelivered after the current attempt's ack")
		got := rec.all()
		require.Len(t, got, 2)
		require.NotEqual(t, got[0].Consumer, got[1].Consumer, "the redelivery went to the paused consumer")
		require.Equal(t, 0, dlq.len(), "the stale term dead-lettered the message")
		rec.noErrors(t)
	})
}
