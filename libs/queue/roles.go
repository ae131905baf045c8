package queue

import (
	"context"
	"errors"
)

// The role interfaces below each name one thing a service does with the
// broker, so that a service's constructors take the smallest one they
// need. Broker composes those every backend implements; the others are
// implemented by some backends only (natsjs: LastReader, Purger,
// WorkLister, DeadLetterStore; sqs: QueueEnsurer), and package backend
// hands them out by role. The record store is one more role: kv.Opener.

// Provisioner makes a tenant's streams or queues.
type Provisioner interface {
	// EnsureTenant provisions (idempotently) the streams or queues of a
	// tenant with its limits.
	EnsureTenant(ctx context.Context, tenant string, limits TenantLimits) error
}

// Publisher sends messages.
type Publisher interface {
	// Publish sends a message and returns once the backend has stored it.
	Publish(ctx context.Context, msg Message) error
}

// Subscriber starts durable consumers.
type Subscriber interface {
	// Consume starts a durable consumer and calls h for each delivery until
	// ctx is done or Stop is called.
	Consume(ctx context.Context, cfg ConsumerConfig, h Handler) (Consumer, error)
}

// Reader replays the stored history of event subjects.
type Reader interface {
	// Read replays the stored history of event subjects matching subject
	// (work-queue roles cannot be read). fn returns false to stop.
	// Reading a work role returns an error wrapping ErrInvalidSubject; a
	// backend that keeps no history returns one wrapping
	// errors.ErrUnsupported. Without Follow, Read returns nil after the last
	// message stored when it started; with Follow it returns ctx's error
	// once ctx is done.
	Read(ctx context.Context, subject string, opts ReadOptions, fn func(StreamMessage) bool) error
}

// ErrNoMessage is returned by LastReader.Last when the subject holds no
// message.
var ErrNoMessage = errors.New("queue: no message on subject")

// LastReader reads the last message of one subject, such as the current
// state of an object in the compacted watch inventory.
type LastReader interface {
	// Last returns the last message stored on subject (a full subject of
	// an event or compacted role), or an error wrapping ErrNoMessage.
	Last(ctx context.Context, subject string) (StreamMessage, error)
}

// Purger removes stored history.
type Purger interface {
	// Purge removes every stored message matching subject (a filter) of
	// an event or compacted role.
	Purge(ctx context.Context, subject string) error
}

// QueueEnsurer is implemented by backends that keep one queue per subject
// and make it on demand (SQS): the control plane makes a pool's queues
// before its first message, since an agent may use a queue but not make it.
type QueueEnsurer interface {
	// EnsureQueues creates (idempotently) the queues of the subjects.
	EnsureQueues(ctx context.Context, subjects ...string) error
}

// Layout is how the JetStream backend maps tenants onto streams. SQS keeps
// one queue per subject whatever the layout.
type Layout string

const (
	// LayoutPerTenant gives every tenant its own streams: the strongest
	// isolation, and TenantLimits are enforced. The default.
	LayoutPerTenant Layout = "per-tenant"
	// LayoutShared puts every tenant of a stack in the same streams with
	// subject-filtered consumers. TenantLimits are not enforced.
	LayoutShared Layout = "shared"
)

// Valid reports whether l is a known layout (the empty layout is not).
func (l Layout) Valid() bool { return l == LayoutPerTenant || l == LayoutShared }
