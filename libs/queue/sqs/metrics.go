package sqs

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus"
)

// RequestCounts is a snapshot of the SQS requests a Broker made, by
// operation ("SendMessageBatch", "ReceiveMessage", ...). Every HTTP attempt
// counts, retries included: it is what AWS bills.
type RequestCounts map[string]uint64

// Total is the number of requests over every operation.
func (rc RequestCounts) Total() uint64 {
	var n uint64
	for _, v := range rc {
		n += v
	}
	return n
}

// Sub returns rc minus an earlier snapshot, for the requests made between
// the two.
func (rc RequestCounts) Sub(earlier RequestCounts) RequestCounts {
	out := make(RequestCounts, len(rc))
	for k, v := range rc {
		if d := v - earlier[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// Operations lists the operations with a count, sorted.
func (rc RequestCounts) Operations() []string {
	ops := make([]string, 0, len(rc))
	for k := range rc {
		ops = append(ops, k)
	}
	sort.Strings(ops)
	return ops
}

// metrics counts requests per operation, in the Broker for Requests and,
// when a registerer is configured, as Prometheus counters.
type metrics struct {
	mu       sync.Mutex
	requests map[string]*atomic.Uint64
	entries  map[string]*atomic.Uint64

	promRequests *prometheus.CounterVec
	promEntries  *prometheus.CounterVec
	promDropped  prometheus.Counter

	// ready is false after a request failed without any answer from SQS
	// (network, DNS, TLS) and true again after the next answer.
	ready atomic.Bool
	// alive is false after the liveness probe went unanswered
	// livenessFailures times in a row (a hung endpoint fails no request
	// of its own) and true again after any answer from SQS: a request
	// answered after an outage makes the broker ready at once, not at
	// the next probe.
	alive atomic.Bool
}

func newMetrics(reg prometheus.Registerer, stack string) *metrics {
	m := &metrics{requests: map[string]*atomic.Uint64{}, entries: map[string]*atomic.Uint64{}}
	m.ready.Store(true)
	if reg == nil {
		return m
	}
	labels := prometheus.Labels{"stack": stack}
	m.promRequests = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "outpost_sqs_requests_total",
		Help:        "SQS API requests made (every attempt, retries included), by operation.",
		ConstLabels: labels,
	}, []string{"operation"}))
	m.promEntries = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name:        "outpost_sqs_messages_total",
		Help:        "Messages carried by SQS requests (sent, received, deleted, visibility changed), by operation.",
		ConstLabels: labels,
	}, []string{"operation"}))
	m.promDropped = register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name:        "outpost_sqs_duplicates_dropped_total",
		Help:        "Messages dropped as duplicates of a DedupeID seen within the window (standard queues).",
		ConstLabels: labels,
	}))
	return m
}

// register registers c, or returns the collector already registered under
// the same description (several brokers in one process).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

func (m *metrics) counter(set map[string]*atomic.Uint64, op string) *atomic.Uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := set[op]
	if !ok {
		c = &atomic.Uint64{}
		set[op] = c
	}
	return c
}

func (m *metrics) request(op string) {
	m.counter(m.requests, op).Add(1)
	if m.promRequests != nil {
		m.promRequests.WithLabelValues(op).Inc()
	}
}

// messages counts n messages carried by one request of op.
func (m *metrics) messages(op string, n int) {
	if n <= 0 {
		return
	}
	m.counter(m.entries, op).Add(uint64(n))
	if m.promEntries != nil {
		m.promEntries.WithLabelValues(op).Add(float64(n))
	}
}

func (m *metrics) dropped() {
	if m.promDropped != nil {
		m.promDropped.Inc()
	}
}

func snapshot(mu *sync.Mutex, set map[string]*atomic.Uint64) RequestCounts {
	mu.Lock()
	defer mu.Unlock()
	out := make(RequestCounts, len(set))
	for k, v := range set {
		out[k] = v.Load()
	}
	return out
}

// countRequests is an SDK middleware inserted after the retry middleware,
// so it sees every attempt.
func (m *metrics) countRequests(stack *middleware.Stack) error {
	mw := middleware.FinalizeMiddlewareFunc("OutpostCountRequests", func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		m.request(awsmiddleware.GetOperationName(ctx))
		out, md, err := next.HandleFinalize(ctx, in)
		var apiErr smithy.APIError
		var respErr *smithyhttp.ResponseError
		var sendErr *smithyhttp.RequestSendError
		switch {
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			// Our own give-up says nothing about SQS.
		case errors.As(err, &sendErr):
			// No answer: the SDK wraps it in a ResponseError (status 0)
			// too, so this case must come before that one.
			m.ready.Store(false)
		case err == nil, errors.As(err, &apiErr), errors.As(err, &respErr):
			m.ready.Store(true)
			m.alive.Store(true)
		default:
			m.ready.Store(false)
		}
		return out, md, err
	})
	if err := stack.Finalize.Insert(mw, "Retry", middleware.After); err != nil {
		return stack.Finalize.Add(mw, middleware.After)
	}
	return nil
}
