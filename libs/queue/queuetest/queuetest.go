// Package queuetest is the backend-neutral conformance suite of package
// queue. Every backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		queuetest.Run(t, func(t *testing.T) queuetest.Harness {
//			b := connect(t) // closed with t.Cleanup
//			return queuetest.Harness{Broker: b, Subjects: ..., Tenant: queuetest.UniqueTenant(), ...}
//		})
//	}
//
// Where backends differ, Capabilities states what the backend promises and
// the suite checks that promise (for example "in publish order" or "each
// message to exactly one consumer") rather than skipping.
package queuetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

// Capabilities states the guarantees a backend gives where backends differ.
type Capabilities struct {
	// OrderedDelivery: one consumer with Concurrency 1 receives the
	// messages of one subject in publish order. Without it the suite checks
	// that every message arrives, in any order.
	OrderedDelivery bool
	// Read: Broker.Read replays event history (and follows it). Without it
	// Read must fail with an error wrapping errors.ErrUnsupported.
	Read bool
	// Dedupe: a second publish with the same DedupeID within the backend's
	// window is dropped. Without it both copies must be delivered.
	Dedupe bool
	// FanOut: consumers with different names on the same event subject
	// each receive every message. Without it they compete: each message is
	// handled by exactly one of them.
	FanOut bool
	// TimeGranularity is the unit the backend rounds ack waits and Nak
	// delays up to (SQS: 1s). The suite only uses multiples of it. Zero
	// means no rounding.
	TimeGranularity time.Duration
	// TimingTolerance is how late a redelivery may come after it is due
	// (ack wait expired, Nak delay over). Zero means
	// DefaultTimingTolerance. Redeliveries are never allowed early.
	TimingTolerance time.Duration
}

// DefaultTimingTolerance is used when Capabilities.TimingTolerance is zero.
const DefaultTimingTolerance = 2 * time.Second

// earlySlack absorbs the delivery latency between the backend starting a
// timer and the handler seeing the message: a redelivery may appear this
// much before its due time as measured by the test.
const earlySlack = 150 * time.Millisecond

// Harness is what the suite needs from a backend for one test. newHarness
// is called once per subtest, and subtests run in parallel.
type Harness struct {
	// Broker under test; the backend closes it with t.Cleanup.
	Broker queue.Broker
	// Subjects of the stack the broker serves.
	Subjects queue.Subjects
	// Tenant is a tenant name no other test uses, not yet ensured (the
	// suite calls EnsureTenant). It must leave room for a 6-character
	// suffix within queue.ValidToken's 64.
	Tenant string
	// MaxPayload is the configured payload limit in bytes: Publish must
	// accept exactly this much data and refuse one byte more.
	MaxPayload int
	// Capabilities of the backend.
	Capabilities Capabilities
}

var tenantSeq atomic.Int64

// UniqueTenant returns a tenant name that is unique within the process and
// across runs (it carries the start time).
func UniqueTenant() string {
	return fmt.Sprintf("t%x-%d", time.Now().UnixNano()&0xffffffffff, tenantSeq.Add(1))
}

// Run runs the conformance suite. Each case is a parallel subtest with its
// own harness.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	cases := []struct {
		name string
		fn   func(*testing.T, *suite)
	}{
		{"RoundTrip", testRoundTrip},
		{"EnsureTenantIdempotent", testEnsureTenantIdempotent},
		{"Ordering", testOrdering},
		{"RedeliveryAfterAckWait", testRedeliveryAfterAckWait},
		{"InProgressExtendsAckWait", testInProgress},
		{"NakDelay", testNakDelay},
		{"MaxDeliveriesDeadLetter", testMaxDeliveries},
		{"TermDeadLetter", testTerm},
		{"Dedupe", testDedupe},
		{"CompetingConsumers", testCompeting},
		{"FanOut", testFanOut},
		{"StopWaitsForHandlers", testStop},
		{"ConsumeContextCancelled", testConsumeContextCancelled},
		{"HandlerPanic", testHandlerPanic},
		{"SettleTwice", testSettleTwice},
		{"PayloadTooLarge", testPayloadTooLarge},
		{"UnknownTenant", testUnknownTenant},
		{"InvalidSubject", testInvalidSubject},
		{"ReadHistory", testReadHistory},
		{"ReadFollow", testReadFollow},
	}
	var wg sync.WaitGroup
	for _, tc := range cases {
		// Cases mostly wait on timers, so they run side by side in
		// goroutines rather than as t.Parallel subtests, which -parallel
		// (GOMAXPROCS) would serialise on a small machine.
		wg.Go(func() {
			t.Run(tc.name, func(t *testing.T) {
				h := newHarness(t)
				require.NotNil(t, h.Broker, "harness without a broker")
				require.NotEmpty(t, h.Tenant, "harness without a tenant")
				require.True(t, queue.ValidToken(h.Tenant+"-xxxxx"), "tenant %q too long or invalid", h.Tenant)
				require.Positive(t, h.MaxPayload, "harness must state its MaxPayload")
				if h.Subjects.Stack == "" {
					h.Subjects = queue.NewSubjects("")
				}
				s := &suite{Harness: h, tol: h.Capabilities.TimingTolerance}
				if s.tol <= 0 {
					s.tol = DefaultTimingTolerance
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				require.NoError(t, h.Broker.EnsureTenant(ctx, h.Tenant, queue.TenantLimits{}))
				tc.fn(t, s)
			})
		})
	}
	wg.Wait()
}

// runAll runs f for every name as concurrent subtests of t.
func runAll[T any](t *testing.T, cases []T, name func(T) string, f func(*testing.T, T)) {
	var wg sync.WaitGroup
	for _, tc := range cases {
		wg.Go(func() { t.Run(name(tc), func(t *testing.T) { f(t, tc) }) })
	}
	wg.Wait()
}

type suite struct {
	Harness
	tol time.Duration
}

// dur rounds d up to the backend's time granularity.
func (s *suite) dur(d time.Duration) time.Duration {
	g := s.Capabilities.TimeGranularity
	if g <= 0 {
		return d
	}
	return (d + g - 1) / g * g
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (s *suite) publish(t *testing.T, msg queue.Message) {
	t.Helper()
	require.NoError(t, s.Broker.Publish(s.ctx(t), msg), "publish to %s", msg.Subject)
}

// consume starts a consumer that is stopped when the test ends.
func (s *suite) consume(t *testing.T, cfg queue.ConsumerConfig, h queue.Handler) queue.Consumer {
	t.Helper()
	c, err := s.Broker.Consume(s.ctx(t), cfg, h)
	require.NoError(t, err, "consume %s as %s", cfg.Subject, cfg.Name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	})
	return c
}

// seen is a snapshot of one delivery.
type seen struct {
	Subject  string
	Data     string
	Header   map[string]string
	Attempt  int
	At       time.Time
	Consumer int
}

// recorder collects deliveries from handler goroutines, and errors that
// handlers met, for the test goroutine to check.
type recorder struct {
	mu   sync.Mutex
	list []seen
	errs []error
}

func (r *recorder) add(d queue.Delivery, consumer int) seen {
	h := d.Header()
	hc := make(map[string]string, len(h))
	for k, v := range h {
		hc[k] = v
	}
	sn := seen{
		Subject:  d.Subject(),
		Data:     string(d.Data()),
		Header:   hc,
		Attempt:  d.Attempt(),
		At:       time.Now(),
		Consumer: consumer,
	}
	if h == nil {
		sn.Header = nil
	}
	r.mu.Lock()
	r.list = append(r.list, sn)
	r.mu.Unlock()
	return sn
}

func (r *recorder) fail(err error) {
	if err == nil {
		return
	}
	r.mu.Lock()
	r.errs = append(r.errs, err)
	r.mu.Unlock()
}

func (r *recorder) all() []seen {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]seen(nil), r.list...)
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.list)
}

func (r *recorder) count(data string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.list {
		if s.Data == data {
			n++
		}
	}
	return n
}

func (r *recorder) noErrors(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, err := range r.errs {
		require.NoError(t, err, "in a handler")
	}
}

// waitLen waits until the recorder holds at least n deliveries.
func (r *recorder) waitLen(t *testing.T, n int, within time.Duration, msg string) {
	t.Helper()
	require.Eventually(t, func() bool { return r.len() >= n }, within, 10*time.Millisecond,
		"%s: want %d deliveries, have %d", msg, n, r.len())
}

// acker records and acknowledges every delivery.
func acker(rec *recorder, consumer int) queue.Handler {
	return func(ctx context.Context, d queue.Delivery) {
		rec.add(d, consumer)
		rec.fail(d.Ack(ctx))
	}
}

// deadLetters consumes the tenant's dead-letter subject for role.
func (s *suite) deadLetters(t *testing.T, from queue.Role) *recorder {
	rec := &recorder{}
	s.consume(t, queue.ConsumerConfig{
		Name:    "dlq-reader",
		Subject: s.Subjects.DeadLetter(s.Tenant, from),
		AckWait: s.dur(10 * time.Second),
	}, acker(rec, 0))
	return rec
}

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
	require.GreaterOrEqual(t, gap, ackWait-earlySlack, "redelivered before the ack wait")
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
		require.GreaterOrEqual(t, gap, delay-earlySlack, "redelivered before the nak delay")
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

func testReadHistory(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	all := s.Subjects.All(s.Tenant, queue.RoleJobEvents)
	read := func(subject string, opts queue.ReadOptions, limit int) ([]queue.StreamMessage, error) {
		var got []queue.StreamMessage
		err := s.Broker.Read(ctx, subject, opts, func(m queue.StreamMessage) bool {
			got = append(got, m)
			return limit <= 0 || len(got) < limit
		})
		return got, err
	}
	if !s.Capabilities.Read {
		_, err := read(all, queue.ReadOptions{FromSequence: 1}, 0)
		require.ErrorIs(t, err, errors.ErrUnsupported)
		return
	}

	// Nothing stored yet: Read returns at once.
	got, err := read(all, queue.ReadOptions{FromSequence: 1}, 0)
	require.NoError(t, err)
	require.Empty(t, got)

	want := []struct{ job, data string }{
		{"job-1", "queued"}, {"job-2", "queued"}, {"job-1", "running"}, {"job-1", "done"}, {"job-2", "failed"},
	}
	for _, w := range want {
		s.publish(t, queue.Message{Subject: s.Subjects.JobStatus(s.Tenant, w.job), Data: []byte(w.data), Header: map[string]string{queue.HeaderType: "outpost.test.v1.Status"}})
	}

	got, err = read(all, queue.ReadOptions{FromSequence: 1}, 0)
	require.NoError(t, err)
	require.Len(t, got, len(want))
	for i, w := range want {
		require.Equal(t, s.Subjects.JobStatus(s.Tenant, w.job), got[i].Subject)
		require.Equal(t, w.data, string(got[i].Data))
		require.Equal(t, "outpost.test.v1.Status", got[i].Header[queue.HeaderType])
		require.False(t, got[i].Time.IsZero())
		if i > 0 {
			require.Greater(t, got[i].Sequence, got[i-1].Sequence)
		}
	}

	job1, err := read(s.Subjects.JobStatus(s.Tenant, "job-1"), queue.ReadOptions{}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"queued", "running", "done"}, datas(job1))

	from, err := read(s.Subjects.JobStatus(s.Tenant, "job-1"), queue.ReadOptions{FromSequence: job1[1].Sequence}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"running", "done"}, datas(from))

	since, err := read(s.Subjects.JobStatus(s.Tenant, "job-1"), queue.ReadOptions{Since: job1[1].Time}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"running", "done"}, datas(since), "Since starts at the first message stored at or after it")

	onlyNew, err := read(all, queue.ReadOptions{OnlyNew: true}, 0)
	require.NoError(t, err)
	require.Empty(t, onlyNew, "OnlyNew without Follow has nothing to yield")

	// A filter with a wildcard in the middle: status events, not logs.
	s.publish(t, queue.Message{Subject: s.Subjects.JobLogs(s.Tenant, "job-1"), Data: []byte("log line")})
	status, err := read(s.Subjects.AllJobStatus(s.Tenant), queue.ReadOptions{FromSequence: 1}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"queued", "queued", "running", "done", "failed"}, datas(status))

	first, err := read(all, queue.ReadOptions{FromSequence: 1}, 1)
	require.NoError(t, err)
	require.Len(t, first, 1, "fn returning false stops the read")

	_, err = read(s.Subjects.All(s.Tenant, queue.RoleJobs), queue.ReadOptions{FromSequence: 1}, 0)
	require.ErrorIs(t, err, queue.ErrInvalidSubject, "work roles cannot be read")
}

func datas(ms []queue.StreamMessage) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, string(m.Data))
	}
	return out
}

func testReadFollow(t *testing.T, s *suite) {
	all := s.Subjects.All(s.Tenant, queue.RoleRunners)
	if !s.Capabilities.Read {
		err := s.Broker.Read(s.ctx(t), all, queue.ReadOptions{Follow: true}, func(queue.StreamMessage) bool { return true })
		require.ErrorIs(t, err, errors.ErrUnsupported)
		return
	}
	s.publish(t, queue.Message{Subject: s.Subjects.Runners(s.Tenant, "pool-f"), Data: []byte("hb-0")})

	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- s.Broker.Read(ctx, all, queue.ReadOptions{FromSequence: 1, Follow: true}, func(m queue.StreamMessage) bool {
			mu.Lock()
			got = append(got, string(m.Data))
			mu.Unlock()
			return true
		})
	}()
	n := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	require.Eventually(t, func() bool { return n() == 1 }, 10*time.Second, 10*time.Millisecond, "history before following")
	s.publish(t, queue.Message{Subject: s.Subjects.Runners(s.Tenant, "pool-f"), Data: []byte("hb-1")})
	s.publish(t, queue.Message{Subject: s.Subjects.Runners(s.Tenant, "pool-g"), Data: []byte("hb-2")})
	require.Eventually(t, func() bool { return n() == 3 }, 10*time.Second, 10*time.Millisecond, "new messages while following")

	// OnlyNew skips the history: a reader started now sees only what is
	// published after it started, never hb-0..hb-2.
	var newMu sync.Mutex
	var fresh []string
	go func() {
		_ = s.Broker.Read(ctx, all, queue.ReadOptions{OnlyNew: true, Follow: true}, func(m queue.StreamMessage) bool {
			newMu.Lock()
			fresh = append(fresh, string(m.Data))
			newMu.Unlock()
			return true
		})
	}()
	ping := 0
	require.Eventually(t, func() bool {
		ping++
		s.publish(t, queue.Message{Subject: s.Subjects.Runners(s.Tenant, "pool-f"), Data: []byte(fmt.Sprintf("ping-%d", ping))})
		newMu.Lock()
		defer newMu.Unlock()
		return len(fresh) > 0
	}, 10*time.Second, 100*time.Millisecond, "an OnlyNew reader never saw a new message")
	newMu.Lock()
	require.NotContains(t, fresh, "hb-0")
	require.NotContains(t, fresh, "hb-2")
	newMu.Unlock()
	require.Never(t, func() bool { return len(done) > 0 }, 200*time.Millisecond, 10*time.Millisecond, "a follow read returned on its own")
	cancel()
	var err error
	require.Eventually(t, func() bool {
		select {
		case err = <-done:
			return true
		default:
			return false
		}
	}, 10*time.Second, 10*time.Millisecond, "Read did not return after its context was cancelled")
	if err != nil {
		require.ErrorIs(t, err, context.Canceled)
	}
	mu.Lock()
	require.GreaterOrEqual(t, len(got), 3)
	require.Equal(t, []string{"hb-0", "hb-1", "hb-2"}, got[:3], "then the pings of the OnlyNew check")
	mu.Unlock()

	// A follow read also stops when fn says so.
	stopped := 0
	err = s.Broker.Read(s.ctx(t), all, queue.ReadOptions{FromSequence: 1, Follow: true}, func(queue.StreamMessage) bool {
		stopped++
		return stopped < 2
	})
	require.NoError(t, err)
	require.Equal(t, 2, stopped)
}
