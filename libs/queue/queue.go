// Package queue is Outpost's one abstraction over its message transports.
//
// Services publish protobuf events to subjects and consume them from durable
// queues with explicit acknowledgement. Every backend (NATS JetStream in
// natsjs, AWS SQS in sqs) implements Broker and passes the conformance suite
// in queuetest, which states the guarantees each gives; package backend
// picks one from a service's configuration.
//
// Subjects are dot-separated and always start with the stack prefix and the
// tenant: "<stack>.<tenant>.<role>[.<key>]". Subjects builds them; backends
// map them onto streams or queues.
package queue

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Well-known header names carried with every message.
const (
	// HeaderType names the protobuf message type of the payload, e.g.
	// "outpost.jobs.v1.JobStatus".
	HeaderType = "Outpost-Type"
	// HeaderDeadLetterReason is set on a dead-lettered message: why it was
	// taken out of its queue.
	HeaderDeadLetterReason = "Outpost-Dlq-Reason"
	// HeaderDeadLetterSubject is set on a dead-lettered message: the subject
	// it was first published to.
	HeaderDeadLetterSubject = "Outpost-Dlq-Subject"
	// HeaderDeadLetterAttempts is set on a dead-lettered message: how many
	// times it had been handed to a handler, in decimal. For Term it is the
	// Attempt of the delivery that was terminated; for a message that ran
	// out of deliveries it is the number of deliveries handled (normally
	// ConsumerConfig.MaxDeliveries).
	HeaderDeadLetterAttempts = "Outpost-Dlq-Attempts"
)

// ErrClosed is returned by operations on a broker or consumer that was closed.
var ErrClosed = errors.New("queue: closed")

// ErrUnknownTenant is returned when a subject names a tenant whose queues have
// not been provisioned with EnsureTenant.
var ErrUnknownTenant = errors.New("queue: unknown tenant")

// ErrInvalidSubject is returned for a subject that does not follow
// "<stack>.<tenant>.<role>[.<key>]" or names an unknown role.
var ErrInvalidSubject = errors.New("queue: invalid subject")

// ErrPayloadTooLarge is returned by Publish for a message over the backend's
// or the configured size limit.
var ErrPayloadTooLarge = errors.New("queue: payload too large")

// ErrLimitExceeded is returned by Publish when the tenant's queue is full:
// its TenantLimits are reached and the backend refuses new messages rather
// than dropping stored ones. Publishing again later may succeed.
var ErrLimitExceeded = errors.New("queue: tenant limit exceeded")

// ErrUnavailable is wrapped by the errors of requests the broker (or its
// record store) did not answer in time or could not serve for the moment: it
// is restarting, the client is reconnecting, or a stream has no leader.
// Retry later; a write that failed so may or may not have taken effect.
var ErrUnavailable = errors.New("queue: broker unavailable")

// IsUnavailable reports whether err is a transient failure of the broker
// that a retry may cure: it wraps ErrUnavailable, or a request ran out of
// time (context.DeadlineExceeded) waiting for an answer. HTTP handlers
// answer it with 503 and Retry-After rather than 500.
func IsUnavailable(err error) bool {
	return errors.Is(err, ErrUnavailable) || errors.Is(err, context.DeadlineExceeded)
}

// ErrAlreadyAcked is returned when a delivery is acknowledged, nak'd or
// terminated a second time.
var ErrAlreadyAcked = errors.New("queue: delivery already settled")

// ErrSuperseded is returned by Ack, Nak, Term and InProgress of a delivery
// of a Fenced consumer whose lease lapsed (see ConsumerConfig.Fenced): its
// ack wait, less a safety margin, passed by this process's clock without a
// settlement or a successful InProgress (the process was paused, or
// starved, or partitioned from the broker). The broker has handed the
// message, or may hand it, to another consumer, and settling this stale
// delivery would settle that one instead. Nothing was sent; the current
// delivery's holder settles the message. A handler that gets it should stop
// its work and not report an outcome that the current delivery also reports.
var ErrSuperseded = errors.New("queue: delivery superseded")

// ErrInvalidConsumer is returned by Consume for a ConsumerConfig it cannot
// honour, such as a Fenced consumer whose AckWait is below
// MinFencedAckWait.
var ErrInvalidConsumer = errors.New("queue: invalid consumer config")

// Message is one message to publish.
type Message struct {
	// Subject to publish to; see Subjects.
	Subject string
	// Data is the payload, normally a serialised protobuf message.
	Data []byte
	// Header carries metadata such as HeaderType. Keys are case-sensitive.
	Header map[string]string
	// DedupeID, when set, makes the backend drop a second publish with the
	// same id to the same subject within its deduplication window. Ids are
	// scoped to the subject: the same id on two subjects is two messages.
	DedupeID string
}

// Delivery is one received message. Exactly one of Ack, Nak or Term settles
// it; InProgress may be called any number of times before that. On a Fenced
// consumer each of them fails with ErrSuperseded, sending nothing, once the
// delivery's lease lapsed (see ConsumerConfig.Fenced).
type Delivery interface {
	// Subject the message was published to.
	Subject() string
	// Data is the payload.
	Data() []byte
	// Header returns the message headers; it never returns nil.
	Header() map[string]string
	// Attempt is the delivery count, starting at 1.
	Attempt() int
	// Ack settles the message as done; it is not delivered again.
	Ack(ctx context.Context) error
	// Nak returns the message to the queue, to be delivered again no sooner
	// than delay from now.
	Nak(ctx context.Context, delay time.Duration) error
	// InProgress tells the backend the message is still being worked on and
	// restarts its ack wait. Within a tenth of the ack wait of the receive
	// or of the last InProgress sent it sends nothing (the wait would
	// restart at most that much sooner than asked), so checking that a
	// fresh delivery is still held costs no request.
	InProgress(ctx context.Context) error
	// Term takes the message out of its queue for good and moves it to the
	// tenant's dead-letter queue with the reason.
	Term(ctx context.Context, reason string) error
}

// Handler processes one delivery. It must settle the delivery (Ack, Nak or
// Term) before returning, or hand it to code that will; a delivery that is
// never settled is redelivered after the ack wait.
type Handler func(ctx context.Context, d Delivery)

// ConsumerConfig describes a durable consumer. Consumers with the same Name
// and Subject compete: each message is handled by one of them.
type ConsumerConfig struct {
	// Name of the durable consumer, e.g. "runner-remote".
	Name string
	// Subject is the filter: a full subject, or a pattern with "*" for one
	// token or a final ">" for the rest, within one tenant and role (e.g.
	// "outpost.acme.job-events.*.status").
	Subject string
	// AckWait is how long a delivery may go without Ack, Nak, Term or
	// InProgress before it is delivered again. Zero means DefaultAckWait.
	AckWait time.Duration
	// MaxDeliveries is how many times a message is delivered before it is
	// dead-lettered with its reason instead of being handed out again.
	// Zero means DefaultMaxDeliveries; negative means unlimited.
	MaxDeliveries int
	// Concurrency bounds how many deliveries are being handled at once.
	// Zero means 1.
	Concurrency int
	// Fenced turns on settlement fencing, for long-running handlers whose
	// stale settlement would harm (a job run twice, or lost). Brokers
	// accept a settlement of a superseded delivery (JetStream settles by
	// stream sequence whichever delivery the reply names; SQS deletes with
	// an older receipt handle), so a handler paused past the ack wait
	// would remove, or hand out again, the message another consumer now
	// holds. A fenced delivery holds a lease of AckWait less FenceMargin,
	// counted by this process's monotonic clock from its receipt (the
	// start of the receive that brought it, which is before the broker
	// started the ack wait) and from each successful InProgress (from when
	// it was sent). Once the lease may have lapsed, Ack, Nak, Term and
	// InProgress return ErrSuperseded and send nothing. A fenced consumer
	// receives with short waits (at most half the margin), so a message
	// read late loses little of its lease. AckWait must be at least
	// MinFencedAckWait. Unfenced consumers never see ErrSuperseded.
	Fenced bool
	// AckNoWait makes Ack send the acknowledgement without waiting for the
	// broker's confirmation, saving a round trip per message, for handlers
	// that handle a redelivery idempotently: an acknowledgement lost on its
	// way (a connection cut, a broker restarting) only means the message is
	// delivered again after AckWait, as when the handler dies before it
	// acks. Nak, Term and InProgress still wait. Backends that already
	// batch their acknowledgements (SQS) may wait anyway. A Fenced consumer
	// cannot have it: its settlement is what the fence guards.
	AckNoWait bool
}

// MinFencedAckWait is the shortest AckWait of a Fenced consumer: the lease
// keeps FenceMargin, at least a second, of it in hand.
const MinFencedAckWait = 3 * time.Second

// FenceMargin is how much of a fenced delivery's ack wait the lease keeps in
// hand for the settlement's way to the broker, the receive's own wait and
// the clocks' drift: a tenth of it, and at least a second whatever the ack
// wait.
func FenceMargin(ackWait time.Duration) time.Duration {
	return max(time.Second, ackWait/10)
}

// Validate reports a config Consume cannot honour, wrapping
// ErrInvalidConsumer. Call it after WithDefaults.
func (cfg ConsumerConfig) Validate() error {
	if cfg.Fenced && cfg.AckWait < MinFencedAckWait {
		return fmt.Errorf("%w: a fenced consumer's ack wait %s is below %s", ErrInvalidConsumer, cfg.AckWait, MinFencedAckWait)
	}
	if cfg.Fenced && cfg.AckNoWait {
		return fmt.Errorf("%w: a fenced consumer acks with the broker's confirmation (AckNoWait)", ErrInvalidConsumer)
	}
	return nil
}

// Defaults of ConsumerConfig, applied by WithDefaults.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultMaxDeliveries = 5
)

// WithDefaults returns cfg with its zero AckWait, MaxDeliveries and
// Concurrency replaced by their documented defaults. Every backend calls it,
// so the defaults are the same whatever the transport.
func (cfg ConsumerConfig) WithDefaults() ConsumerConfig {
	if cfg.AckWait <= 0 {
		cfg.AckWait = DefaultAckWait
	}
	if cfg.MaxDeliveries == 0 {
		cfg.MaxDeliveries = DefaultMaxDeliveries
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	return cfg
}

// Consumer is a running consumer.
type Consumer interface {
	// Stop stops fetching new messages and waits until every handler that
	// is running has returned or ctx is done. Deliveries not settled by then
	// are redelivered after their ack wait.
	Stop(ctx context.Context) error
}

// StopAll stops every consumer of cs with ctx, one after the other, and
// returns their errors joined (nil when all stopped cleanly).
func StopAll(ctx context.Context, cs ...Consumer) error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Stop(ctx))
	}
	return errors.Join(errs...)
}

// TenantLimits bounds what one tenant may hold in the broker so that it
// cannot starve another. Zero values mean no limit.
type TenantLimits struct {
	MaxBytes    int64
	MaxMessages int64
}

// StreamMessage is one message read back from an event subject's history.
type StreamMessage struct {
	Subject  string
	Data     []byte
	Header   map[string]string
	Sequence uint64
	Time     time.Time
}

// ReadOptions controls Read.
type ReadOptions struct {
	// FromSequence starts the read at this sequence (0 or 1 = the beginning).
	FromSequence uint64
	// Since, when set, starts the read at the first message stored at or
	// after this time instead.
	Since time.Time
	// OnlyNew starts the read after the last stored message: only messages
	// published from now on are yielded (use with Follow).
	OnlyNew bool
	// Follow keeps the read open and yields new messages as they arrive,
	// until ctx is done or the callback returns false.
	Follow bool
}

// Broker is a connection to one backend: the roles every backend
// implements (see Provisioner, Publisher, Subscriber and Reader).
type Broker interface {
	Provisioner
	Publisher
	Subscriber
	Reader
	// Close releases the connection. Consumers still running are stopped.
	Close() error
}

// WorkLister is implemented by backends that can list the messages a work
// subject still holds without consuming them (natsjs; SQS cannot). The
// scheduler uses it to tell a job whose work message is gone (settled by a
// superseded delivery, or lost) from one the queue will hand out again.
type WorkLister interface {
	// ListWork calls fn, in publish order, for each message stored on the
	// work subject (a full subject of a work role, no wildcard) and not
	// yet acknowledged, until fn returns false. A message being handled
	// counts as stored.
	ListWork(ctx context.Context, subject string, fn func(StreamMessage) bool) error
}

// Deduplicator is implemented by brokers that drop a message whose
// DedupeID they stored within a window, whichever process publishes it
// and whether or not the first message was consumed since (natsjs, SQS
// FIFO queues). The scheduler relies on it to publish a dispatch again
// when it cannot know whether the first was.
type Deduplicator interface {
	// DedupeWindow is how long a DedupeID of a work subject is
	// remembered; 0 when it is not across processes (SQS standard
	// queues).
	DedupeWindow() time.Duration
}
