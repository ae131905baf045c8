package queuetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

func testRoundTrip(t *testing.T, s *suite) {
	ackWait := s.dur(time.Second)
	subject := s.Subjects.Jobs(s.Tenant, "pool-a")
	s.publish(t, queue.Message{
		Subject: subject,
		Data:    []byte("hello"),
		Header:  map[string]string{queue.HeaderType: "outpost.test.v1.Ping", "X-Trace-Id": "abc-123"},
	})
	s.publish(t, queue.Message{Subject: subject, Data: []byte("bare")})

	rec := &recorder{}
	s.consume(t, queue.ConsumerConfig{Name: "round-trip", Subject: s.Subjects.All(s.Tenant, queue.RoleJobs), AckWait: ackWait}, acker(rec, 0))
	rec.waitLen(t, 2, 10*time.Second, "round trip")
	// Acked: nothing comes back after the ack wait.
	require.Never(t, func() bool { return rec.len() > 2 }, ackWait+s.tol, 50*time.Millisecond, "an acked message was redelivered")
	rec.noErrors(t)

	got := map[string]seen{}
	for _, d := range rec.all() {
		got[d.Data] = d
	}
	hello, bare := got["hello"], got["bare"]
	require.Equal(t, subject, hello.Subject)
	require.Equal(t, 1, hello.Attempt)
	require.Equal(t, "outpost.test.v1.Ping", hello.Header[queue.HeaderType])
	require.Equal(t, "abc-123", hello.Header["X-Trace-Id"])
	require.Equal(t, subject, bare.Subject)
	require.NotNil(t, bare.Header, "Header() must never be nil")
	require.Empty(t, bare.Header[queue.HeaderType])
}

func testEnsureTenantIdempotent(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	// Run already ensured the tenant once; again, then with limits, then
	// without them again.
	require.NoError(t, s.Broker.EnsureTenant(ctx, s.Tenant, queue.TenantLimits{}))
	require.NoError(t, s.Broker.EnsureTenant(ctx, s.Tenant, queue.TenantLimits{MaxBytes: 64 << 20, MaxMessages: 100_000}))
	require.NoError(t, s.Broker.EnsureTenant(ctx, s.Tenant, queue.TenantLimits{}))
	s.publish(t, queue.Message{Subject: s.Subjects.Submit(s.Tenant), Data: []byte("still works")})
	rec := &recorder{}
	s.consume(t, queue.ConsumerConfig{Name: "idem", Subject: s.Subjects.Submit(s.Tenant)}, acker(rec, 0))
	rec.waitLen(t, 1, 10*time.Second, "after re-ensuring")
	require.Equal(t, "still works", rec.all()[0].Data)
	rec.noErrors(t)
}

func testOrdering(t *testing.T, s *suite) {
	const n = 30
	subject := s.Subjects.Submit(s.Tenant)
	want := make([]string, n)
	for i := range n {
		want[i] = "m" + strconv.Itoa(i)
		s.publish(t, queue.Message{Subject: subject, Data: []byte(want[i])})
	}
	rec := &recorder{}
	s.consume(t, queue.ConsumerConfig{Name: "ordered", Subject: subject, Concurrency: 1, AckWait: s.dur(10 * time.Second)}, acker(rec, 0))
	rec.waitLen(t, n, 15*time.Second, "ordering")
	rec.noErrors(t)
	var got []string
	for _, d := range rec.all() {
		got = append(got, d.Data)
	}
	if s.Capabilities.OrderedDelivery {
		require.Equal(t, want, got, "deliveries out of publish order")
	} else {
		require.ElementsMatch(t, want, got)
	}
}

func testRedeliveryAfterAckWait(t *testing.T, s *suite) {
	ackWait := s.dur(time.Second)
	subject := s.Subjects.Jobs(s.Tenant, "pool-r")
	rec := &recorder{}
	s.consume(t, queue.ConsumerConfig{Name: "redeliver", Subject: subject, AckWait: ackWait}, func(ctx context.Context, d queue.Delivery) {
		rec.add(d, 0)
		if d.Attempt() >= 2 {
			rec.fail(d.Ack(ctx))
		}
		// First attempt: return without settling, like a crashed runner.
	})
	s.publish(t, queue.Message{Subject: subject, Data: []byte("job")})
	rec.waitLen(t, 2, ackWait+s.tol+5*time.Second, "redelivery after the ack wait")
	rec.noErrors(t)
	got := rec.all()
	require.Equal(t, 1, got[0].Attempt)
	require.Equal(t, 2, got[1].Attempt)
	gap := got[1].At.Sub(got[0].At)
	require.GreaterOrEqual(t, gap, ackWait-s.early, "redelivered before the ack wait")
	require.LessOrEqual(t, gap, ackWait+s.tol, "redelivered too long after the ack wait")
}

func testInProgress(t *testing.T, s *suite) {
	ackWait := s.dur(time.Second)
	hold := 3 * ackWait
	subject := s.Subjects.Jobs(s.Tenant, "pool-p")
	rec := &recorder{}
	done := make(chan struct{})
	s.consume(t, queue.ConsumerConfig{Name: "in-progress", Subject: subject, AckWait: ackWait, Concurrency: 2}, func(ctx context.Context, d queue.Delivery) {
		rec.add(d, 0)
		if d.Attempt() > 1 {
			rec.fail(d.Ack(ctx))
			return
		}
		// Work for three ack waits, extending every third of one.
		end := time.NewTimer(hold)
		defer end.Stop()
		tick := time.NewTicker(ackWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				rec.fail(d.InProgress(ctx))
			case <-end.C:
				rec.fail(d.Ack(ctx))
				close(done)
				return
			case <-ctx.Done():
				return
			}
		}
	})
	s.publish(t, queue.Message{Subject: subject, Data: []byte("long job")})
	require.Eventually(t, func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}, hold+10*time.Second, 10*time.Millisecond, "handler did not finish")
	require.Equal(t, 1, rec.len(), "redelivered while in progress")
	require.Never(t, func() bool { return rec.len() > 1 }, ackWait+s.tol, 50*time.Millisecond, "redelivered after the ack")
	rec.noErrors(t)
}

func testNakDelay(t *testing.T, s *suite) {
	// The ack wait is far longer than the delays, so a redelivery inside
	// the window can only come from the Nak.
	ackWait := s.dur(20 * time.Second)
	delays := []time.Duration{0, s.dur(2 * time.Second)}
	runAll(t, delays, time.Duration.String, func(t *testing.T, delay time.Duration) {
		subject := s.Subjects.Jobs(s.Tenant, "pool-nak-"+strconv.Itoa(int(delay/time.Millisecond)))
		rec := &recorder{}
		var nakAt atomic.Int64
		s.consume(t, queue.ConsumerConfig{Name: "nak", Subject: subject, AckWait: ackWait}, func(ctx context.Context, d queue.Delivery) {
			rec.add(d, 0)
			if d.Attempt() == 1 {
				nakAt.Store(time.Now().UnixNano())
				rec.fail(d.Nak(ctx, delay))
				return
			}
			rec.fail(d.Ack(ctx))
		})
		s.publish(t, queue.Message{Subject: subject, Data: []byte("retry me")})
		rec.waitLen(t, 2, delay+s.tol+5*time.Second, "redelivery after nak")
		rec.noErrors(t)
		got := rec.all()
		require.Equal(t, 2, got[1].Attempt)
		gap := got[1].At.Sub(time.Unix(0, nakAt.Load()))
		require.GreaterOrEqual(t, gap, delay-s.early, "redelivered before the nak delay")
		require.LessOrEqual(t, gap, delay+s.tol, "redelivered too long after the nak delay")
	})
}

func testMaxDeliveries(t *testing.T, s *suite) {
	const maxDel = 2
	subject := s.Subjects.Jobs(s.Tenant, "pool-m")
	rec := &recorder{}
	s.consume(t, queue.ConsumerConfig{Name: "max-del", Subject: subject, AckWait: s.dur(20 * time.Second), MaxDeliveries: maxDel}, func(ctx context.Context, d queue.Delivery) {
		rec.add(d, 0)
		rec.fail(d.Nak(ctx, 0))
	})
	dlq := s.deadLetters(t, queue.RoleJobs)
	s.publish(t, queue.Message{Subject: subject, Data: []byte("poison"), Header: map[string]string{"X-Trace-Id": "t-1"}})

	dlq.waitLen(t, 1, 10*time.Second+s.tol, "dead letter")
	require.Never(t, func() bool { return rec.len() > maxDel || dlq.len() > 1 }, s.tol, 50*time.Millisecond, "delivered past max deliveries")
	rec.noErrors(t)
	require.Equal(t, maxDel, rec.len(), "handler calls")
	for i, d := range rec.all() {
		require.Equal(t, i+1, d.Attempt)
	}
	d := dlq.all()[0]
	require.Equal(t, "poison", d.Data)
	require.Equal(t, s.Subjects.DeadLetter(s.Tenant, queue.RoleJobs), d.Subject)
	require.Equal(t, fmt.Sprintf("max deliveries (%d) exceeded", maxDel), d.Header[queue.HeaderDeadLetterReason])
	require.Equal(t, subject, d.Header[queue.HeaderDeadLetterSubject])
	require.Equal(t, strconv.Itoa(maxDel), d.Header[queue.HeaderDeadLetterAttempts])
	require.Equal(t, "t-1", d.Header["X-Trace-Id"], "original headers are kept")
}

func testTerm(t *testing.T, s *suite) {
	type termCase struct {
		role    queue.Role
		subject string
	}
	ackWait := s.dur(time.Second)
	cases := []termCase{
		{queue.RoleJobs, s.Subjects.Jobs(s.Tenant, "pool-t")},
		{queue.RoleControl, s.Subjects.Control(s.Tenant, "pool-t")},
	}
	runAll(t, cases, func(tc termCase) string { return string(tc.role) }, func(t *testing.T, tc termCase) {
		const reason = "bad spec: image missing"
		rec := &recorder{}
		s.consume(t, queue.ConsumerConfig{Name: "term", Subject: tc.subject, AckWait: ackWait}, func(ctx context.Context, d queue.Delivery) {
			rec.add(d, 0)
			rec.fail(d.Term(ctx, reason))
		})
		dlq := s.deadLetters(t, tc.role)
		s.publish(t, queue.Message{Subject: tc.subject, Data: []byte("doomed"), Header: map[string]string{queue.HeaderType: "outpost.test.v1.Doomed"}})
		dlq.waitLen(t, 1, 10*time.Second, "dead letter after term")
		require.Never(t, func() bool { return rec.len() > 1 || dlq.len() > 1 }, ackWait+s.tol, 50*time.Millisecond, "terminated message came back")
		rec.noErrors(t)
		d := dlq.all()[0]
		require.Equal(t, "doomed", d.Data)
		require.Equal(t, s.Subjects.DeadLetter(s.Tenant, tc.role), d.Subject)
		require.Equal(t, reason, d.Header[queue.HeaderDeadLetterReason])
		require.Equal(t, tc.subject, d.Header[queue.HeaderDeadLetterSubject])
		require.Equal(t, "1", d.Header[queue.HeaderDeadLetterAttempts])
		require.Equal(t, "outpost.test.v1.Doomed", d.Header[queue.HeaderType], "original headers are kept")
	})
}

func testDedupe(t *testing.T, s *suite) {
	subject := s.Subjects.Jobs(s.Tenant, "pool-d")
	s.publish(t, queue.Message{Subject: subject, Data: []byte("a"), DedupeID: "dup-1"})
	s.publish(t, queue.Message{Subject: subject, Data: []byte("a"), DedupeID: "dup-1"})
	s.publish(t, queue.Message{Subject: subject, Data: []byte("b"), DedupeID: "dup-2"})
	s.publish(t, queue.Message{Subject: subject, Data: []byte("c")})
	rec := &recorder{}
	s.consume(t, queue.ConsumerConfig{Name: "dedupe", Subject: subject, AckWait: s.dur(20 * time.Second)}, acker(rec, 0))
	if !s.Capabilities.Dedupe {
		// No deduplication promised: both copies must arrive.
		rec.waitLen(t, 4, 10*time.Second, "without dedupe")
		require.Equal(t, 2, rec.count("a"))
		return
	}
	require.Eventually(t, func() bool { return rec.count("a") >= 1 && rec.count("b") == 1 && rec.count("c") == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Never(t, func() bool { return rec.count("a") > 1 }, s.tol, 50*time.Millisecond, "duplicate delivered")
	require.Equal(t, 3, rec.len())
	rec.noErrors(t)

	// A broker that declares its window drops the id within it even after
	// the first message was consumed and acknowledged.
	if d, ok := s.Broker.(queue.Deduplicator); ok && d.DedupeWindow() > 0 {
		s.publish(t, queue.Message{Subject: subject, Data: []byte("a"), DedupeID: "dup-1"})
		s.publish(t, queue.Message{Subject: subject, Data: []byte("e")})
		rec.waitLen(t, 4, 10*time.Second, "a message after the acknowledged one")
		require.Never(t, func() bool { return rec.count("a") > 1 }, s.tol, 50*time.Millisecond, "an acknowledged message's id was published again")
	}

	// Ids are scoped to the subject: the same id on another subject of the
	// same tenant (the same JetStream stream) is a different message.
	other := s.Subjects.Submit(s.Tenant)
	s.publish(t, queue.Message{Subject: other, Data: []byte("d"), DedupeID: "dup-1"})
	rec2 := &recorder{}
	s.consume(t, queue.ConsumerConfig{Name: "dedupe-other", Subject: other, AckWait: s.dur(20 * time.Second)}, acker(rec2, 0))
	rec2.waitLen(t, 1, 10*time.Second, "same id on another subject")
}

func testCompeting(t *testing.T, s *suite) {
	const consumers, n = 4, 200
	subject := s.Subjects.Jobs(s.Tenant, "pool-c")
	rec := &recorder{}
	for i := range consumers {
		s.consume(t, queue.ConsumerConfig{Name: "workers", Subject: subject, Concurrency: 2, AckWait: s.dur(30 * time.Second)}, func(ctx context.Context, d queue.Delivery) {
			rec.add(d, i)
			// A little work, so that no single consumer drains the
			// queue before the others have pulled.
			tm := time.NewTimer(2 * time.Millisecond)
			<-tm.C
			rec.fail(d.Ack(ctx))
		})
	}
	for i := range n {
		s.publish(t, queue.Message{Subject: subject, Data: []byte("w" + strconv.Itoa(i))})
	}
	rec.waitLen(t, n, 30*time.Second, "competing consumers")
	require.Never(t, func() bool { return rec.len() > n }, 500*time.Millisecond, 20*time.Millisecond, "a message was handled twice")
	rec.noErrors(t)
	perMsg := map[string]int{}
	perConsumer := map[int]int{}
	for _, d := range rec.all() {
		perMsg[d.Data]++
		perConsumer[d.Consumer]++
	}
	require.Len(t, perMsg, n)
	for m, c := range perMsg {
		require.Equal(t, 1, c, "message %s handled %d times", m, c)
	}
	require.GreaterOrEqual(t, len(perConsumer), 2, "one consumer took all the work: %v", perConsumer)
}

func testFanOut(t *testing.T, s *suite) {
	const n = 10
	subject := s.Subjects.All(s.Tenant, queue.RoleJobEvents)
	recs := []*recorder{{}, {}}
	for i, rec := range recs {
		s.consume(t, queue.ConsumerConfig{Name: "fan-" + strconv.Itoa(i), Subject: subject, AckWait: s.dur(20 * time.Second)}, acker(rec, i))
	}
	for i := range n {
		s.publish(t, queue.Message{Subject: s.Subjects.JobStatus(s.Tenant, "job-"+strconv.Itoa(i%3)), Data: []byte("e" + strconv.Itoa(i))})
	}
	total := func() int { return recs[0].len() + recs[1].len() }
	if s.Capabilities.FanOut {
		require.Eventually(t, func() bool { return recs[0].len() == n && recs[1].len() == n }, 10*time.Second, 10*time.Millisecond, "each consumer name gets every event")
	} else {
		require.Eventually(t, func() bool { return total() == n }, 10*time.Second, 10*time.Millisecond, "events shared between consumer names")
	}
	want := n
	if s.Capabilities.FanOut {
		want = 2 * n
	}
	require.Never(t, func() bool { return total() > want }, 500*time.Millisecond, 20*time.Millisecond, "an event was handled twice by one consumer name")
	for _, rec := range recs {
		rec.noErrors(t)
	}
}

// testAckNoWait: an acknowledgement sent without waiting for the broker's
// reply still settles the message (nothing comes back after the ack wait),
// a second settlement is refused, and a fenced consumer cannot have it.
func testAckNoWait(t *testing.T, s *suite) {
	ackWait := s.dur(time.Second)
	subject := s.Subjects.Jobs(s.Tenant, "pool-nowait")
	const n = 20
	for i := range n {
		s.publish(t, queue.Message{Subject: subject, Data: []byte(strconv.Itoa(i))})
	}
	rec := &recorder{}
	var again atomic.Int64
	s.consume(t, queue.ConsumerConfig{Name: "nowait", Subject: subject, AckWait: ackWait, AckNoWait: true, Concurrency: 4}, func(ctx context.Context, d queue.Delivery) {
		rec.add(d, 0)
		rec.fail(d.Ack(ctx))
		if errors.Is(d.Ack(ctx), queue.ErrAlreadyAcked) {
			again.Add(1)
		}
	})
	rec.waitLen(t, n, 10*time.Second, "acked without waiting")
	require.Never(t, func() bool { return rec.len() > n }, ackWait+s.tol, 50*time.Millisecond, "a message acked without waiting was redelivered")
	rec.noErrors(t)
	require.EqualValues(t, n, again.Load(), "a second ack must report ErrAlreadyAcked")

	_, err := s.Broker.Consume(s.ctx(t), queue.ConsumerConfig{Name: "nowait-fenced", Subject: subject, AckWait: s.dur(10 * time.Second), Fenced: true, AckNoWait: true},
		func(context.Context, queue.Delivery) {})
	require.ErrorIs(t, err, queue.ErrInvalidConsumer)
}
