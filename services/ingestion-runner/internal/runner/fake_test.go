package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/testenv"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// fakeBroker hands deliveries to the runner's handler directly and records
// what the runner publishes. Control messages are fed through control to
// the runner's Read, or, when noHistory is set (like SQS), to the handler
// of its control consumer.
type fakeBroker struct {
	mu        sync.Mutex
	published []queue.Message
	handler   queue.Handler
	cfg       queue.ConsumerConfig
	stopped   bool
	handlers  sync.WaitGroup
	control   chan queue.StreamMessage
	reading   chan struct{} // closed once the runner follows its control subject
	readOnce  sync.Once

	noHistory   bool
	readSubject string
	readOpts    queue.ReadOptions
	controlCfg  queue.ConsumerConfig
	controlH    queue.Handler
}

func newFakeBroker() *fakeBroker {
	return &fakeBroker{control: make(chan queue.StreamMessage, 16), reading: make(chan struct{})}
}

// jobsSubject is what the runner of acme's default pool consumes.
const jobsSubject = "outpost.acme.jobs.default"

func (b *fakeBroker) Publish(_ context.Context, m queue.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.published = append(b.published, m)
	return nil
}

func (b *fakeBroker) Consume(_ context.Context, cfg queue.ConsumerConfig, h queue.Handler) (queue.Consumer, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cfg.Subject != jobsSubject {
		b.controlCfg, b.controlH = cfg, h
		b.readOnce.Do(func() { close(b.reading) })
		return fakeConsumer{b}, nil
	}
	b.cfg, b.handler = cfg, h
	return fakeConsumer{b}, nil
}

func (b *fakeBroker) Read(ctx context.Context, subject string, opts queue.ReadOptions, fn func(queue.StreamMessage) bool) error {
	b.mu.Lock()
	b.readSubject, b.readOpts = subject, opts
	b.mu.Unlock()
	if b.noHistory {
		return fmt.Errorf("fake: no history: %w", errors.ErrUnsupported)
	}
	b.readOnce.Do(func() { close(b.reading) })
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-b.control:
			if !fn(m) {
				return nil
			}
		}
	}
}

type fakeConsumer struct{ b *fakeBroker }

func (c fakeConsumer) Stop(ctx context.Context) error {
	c.b.mu.Lock()
	c.b.stopped = true
	c.b.mu.Unlock()
	done := make(chan struct{})
	go func() { c.b.handlers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deliver runs the handler on a new delivery in its own goroutine.
func (b *fakeBroker) deliver(t *testing.T, header map[string]string, data []byte, attempt int) *fakeDelivery {
	t.Helper()
	b.mu.Lock()
	h := b.handler
	b.mu.Unlock()
	require.NotNil(t, h, "runner is not consuming")
	d := &fakeDelivery{testenv.NewDelivery(queue.Message{Subject: jobsSubject, Header: header, Data: data}, attempt)}
	b.handlers.Add(1)
	go func() {
		defer b.handlers.Done()
		h(context.Background(), d)
	}()
	return d
}

// deliverAs runs the handler on the delivery wrap makes of a new delivery
// of job (one whose settles fail, say), in its own goroutine.
func (b *fakeBroker) deliverAs(t *testing.T, job *jobsv1.JobDispatched, attempt int, wrap func(*fakeDelivery) queue.Delivery) *fakeDelivery {
	t.Helper()
	msg, err := events.Encode(jobsSubject, job, "")
	require.NoError(t, err)
	b.mu.Lock()
	h := b.handler
	b.mu.Unlock()
	require.NotNil(t, h, "runner is not consuming")
	d := &fakeDelivery{testenv.NewDelivery(msg, attempt)}
	b.handlers.Add(1)
	go func() {
		defer b.handlers.Done()
		h(context.Background(), wrap(d))
	}()
	return d
}

func (b *fakeBroker) deliverJob(t *testing.T, job *jobsv1.JobDispatched, attempt int) *fakeDelivery {
	t.Helper()
	msg, err := events.Encode(jobsSubject, job, "")
	require.NoError(t, err)
	return b.deliver(t, msg.Header, msg.Data, attempt)
}

// sendControl sends m to runner r1's control subject. With noHistory it
// returns the delivery the control consumer was given, else nil.
func (b *fakeBroker) sendControl(t *testing.T, m proto.Message) *fakeDelivery {
	t.Helper()
	msg, err := events.Encode("outpost.acme.control.default.r1", m, "")
	require.NoError(t, err)
	if !b.noHistory {
		b.control <- queue.StreamMessage{Subject: msg.Subject, Data: msg.Data, Header: msg.Header, Sequence: 1, Time: time.Now()}
		return nil
	}
	b.mu.Lock()
	h := b.controlH
	b.mu.Unlock()
	require.NotNil(t, h, "runner is not consuming its control queue")
	d := &fakeDelivery{testenv.NewDelivery(msg, 1)}
	go h(context.Background(), d)
	return d
}

// statuses returns the JobStatus events published for jobID, in order.
func (b *fakeBroker) statuses(t *testing.T, jobID string) []*jobsv1.JobStatus {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*jobsv1.JobStatus
	for _, m := range b.published {
		if m.Subject != "outpost.acme.job-events."+jobID+".status" {
			continue
		}
		st, err := events.DecodeAs[*jobsv1.JobStatus](m.Header, m.Data)
		require.NoError(t, err)
		require.Equal(t, st.GetEnvelope().GetIdempotencyKey(), m.DedupeID)
		out = append(out, st)
	}
	return out
}

func (b *fakeBroker) states(t *testing.T, jobID string) []jobsv1.JobState {
	var out []jobsv1.JobState
	for _, st := range b.statuses(t, jobID) {
		out = append(out, st.GetState())
	}
	return out
}

// logLines returns the log lines published for jobID: those of its log
// subject and those its statuses carry, in order.
func (b *fakeBroker) logLines(t *testing.T, jobID string) []string {
	t.Helper()
	subject, inline := b.logLinesBy(t, jobID)
	return append(subject, inline...)
}

// logLinesBy returns the log lines of jobID published on its log subject,
// and those its statuses carry (JobStatus.logs).
func (b *fakeBroker) logLinesBy(t *testing.T, jobID string) (subject, inline []string) {
	t.Helper()
	for _, st := range b.statuses(t, jobID) {
		for _, l := range st.GetLogs().GetLines() {
			inline = append(inline, l.GetText())
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.published {
		if m.Subject != "outpost.acme.job-events."+jobID+".logs" {
			continue
		}
		c, err := events.DecodeAs[*jobsv1.LogChunk](m.Header, m.Data)
		require.NoError(t, err)
		for _, l := range c.GetLines() {
			subject = append(subject, l.GetText())
		}
	}
	return subject, inline
}

func (b *fakeBroker) heartbeats(t *testing.T) []*jobsv1.RunnerHeartbeat {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []*jobsv1.RunnerHeartbeat
	for _, m := range b.published {
		if !strings.HasSuffix(m.Subject, ".runners.default") {
			continue
		}
		hb, err := events.DecodeAs[*jobsv1.RunnerHeartbeat](m.Header, m.Data)
		require.NoError(t, err)
		out = append(out, hb)
	}
	return out
}

// fakeDelivery is the shared in-memory delivery with the runner tests'
// ways of reading it.
type fakeDelivery struct{ *testenv.Delivery }

// supersede makes every later InProgress and settlement fail with
// queue.ErrSuperseded, as the queue does past the ack wait.
func (d *fakeDelivery) supersede() { d.Supersede() }

// settledOp is how the delivery was settled so far ("" when it was not).
func (d *fakeDelivery) settledOp() string { return d.Settlement().Op }

// wait returns how the delivery was settled, failing the test when it is
// not within 10 s.
func (d *fakeDelivery) wait(t *testing.T) (op string, delay time.Duration, reason string) {
	t.Helper()
	s, ok := d.WaitSettled(10 * time.Second)
	if !ok {
		t.Fatal("delivery not settled")
	}
	return s.Op, s.Delay, s.Reason
}

func (d *fakeDelivery) progressCount() int { return d.InProgressCount() }
