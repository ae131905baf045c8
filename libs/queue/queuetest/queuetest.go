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
	"fmt"
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
	// EarlySlack is how much earlier than due a redelivery may be seen by
	// the handler, because the first delivery reached it late: the
	// latency from the backend starting its timer to the handler seeing
	// the message. Zero means DefaultEarlySlack.
	EarlySlack time.Duration
}

// DefaultTimingTolerance is used when Capabilities.TimingTolerance is zero.
const DefaultTimingTolerance = 2 * time.Second

// DefaultEarlySlack is used when Capabilities.EarlySlack is zero.
const DefaultEarlySlack = 150 * time.Millisecond

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
		{"AckNoWait", testAckNoWait},
		{"EnsureTenantIdempotent", testEnsureTenantIdempotent},
		{"Ordering", testOrdering},
		{"RedeliveryAfterAckWait", testRedeliveryAfterAckWait},
		{"InProgressExtendsAckWait", testInProgress},
		{"SupersededSettle", testSupersededSettle},
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
				s := &suite{Harness: h, tol: h.Capabilities.TimingTolerance, early: h.Capabilities.EarlySlack}
				if s.tol <= 0 {
					s.tol = DefaultTimingTolerance
				}
				if s.early <= 0 {
					s.early = DefaultEarlySlack
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
	tol   time.Duration // Capabilities.TimingTolerance or its default
	early time.Duration // Capabilities.EarlySlack or its default
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
