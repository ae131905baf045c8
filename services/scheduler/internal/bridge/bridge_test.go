package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/testenv"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/metrics"
)

// fakeSource keeps the handler of each consumer by subject.
type fakeSource struct {
	mu       sync.Mutex
	handlers map[string]queue.Handler
	cfgs     []queue.ConsumerConfig
}

func (s *fakeSource) Consume(_ context.Context, cfg queue.ConsumerConfig, h queue.Handler) (queue.Consumer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers[cfg.Subject] = h
	s.cfgs = append(s.cfgs, cfg)
	return stopper{}, nil
}

type stopper struct{}

func (stopper) Stop(context.Context) error { return nil }

// fakeSink records what is copied, or fails with err.
type fakeSink struct {
	mu   sync.Mutex
	msgs []queue.Message
	err  error
}

func (s *fakeSink) Publish(_ context.Context, m queue.Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.msgs = append(s.msgs, m)
	return nil
}

func (s *fakeSink) copied() []queue.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]queue.Message(nil), s.msgs...)
}

// delivery is the shared in-memory delivery, with its settlement spelled
// as the tests compare it.
type delivery struct{ *testenv.Delivery }

// wait returns "ack", "nak" or "term: <reason>" once the delivery is
// settled, failing the test when it is not within 10 s.
func (d delivery) wait(t *testing.T) string {
	t.Helper()
	s, ok := d.WaitSettled(10 * time.Second)
	require.True(t, ok, "delivery not settled")
	if s.Op == testenv.OpTerm {
		return "term: " + s.Reason
	}
	return s.Op
}

func chunk(t *testing.T, subject string, attempt uint32, first uint64) *delivery {
	t.Helper()
	msg, err := events.Encode(subject, &jobsv1.LogChunk{
		Envelope: events.NewEnvelope("acme", attempt, "", ""), JobId: "j1", FirstSeq: first,
		Lines: []*jobsv1.LogLine{{Stream: "stdout", Text: fmt.Sprintf("line %d", first)}},
	}, "")
	require.NoError(t, err)
	return &delivery{testenv.NewDelivery(msg, 1)}
}

func start(t *testing.T, sink *fakeSink) (*fakeSource, *metrics.Metrics) {
	t.Helper()
	src := &fakeSource{handlers: map[string]queue.Handler{}}
	m := metrics.New(prometheus.NewRegistry())
	b := New(src, sink, Options{Subjects: queue.NewSubjects(""), Metrics: m, Logger: slog.New(slog.DiscardHandler)})
	stop, err := b.Start(context.Background(), "acme")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, stop(context.Background())) })
	return src, m
}

func TestBridgeStartsConsumers(t *testing.T) {
	src, _ := start(t, &fakeSink{})
	require.Len(t, src.cfgs, 2)
	require.Equal(t, queue.ConsumerConfig{Name: ConsumerLogs, Subject: "outpost.acme.job-events.*.logs", AckWait: 30 * time.Second, MaxDeliveries: 20, Concurrency: 64}, src.cfgs[0])
	require.Equal(t, "outpost.acme.runners.>", src.cfgs[1].Subject)
}

// The chunks of one receive reach their handlers in any order; they are
// copied in the job's order, and settled after the copy.
func TestBridgeCopiesInOrder(t *testing.T) {
	sink := &fakeSink{}
	src, m := start(t, sink)
	h := src.handlers["outpost.acme.job-events.*.logs"]
	subject := queue.NewSubjects("").JobLogs("acme", "j1")
	ds := []*delivery{chunk(t, subject, 2, 1), chunk(t, subject, 1, 7), chunk(t, subject, 1, 1), chunk(t, subject, 1, 4)}
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Go(func() { h(context.Background(), d) })
	}
	wg.Wait()
	for _, d := range ds {
		require.Equal(t, "ack", d.wait(t))
	}
	var got []string
	for _, msg := range sink.copied() {
		c, err := events.DecodeAs[*jobsv1.LogChunk](msg.Header, msg.Data)
		require.NoError(t, err)
		got = append(got, fmt.Sprintf("%d/%d", c.GetEnvelope().GetAttempt(), c.GetFirstSeq()))
		require.Equal(t, subject, msg.Subject)
		require.Regexp(t, "^bridge-[0-9a-f]{32}$", msg.DedupeID)
	}
	require.Equal(t, []string{"1/1", "1/4", "1/7", "2/1"}, got)
	require.Equal(t, 4.0, testutil.ToFloat64(m.Bridged.WithLabelValues("job-events")))
}

func TestBridgeSettlesFailures(t *testing.T) {
	subject := queue.NewSubjects("").JobLogs("acme", "j1")
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"transient: delivered again", errors.New("nats: timeout"), "nak"},
		{"unknown tenant: delivered again", queue.ErrUnknownTenant, "nak"},
		{"never copyable: dead-lettered", fmt.Errorf("natsjs: %w", queue.ErrPayloadTooLarge), "term: cannot copy into JetStream: natsjs: queue: payload too large"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, _ := start(t, &fakeSink{err: tc.err})
			d := chunk(t, subject, 1, 1)
			src.handlers["outpost.acme.job-events.*.logs"](context.Background(), d)
			require.Equal(t, tc.want, d.wait(t))
		})
	}
}
