package sqs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/internal/handling"
)

// maxReasonLen bounds the dead-letter reason kept in the message.
const maxReasonLen = 1024

// delivery implements queue.Delivery for one received SQS message.
// Settlements go through the broker's batchers; an error means SQS may not
// have recorded it, and it can be retried.
type delivery struct {
	k         *consumer
	ql        *queueLoop
	subject   string
	data      []byte
	header    map[string]string
	attempt   int
	handle    string
	messageID string
	dup       bool // standard queues: a copy of a DedupeID already handled
	// lease says when an InProgress is worth sending and, on a fenced
	// consumer, refuses settlements once the visibility timeout may have
	// passed: the message may have been
	// received again, and a delete or visibility change with this older
	// receipt handle must not touch the current receive.
	lease *handling.Lease

	mu      sync.Mutex
	settled bool
}

func (d *delivery) Subject() string           { return d.subject }
func (d *delivery) Data() []byte              { return d.data }
func (d *delivery) Header() map[string]string { return d.header }
func (d *delivery) Attempt() int              { return d.attempt }

// Ack implements queue.Delivery: the message is deleted (batched).
func (d *delivery) Ack(ctx context.Context) error {
	return d.settle(ctx, "ack", func(ctx context.Context) error {
		return d.k.b.deletes.do(ctx, d.ql.qi.url, d.handle, 0)
	})
}

// Nak implements queue.Delivery: the message's visibility timeout is set
// to delay, rounded up to whole seconds (at most 12 hours).
func (d *delivery) Nak(ctx context.Context, delay time.Duration) error {
	secs := visibilitySeconds(max(delay, 0), 0)
	return d.settle(ctx, "nak", func(ctx context.Context) error {
		return d.k.b.visibles.do(ctx, d.ql.qi.url, visibility{handle: d.handle, timeout: secs}, 0)
	})
}

// InProgress implements queue.Delivery: the visibility timeout is set to
// the consumer's AckWait again. Within a tenth of the ack wait of the
// receive, or of the last InProgress sent, it checks the lease only and
// sends nothing.
func (d *delivery) InProgress(ctx context.Context) error {
	d.mu.Lock()
	settled := d.settled
	d.mu.Unlock()
	if settled {
		return fmt.Errorf("sqs: in progress %s: %w", d.subject, queue.ErrAlreadyAcked)
	}
	sent := time.Now()
	if err := d.lease.Check(sent); err != nil {
		return fmt.Errorf("sqs: in progress %s: %w", d.subject, err)
	}
	if d.lease.Fresh(sent) {
		return nil
	}
	ctx, cancel := withSettleTimeout(ctx)
	defer cancel()
	if err := d.k.b.visibles.do(ctx, d.ql.qi.url, visibility{handle: d.handle, timeout: d.k.visibility}, 0); err != nil {
		return fmt.Errorf("sqs: in progress %s: %w", d.subject, err)
	}
	d.lease.Renew(sent)
	return nil
}

// Term implements queue.Delivery: a copy goes to the dead-letter queue of
// the message's role with the reason, then the message is deleted. A
// delivery from a dead-letter queue cannot be terminated (the error wraps
// errors.ErrUnsupported): Ack it to drop it.
func (d *delivery) Term(ctx context.Context, reason string) error {
	return d.deadLetter(ctx, reason, d.attempt)
}

func withSettleTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, settleTimeout)
}

func (d *delivery) settle(ctx context.Context, op string, fn func(context.Context) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return fmt.Errorf("sqs: %s %s: %w", op, d.subject, queue.ErrAlreadyAcked)
	}
	if err := d.lease.Check(time.Now()); err != nil {
		return fmt.Errorf("sqs: %s %s: %w", op, d.subject, err)
	}
	ctx, cancel := withSettleTimeout(ctx)
	defer cancel()
	if err := fn(ctx); err != nil {
		return fmt.Errorf("sqs: %s %s: %w", op, d.subject, err)
	}
	d.settled = true
	return nil
}

// deadLetter sends a copy of the message with the dead-letter headers to
// its role's dead-letter queue, then deletes it. On FIFO queues the copy's
// deduplication id is derived from the message id, so a retry after a
// failed delete does not store it twice (standard queues: the consumer's
// duplicate check drops the second copy).
func (d *delivery) deadLetter(ctx context.Context, reason string, attempts int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settled {
		return fmt.Errorf("sqs: term %s: %w", d.subject, queue.ErrAlreadyAcked)
	}
	if err := d.lease.Check(time.Now()); err != nil {
		return fmt.Errorf("sqs: term %s: %w", d.subject, err)
	}
	src := d.ql.qi.id
	if src.Role == queue.RoleDeadLetter {
		return fmt.Errorf("sqs: term %s: a dead letter cannot be dead-lettered again; ack it to drop it: %w", d.subject, errors.ErrUnsupported)
	}
	ctx, cancel := withSettleTimeout(ctx)
	defer cancel()
	b := d.k.b
	dlqID := deadLetterQueue(src)
	dlq, err := b.resolve(ctx, dlqID, true)
	if err != nil {
		return fmt.Errorf("sqs: dead-letter %s: %w", d.subject, err)
	}
	reason = strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, reason)
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	h := maps.Clone(d.header)
	h[queue.HeaderDeadLetterReason] = reason
	h[queue.HeaderDeadLetterSubject] = d.subject
	h[queue.HeaderDeadLetterAttempts] = strconv.Itoa(attempts)
	dlqSubject := b.subjects.DeadLetter(src.Tenant, src.Role)
	e, size := b.encode(dlqID, dlqSubject, d.data, h, "dlq-"+d.messageID)
	if err := b.sends.do(ctx, dlq.url, e, size); err != nil {
		return fmt.Errorf("sqs: dead-letter %s to %s: %w", d.subject, dlq.name, err)
	}
	if err := b.deletes.do(ctx, d.ql.qi.url, d.handle, 0); err != nil {
		return fmt.Errorf("sqs: term %s after dead-lettering it: %w", d.subject, err)
	}
	d.settled = true
	return nil
}
