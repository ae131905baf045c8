// Package bridge copies the events that SQS keeps no history of, job logs
// and runner heartbeats, into JetStream under the same subjects. With the
// SQS backend the runners publish them to SQS; the logs API and runner
// presence read them back from JetStream with Broker.Read, unchanged.
//
// A copy is published before its SQS message is deleted, with a
// deduplication id derived from its bytes, so a message delivered again
// (the scheduler died in between) is stored once within JetStream's
// duplicate window.
package bridge

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/metrics"
)

// Durable consumer names on SQS, shared by every replica.
const (
	ConsumerLogs    = "scheduler-bridge-logs"
	ConsumerRunners = "scheduler-bridge-runners"
)

const (
	// gather is how long a batch waits after its first message for the
	// others of the same receive: their handlers start together, and a job's
	// log chunks put in one batch are copied in their order (FIFO queues
	// hand out more of a job's chunks only once these are deleted).
	gather = 5 * time.Millisecond
	// maxBatch bounds the messages copied together.
	maxBatch = 64
	// workers bounds how many subjects of a batch are copied at once; the
	// chunks of one subject are copied one after the other.
	workers = 8
)

// Source is where the events are consumed (the SQS broker).
type Source = queue.Subscriber

// Sink is where they are copied (the JetStream connection).
type Sink = queue.Publisher

// Options configure a Bridge.
type Options struct {
	Subjects queue.Subjects
	// AckWait of the bridge's consumers; 0 means 30s.
	AckWait time.Duration
	// Concurrency of each consumer: how many messages are received and
	// held at once; 0 means 64.
	Concurrency int
	// MaxDeliveries bounds the copies tried of one message before it is
	// dead-lettered; 0 means 20 (about seven minutes of JetStream outage,
	// with up to 30s between tries).
	MaxDeliveries int
	Metrics       *metrics.Metrics
	Logger        *slog.Logger
}

// Bridge copies a tenant's logs and heartbeats from Source to Sink.
type Bridge struct {
	from Source
	to   Sink
	opts Options
	log  *slog.Logger
}

// New returns a bridge; Start runs it for a tenant.
func New(from Source, to Sink, opts Options) *Bridge {
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = 20
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 64
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Bridge{from: from, to: to, opts: opts, log: opts.Logger}
}

// Start consumes the tenant's log queue and runners queues (a wildcard
// consumer, which finds the queues of new pools within the SQS backend's
// discovery interval) until ctx is done or the returned function is called.
func (b *Bridge) Start(ctx context.Context, tenant string) (func(context.Context) error, error) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		consumers []queue.Consumer
		wg        sync.WaitGroup
	)
	stop := func(sctx context.Context) error {
		err := queue.StopAll(sctx, consumers...)
		cancel()
		wg.Wait()
		return err
	}
	s := b.opts.Subjects
	for _, spec := range []struct {
		name, subject string
		role          queue.Role
	}{
		{ConsumerLogs, s.AllJobLogs(tenant), queue.RoleJobEvents},
		{ConsumerRunners, s.All(tenant, queue.RoleRunners), queue.RoleRunners},
	} {
		in := make(chan *item)
		wg.Go(func() { b.run(ctx, spec.role, in) })
		c, err := b.from.Consume(ctx, queue.ConsumerConfig{
			Name: spec.name, Subject: spec.subject, AckWait: b.opts.AckWait, MaxDeliveries: b.opts.MaxDeliveries, Concurrency: b.opts.Concurrency,
		}, b.handler(in))
		if err != nil {
			_ = stop(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("bridge %s: %w", spec.subject, err)
		}
		consumers = append(consumers, c)
	}
	return stop, nil
}

// item is a delivery waiting for its copy.
type item struct {
	d       queue.Delivery
	attempt uint32
	seq     uint64
	done    chan error
}

// handler hands each delivery to the copy loop and settles it with the
// result: concurrent handlers settle together, which batches the deletes.
func (b *Bridge) handler(in chan<- *item) queue.Handler {
	return func(ctx context.Context, d queue.Delivery) {
		it := &item{d: d, done: make(chan error, 1)}
		it.attempt, it.seq = order(d)
		select {
		case in <- it:
		case <-ctx.Done():
			return // unsettled: delivered again after the ack wait
		}
		var err error
		select {
		case err = <-it.done:
		case <-ctx.Done():
			return
		}
		sctx := context.WithoutCancel(ctx)
		switch {
		case err == nil:
			err = d.Ack(sctx)
		case errors.Is(err, queue.ErrInvalidSubject), errors.Is(err, queue.ErrPayloadTooLarge):
			// It can never be copied: take it out of the queue.
			err = d.Term(sctx, "cannot copy into JetStream: "+err.Error())
		default:
			err = d.Nak(sctx, min(100*time.Millisecond<<min(d.Attempt(), 8), 30*time.Second))
		}
		if err != nil && !errors.Is(err, queue.ErrAlreadyAcked) {
			b.log.Warn("bridged message not settled", "subject", d.Subject(), "error", err)
		}
	}
}

// order is the position of a log chunk among its job's chunks: attempt,
// then first line. Other messages keep the order they came in.
func order(d queue.Delivery) (uint32, uint64) {
	c, err := events.DecodeAs[*jobsv1.LogChunk](d.Header(), d.Data())
	if err != nil {
		return 0, 0
	}
	return c.GetEnvelope().GetAttempt(), c.GetFirstSeq()
}

// run gathers deliveries into batches and copies them.
func (b *Bridge) run(ctx context.Context, role queue.Role, in <-chan *item) {
	for {
		var batch []*item
		select {
		case <-ctx.Done():
			return
		case it := <-in:
			batch = append(batch, it)
		}
		timer := time.NewTimer(gather)
	fill:
		for len(batch) < maxBatch {
			select {
			case it := <-in:
				batch = append(batch, it)
			case <-timer.C:
				break fill
			case <-ctx.Done():
				break fill
			}
		}
		timer.Stop()
		b.copyBatch(ctx, role, batch)
	}
}

// copyBatch copies a batch, subject by subject, each subject's messages in
// order, and reports each result to its handler.
func (b *Bridge) copyBatch(ctx context.Context, role queue.Role, batch []*item) {
	bySubject := map[string][]*item{}
	var subjects []string
	for _, it := range batch {
		s := it.d.Subject()
		if _, ok := bySubject[s]; !ok {
			subjects = append(subjects, s)
		}
		bySubject[s] = append(bySubject[s], it)
	}
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	for _, s := range subjects {
		items := bySubject[s]
		slices.SortStableFunc(items, func(a, b *item) int {
			return cmp.Or(cmp.Compare(a.attempt, b.attempt), cmp.Compare(a.seq, b.seq))
		})
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			for _, it := range items {
				err := b.copyOne(ctx, it.d)
				if err == nil && b.opts.Metrics != nil {
					b.opts.Metrics.Bridged.WithLabelValues(string(role)).Inc()
				}
				if err != nil && ctx.Err() == nil {
					b.log.Warn("event not copied into JetStream; will retry", "subject", it.d.Subject(), "attempt", it.d.Attempt(), "error", err)
				}
				it.done <- err
			}
		})
	}
	wg.Wait()
}

func (b *Bridge) copyOne(ctx context.Context, d queue.Delivery) error {
	sum := sha256.Sum256(d.Data())
	return b.to.Publish(ctx, queue.Message{
		Subject:  d.Subject(),
		Data:     d.Data(),
		Header:   d.Header(),
		DedupeID: "bridge-" + hex.EncodeToString(sum[:16]),
	})
}
