package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/queue/sqs"
)

// ErrNotReady is wrapped by Backend.Ready while a connection is down.
var ErrNotReady = errors.New("queue backend not ready")

// Options are what Open needs besides Settings.
type Options struct {
	// History keeps a JetStream connection beside SQS: Backend.Broker
	// then publishes and consumes on SQS but reads (and provisions) on
	// JetStream too, and Backend.JetStream is that connection. The
	// scheduler sets it: its records and the history of logs and
	// heartbeats stay in JetStream.
	History bool
	// JobsMaxDeliveries, when positive, is the jobs queues' max deliveries
	// that a zero Config.SQS.JobsMaxDeliveries stands for: the runner
	// passes its max_deliveries.
	JobsMaxDeliveries int
	// Registerer, when set, gets the backend's Prometheus metrics (the
	// outpost_sqs_* counters).
	Registerer prometheus.Registerer
	// Logger receives the backend's warnings; default slog.Default().
	Logger *slog.Logger
}

// JetStream is what the JetStream connection offers: the queue, its KV
// stores, the last message and purge of a subject, the messages a work
// subject holds and the dead letters.
type JetStream interface {
	queue.Broker
	queue.LastReader
	queue.Purger
	queue.WorkLister
	queue.DeadLetterStore
	kv.Opener
}

// Queues is what the SQS broker offers: the queue, and the queues of a
// subject made on demand.
type Queues interface {
	queue.Broker
	queue.QueueEnsurer
}

// Backend is an open backend. Services take the roles they need from it.
type Backend struct {
	// Kind is the configured backend.
	Kind Kind
	// Broker is what the service publishes to, consumes from, reads from
	// and provisions: the JetStream connection with KindNATS; with KindSQS
	// the SQS broker, or, with Options.History, a broker that publishes
	// and consumes on SQS, reads on JetStream and provisions tenants on
	// both.
	Broker queue.Broker

	nats *natsjs.Conn
	sqs  *sqs.Broker
}

// JetStream returns the JetStream connection (KindNATS, or KindSQS with
// Options.History), nil otherwise. It also opens KV stores.
func (b *Backend) JetStream() JetStream {
	if b.nats == nil {
		return nil
	}
	return b.nats
}

// Queues returns the SQS broker with KindSQS, nil otherwise.
func (b *Backend) Queues() Queues {
	if b.sqs == nil {
		return nil
	}
	return b.sqs
}

// Open connects the backend s names and waits until it answers, or ctx
// is done. The queue section of s must be valid (Config.Validate); the
// broker section is checked by natsjs as it connects.
func Open(ctx context.Context, s Settings, opts Options) (*Backend, error) {
	if err := s.Queue.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &Backend{Kind: s.Queue.Kind}
	if s.Queue.Kind == KindNATS || opts.History {
		conn, err := natsjs.Connect(ctx, NATSConfig(s.Broker, opts.Logger))
		if err != nil {
			return nil, fmt.Errorf("open queue backend: %w", err)
		}
		b.nats, b.Broker = conn, conn
	}
	if s.Queue.Kind == KindNATS {
		return b, nil
	}
	sb, err := sqs.Connect(ctx, SQSConfig(s.Queue.SQS, s.Broker.Stack, opts))
	if err != nil {
		if b.nats != nil {
			_ = b.nats.Close()
		}
		return nil, fmt.Errorf("open queue backend: %w", err)
	}
	b.sqs, b.Broker = sb, sb
	if b.nats != nil {
		b.Broker = &split{work: sb, history: b.nats}
	}
	return b, nil
}

// NATSConfig maps the broker section onto the natsjs package's Config.
func NATSConfig(br Broker, log *slog.Logger) natsjs.Config {
	return natsjs.Config{
		URL:         br.URL,
		Stack:       br.Stack,
		Layout:      br.Layout,
		Replicas:    br.Replicas,
		Name:        br.Name,
		Credentials: br.Credentials,
		TLS:         br.TLS,
		Logger:      log,
	}
}

// SQSConfig maps the SQS section onto the sqs package's Config.
func SQSConfig(s SQS, stack string, opts Options) sqs.Config {
	linger := s.BatchLinger
	if linger == 0 {
		linger = -1 // sqs.Config: negative is no wait, zero the default
	}
	jobs := s.JobsMaxDeliveries
	if jobs == 0 {
		jobs = opts.JobsMaxDeliveries
	}
	return sqs.Config{
		Region:            s.Region,
		Endpoint:          s.Endpoint,
		Stack:             stack,
		QueuePrefix:       s.QueuePrefix,
		QueueType:         sqs.QueueType(s.QueueType),
		VisibilityTimeout: s.VisibilityTimeout,
		WaitTime:          s.WaitTime,
		BatchLinger:       linger,
		DiscoveryInterval: s.DiscoveryInterval,
		JobsMaxDeliveries: jobs,
		Registerer:        opts.Registerer,
		Logger:            opts.Logger,
	}
}

// Ready reports nil while every connection works, for readiness probes.
func (b *Backend) Ready() error {
	if b.nats != nil && !b.nats.Ready() {
		return fmt.Errorf("%w: NATS: %s", ErrNotReady, b.nats.Status())
	}
	if b.sqs != nil && !b.sqs.Ready() {
		return fmt.Errorf("%w: SQS did not answer the last request", ErrNotReady)
	}
	return nil
}

// Close closes every connection; consumers still running are stopped.
func (b *Backend) Close() error {
	var errs []error
	if b.sqs != nil {
		errs = append(errs, b.sqs.Close())
	}
	if b.nats != nil {
		errs = append(errs, b.nats.Close())
	}
	return errors.Join(errs...)
}

// split publishes and consumes on one broker (SQS) and reads on another
// (JetStream), which keeps what SQS cannot: the history of the event
// subjects that something copies there (the scheduler's bridge).
type split struct {
	work    queue.Broker
	history queue.Broker
}

var _ queue.Broker = (*split)(nil)

// EnsureTenant provisions the tenant on both: the streams that hold the
// copied history, then the queues.
func (s *split) EnsureTenant(ctx context.Context, tenant string, limits queue.TenantLimits) error {
	if err := s.history.EnsureTenant(ctx, tenant, limits); err != nil {
		return err
	}
	return s.work.EnsureTenant(ctx, tenant, limits)
}

// DedupeWindow implements queue.Deduplicator for what is published: the
// work broker's window (0 when it has none).
func (s *split) DedupeWindow() time.Duration {
	if d, ok := s.work.(queue.Deduplicator); ok {
		return d.DedupeWindow()
	}
	return 0
}

func (s *split) Publish(ctx context.Context, msg queue.Message) error {
	return s.work.Publish(ctx, msg)
}

func (s *split) Consume(ctx context.Context, cfg queue.ConsumerConfig, h queue.Handler) (queue.Consumer, error) {
	return s.work.Consume(ctx, cfg, h)
}

func (s *split) Read(ctx context.Context, subject string, opts queue.ReadOptions, fn func(queue.StreamMessage) bool) error {
	return s.history.Read(ctx, subject, opts, fn)
}

func (s *split) Close() error {
	return errors.Join(s.work.Close(), s.history.Close())
}
