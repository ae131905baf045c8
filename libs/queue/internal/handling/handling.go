// Package handling holds what every queue backend does around a handler
// call, so that the backends cannot drift apart: a delivery past its
// consumer's max deliveries goes to the dead-letter queue without reaching
// the handler, and a handler that panics is recovered and its message
// returned to the queue.
package handling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/queue"
)

// SettleTimeout bounds a settlement the library makes on its own (dead
// letter, nak after a panic), independent of the handler's context.
const SettleTimeout = 10 * time.Second

// PanicNakDelay is how long a message whose handler panicked waits before
// it is delivered again, so a handler that always panics does not spin.
const PanicNakDelay = time.Second

// DeadLetterFunc moves the delivery to its dead-letter queue with the
// reason and the number of handler attempts it had.
type DeadLetterFunc func(ctx context.Context, reason string, attempts int) error

// Run calls h for d unless d is past maxDeliveries (0 or less: no limit),
// in which case it is dead-lettered with the reason "max deliveries (N)
// exceeded". base is the consumer's context, used for the library's own
// settlements even once it is cancelled.
func Run(base context.Context, log *slog.Logger, d queue.Delivery, maxDeliveries int, deadLetter DeadLetterFunc, h queue.Handler) {
	if maxDeliveries > 0 && d.Attempt() > maxDeliveries {
		reason := fmt.Sprintf("max deliveries (%d) exceeded", maxDeliveries)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(base), SettleTimeout)
		defer cancel()
		if err := deadLetter(ctx, reason, d.Attempt()-1); err != nil {
			log.Error("dead letter failed", "subject", d.Subject(), "attempt", d.Attempt(), "error", err)
			return
		}
		log.Warn("message dead-lettered", "subject", d.Subject(), "attempt", d.Attempt(), "reason", reason)
		return
	}
	defer func() {
		if r := recover(); r != nil {
			log.Error("queue handler panicked", "subject", d.Subject(), "attempt", d.Attempt(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			ctx, cancel := context.WithTimeout(context.WithoutCancel(base), SettleTimeout)
			defer cancel()
			if err := d.Nak(ctx, PanicNakDelay); err != nil && !errors.Is(err, queue.ErrAlreadyAcked) && !errors.Is(err, queue.ErrSuperseded) {
				log.Error("nak after panic failed", "subject", d.Subject(), "error", err)
			}
		}
	}()
	h(base, d)
}

// LeaseMargin is how much of a delivery's ack wait the library keeps in
// hand: a settlement later than the ack wait less the margin, by this
// process's clock, is refused. The broker's ack wait starts when it sends
// the message, a little before this process receives it.
func LeaseMargin(ackWait time.Duration) time.Duration {
	return min(ackWait/5, 2*time.Second)
}

// Lease tracks, by this process's monotonic clock (which keeps counting
// while the process is stopped), until when a delivery is still this
// process's to settle. Brokers accept a settlement of a superseded delivery
// (JetStream settles by stream sequence, whichever delivery the reply
// subject names; SQS may delete with an older receipt handle), so the
// library refuses it itself: past the ack wait the broker has handed, or
// will hand, the message to another consumer, whose delivery is then the
// current one.
type Lease struct {
	mu      sync.Mutex
	ackWait time.Duration
	renewed time.Time
	lost    bool
}

// NewLease starts the lease of a delivery received at received, with the
// consumer's ack wait.
func NewLease(ackWait time.Duration, received time.Time) *Lease {
	return &Lease{ackWait: ackWait - LeaseMargin(ackWait), renewed: received}
}

// Check returns an error wrapping queue.ErrSuperseded once the ack wait
// (less the margin) has passed since the delivery or the start of its last
// successful InProgress. Once lost, a lease stays lost.
func (l *Lease) Check(now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lost && now.Sub(l.renewed) >= l.ackWait {
		l.lost = true
	}
	if l.lost {
		return fmt.Errorf("%w: no settlement or in-progress within the ack wait", queue.ErrSuperseded)
	}
	return nil
}

// Renew records a successful InProgress sent at sent: the broker restarted
// the ack wait no earlier than that.
func (l *Lease) Renew(sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lost && sent.After(l.renewed) {
		l.renewed = sent
	}
}
