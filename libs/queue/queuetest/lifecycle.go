package queuetest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

func testStop(t *testing.T, s *suite) {
	ackWait := s.dur(time.Second)
	subject := s.Subjects.Jobs(s.Tenant, "pool-s")
	cfg := queue.ConsumerConfig{Name: "stopper", Subject: subject, AckWait: ackWait}
	first := &recorder{}
	started := make(chan struct{})
	release := make(chan struct{})
	c := s.consume(t, cfg, func(ctx context.Context, d queue.Delivery) {
		first.add(d, 0)
		if first.len() == 1 {
			close(started)
		}
		<-release // returns without settling
	})
	s.publish(t, queue.Message{Subject: subject, Data: []byte("in flight")})
	require.Eventually(t, func() bool {
		select {
		case <-started:
			return true
		default:
			return false
		}
	}, 10*time.Second, 10*time.Millisecond, "handler did not start")

	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stopped <- c.Stop(ctx)
	}()
	require.Never(t, func() bool { return len(stopped) > 0 }, 300*time.Millisecond, 10*time.Millisecond, "Stop returned while a handler was running")
	close(release)
	var stopErr error
	require.Eventually(t, func() bool {
		select {
		case stopErr = <-stopped:
			return true
		default:
			return false
		}
	}, 10*time.Second, 10*time.Millisecond, "Stop did not return after the handler")
	require.NoError(t, stopErr)

	second := &recorder{}
	s.consume(t, cfg, acker(second, 1))
	second.waitLen(t, 1, ackWait+s.tol+5*time.Second, "unsettled message redelivered to a new consumer")
	got := second.all()[0]
	require.Equal(t, "in flight", got.Data)
	require.Equal(t, 2, got.Attempt)
	require.Equal(t, 1, first.len(), "a stopped consumer got another delivery")
	second.noErrors(t)
}

func testConsumeContextCancelled(t *testing.T, s *suite) {
	subject := s.Subjects.Jobs(s.Tenant, "pool-x")
	cfg := queue.ConsumerConfig{Name: "ctx", Subject: subject, AckWait: s.dur(time.Second)}
	ctx, cancel := context.WithCancel(context.Background())
	first := &recorder{}
	c, err := s.Broker.Consume(ctx, cfg, func(ctx context.Context, d queue.Delivery) {
		// Ack before recording: the test cancels ctx once it sees the
		// delivery, and that must not fail this ack.
		first.fail(d.Ack(ctx))
		first.add(d, 0)
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Stop(context.Background()) })
	s.publish(t, queue.Message{Subject: subject, Data: []byte("before")})
	first.waitLen(t, 1, 10*time.Second, "before cancel")
	cancel()
	s.publish(t, queue.Message{Subject: subject, Data: []byte("after")})
	require.Never(t, func() bool { return first.len() > 1 }, s.dur(time.Second)+s.tol, 50*time.Millisecond, "handler called after its context was cancelled")

	second := &recorder{}
	s.consume(t, cfg, acker(second, 1))
	second.waitLen(t, 1, 10*time.Second, "message left for the next consumer")
	require.Equal(t, "after", second.all()[0].Data)
	first.noErrors(t)
	second.noErrors(t)
}

func testHandlerPanic(t *testing.T, s *suite) {
	// The ack wait is long: a quick redelivery means the panic was
	// recovered and the message handed back.
	ackWait := s.dur(30 * time.Second)
	subject := s.Subjects.Jobs(s.Tenant, "pool-panic")
	rec := &recorder{}
	s.consume(t, queue.ConsumerConfig{Name: "panicky", Subject: subject, AckWait: ackWait}, func(ctx context.Context, d queue.Delivery) {
		rec.add(d, 0)
		if d.Attempt() == 1 {
			panic("handler bug")
		}
		rec.fail(d.Ack(ctx))
	})
	s.publish(t, queue.Message{Subject: subject, Data: []byte("boom")})
	rec.waitLen(t, 2, 10*time.Second, "redelivery after a handler panic")
	require.Equal(t, 2, rec.all()[1].Attempt)
	rec.noErrors(t)
	// The process is still consuming.
	s.publish(t, queue.Message{Subject: subject, Data: []byte("next")})
	rec.waitLen(t, 3, 10*time.Second, "consuming after a panic")
}

func testSettleTwice(t *testing.T, s *suite) {
	type op func(context.Context, queue.Delivery) error
	ops := map[string]op{
		"ack":         func(ctx context.Context, d queue.Delivery) error { return d.Ack(ctx) },
		"nak":         func(ctx context.Context, d queue.Delivery) error { return d.Nak(ctx, s.dur(10*time.Second)) },
		"term":        func(ctx context.Context, d queue.Delivery) error { return d.Term(ctx, "settle twice") },
		"in-progress": func(ctx context.Context, d queue.Delivery) error { return d.InProgress(ctx) },
	}
	cases := [][2]string{
		{"ack", "ack"}, {"ack", "nak"}, {"ack", "term"}, {"ack", "in-progress"},
		{"nak", "ack"}, {"term", "ack"}, {"term", "term"},
	}
	type result struct{ first, second error }
	var mu sync.Mutex
	results := map[string]result{}
	subject := s.Subjects.Jobs(s.Tenant, "pool-twice")
	s.consume(t, queue.ConsumerConfig{Name: "twice", Subject: subject, AckWait: s.dur(20 * time.Second), Concurrency: 4}, func(ctx context.Context, d queue.Delivery) {
		var tc [2]string
		_, err := fmt.Sscanf(string(d.Data()), "%s %s", &tc[0], &tc[1])
		if err != nil || d.Attempt() > 1 {
			return
		}
		r := result{first: ops[tc[0]](ctx, d)}
		r.second = ops[tc[1]](ctx, d)
		mu.Lock()
		results[tc[0]+" "+tc[1]] = r
		mu.Unlock()
	})
	for _, tc := range cases {
		s.publish(t, queue.Message{Subject: subject, Data: []byte(tc[0] + " " + tc[1])})
	}
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(results) == len(cases)
	}, 15*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for _, tc := range cases {
		r := results[tc[0]+" "+tc[1]]
		require.NoError(t, r.first, "%s then %s: first", tc[0], tc[1])
		require.ErrorIs(t, r.second, queue.ErrAlreadyAcked, "%s then %s: second", tc[0], tc[1])
	}
}

func testPayloadTooLarge(t *testing.T, s *suite) {
	subject := s.Subjects.Jobs(s.Tenant, "pool-big")
	err := s.Broker.Publish(s.ctx(t), queue.Message{Subject: subject, Data: make([]byte, s.MaxPayload+1)})
	require.ErrorIs(t, err, queue.ErrPayloadTooLarge)
	require.Contains(t, err.Error(), strconv.Itoa(s.MaxPayload), "the error names the limit")

	atLimit := make([]byte, s.MaxPayload)
	for i := range atLimit {
		atLimit[i] = byte('a' + i%26)
	}
	s.publish(t, queue.Message{Subject: subject, Data: atLimit})
	rec := &recorder{}
	s.consume(t, queue.ConsumerConfig{Name: "big", Subject: subject}, acker(rec, 0))
	rec.waitLen(t, 1, 10*time.Second, "message at the limit")
	require.Equal(t, string(atLimit), rec.all()[0].Data)
	require.Never(t, func() bool { return rec.len() > 1 }, 300*time.Millisecond, 20*time.Millisecond, "the refused message was stored")
	rec.noErrors(t)
}

func testUnknownTenant(t *testing.T, s *suite) {
	unknown := s.Tenant + "-none"
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err := s.Broker.Publish(ctx, queue.Message{Subject: s.Subjects.Submit(unknown), Data: []byte("x")})
	require.ErrorIs(t, err, queue.ErrUnknownTenant)
	err = s.Broker.Publish(ctx, queue.Message{Subject: s.Subjects.JobStatus(unknown, "job"), Data: []byte("x")})
	require.ErrorIs(t, err, queue.ErrUnknownTenant)
	_, err = s.Broker.Consume(ctx, queue.ConsumerConfig{Name: "nobody", Subject: s.Subjects.Submit(unknown)}, func(context.Context, queue.Delivery) {})
	require.ErrorIs(t, err, queue.ErrUnknownTenant)
	require.NoError(t, ctx.Err(), "unknown tenant must fail fast, not time out")
}

func testInvalidSubject(t *testing.T, s *suite) {
	other := "x" + s.Subjects.Stack
	if len(other) > 64 {
		other = "other"
	}
	cases := map[string]string{
		"other stack":     other + "." + s.Tenant + ".submit",
		"unknown role":    s.Subjects.Stack + "." + s.Tenant + ".bogus.k",
		"no role":         s.Subjects.Stack + "." + s.Tenant,
		"wildcard tenant": s.Subjects.Stack + ".*.submit",
		"empty":           "",
	}
	for name, subject := range cases {
		t.Run(name, func(t *testing.T) {
			err := s.Broker.Publish(s.ctx(t), queue.Message{Subject: subject, Data: []byte("x")})
			require.ErrorIs(t, err, queue.ErrInvalidSubject)
		})
	}
}
