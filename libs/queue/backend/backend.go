package backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/queue/sqs"
)

// ErrNotReady is wrapped by Backend.Ready while a connection is down.
var ErrNotReady = errors.New("queue backend not ready")

// Options are what Open needs besides Config.
type Options struct {
	// Stack is the subject prefix of every backend.
	Stack string
	// NATS configures the JetStream connection: the broker itself with
	// KindNATS, and the history store with KindSQS when History is set.
	// Its Stack and Logger are taken from these Options.
	NATS natsjs.Config
	// History keeps a JetStream connection beside SQS: Backend.Broker
	// then publishes and consumes on SQS but reads (and provisions) on
	// JetStream too. The scheduler sets it: its records and the history
	// of logs and heartbeats stay in JetStream.
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

// Backend is an open backend.
type Backend struct {
	// Kind is the configured backend.
	Kind Kind
	// Broker is what the service publishes to, consumes from, reads from
	// and provisions: the JetStream connection with KindNATS; with KindSQS
	// the SQS broker, or, with Options.History, a broker that publishes
	// and consumes on SQS, reads on JetStream and provisions tenants on
	// both.
	Broker queue.Broker
	// NATS is the JetStream connection (KindNATS, or KindSQS with
	// History), nil otherwise. It also opens KV stores.
	NATS *natsjs.Conn
	// SQS is the SQS broker with KindSQS, nil otherwise: EnsureQueues and
	// request counts.
	SQS *sqs.Broker
}

// Open connects the backend cfg names and waits until it answers, or ctx
// is done. cfg must be valid (Validate).
func Open(ctx context.Context, cfg Config, opts Options) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &Backend{Kind: cfg.Kind}
	if cfg.Kind == KindNATS || opts.History {
		nc := opts.NATS
		nc.Stack, nc.Logger = opts.Stack, opts.Logger
		conn, err := natsjs.Connect(ctx, nc)
		if err != nil {
			return nil, fmt.Errorf("open queue backend: %w", err)
		}
		b.NATS, b.Broker = conn, conn
	}
	if cfg.Kind == KindNATS {
		return b, nil
	}
	sb, err := sqs.Connect(ctx, SQSConfig(cfg.SQS, opts))
	if err != nil {
		if b.NATS != nil {
			_ = b.NATS.Close()
		}
		return nil, fmt.Errorf("open queue backend: %w", err)
	}
	b.SQS, b.Broker = sb, sb
	if b.NATS != nil {
		b.Broker = &split{work: sb, history: b.NATS}
	}
	return b, nil
}

// SQSConfig maps the SQS section onto the sqs package's Config.
func SQSConfig(s SQS, opts Options) sqs.Config {
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
		Stack:             opts.Stack,
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
	if b.NATS != nil && !b.NATS.Ready() {
		return fmt.Errorf("%w: NATS: %s", ErrNotReady, b.NATS.Status())
	}
	if b.SQS != nil && !b.SQS.Ready() {
		return fmt.Errorf("%w: SQS did not answer the last request", ErrNotReady)
	}
	return nil
}

// Close closes every connection; consumers still running are stopped.
func (b *Backend) Close() error {
	var errs []error
	if b.SQS != nil {
		errs = append(errs, b.SQS.Close())
	}
	if b.NATS != nil {
		errs = append(errs, b.NATS.Close())
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

// TLS is the broker connection's TLS settings (CA, client certificate and
// key), as services configure them.
type TLS = natsjs.TLS

// RedactURL returns the broker URL (or comma-separated URLs) without user
// information, for logs.
func RedactURL(u string) string { return natsjs.RedactURL(u) }
