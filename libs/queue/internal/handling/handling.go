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

// freshShare is the share of the ack wait within which an InProgress after
// the receive, or after the last InProgress sent, sends nothing: the
// deadline it would move is at most that much sooner than asked. A short
// job's checks that it still holds its delivery (one when it starts, one
// before it reports) then cost no request.
const freshShare = 10

// Lease tracks, by this process's monotonic clock (which keeps counting
// while the process is stopped), when a delivery's ack wait last started
// at the earliest: the start of the receive that brought it, then the send
// of each successful InProgress. From it every delivery knows whether an
// InProgress is worth sending yet (Fresh), and a fenced consumer's delivery
// until when it is still this process's to settle (Check; see
// queue.ConsumerConfig.Fenced).
type Lease struct {
	mu     sync.Mutex
	fenced bool
	term   time.Duration // fenced: the ack wait less its margin
	fresh  time.Duration // a share of the ack wait (freshShare)
	since  time.Time
	lost   bool
}

// NewLease returns the lease of a delivery received at received (the start
// of the receive that brought it) by a consumer with cfg.
func NewLease(cfg queue.ConsumerConfig, received time.Time) *Lease {
	l := &Lease{fenced: cfg.Fenced, fresh: cfg.AckWait / freshShare, since: received}
	if cfg.Fenced {
		l.term = cfg.AckWait - queue.FenceMargin(cfg.AckWait)
	}
	return l
}

// ReceiveWait is how long one receive of a consumer with cfg may wait for
// messages, at most def: half the fence margin for a fenced consumer, so a
// message sent late in the wait loses little of its lease, def otherwise.
func ReceiveWait(cfg queue.ConsumerConfig, def time.Duration) time.Duration {
	if !cfg.Fenced {
		return def
	}
	return min(def, queue.FenceMargin(cfg.AckWait)/2)
}

// Check returns an error wrapping queue.ErrSuperseded once a fenced
// lease's term has passed since the delivery or the sending of its last
// successful InProgress. Once lost, a lease stays lost; an unfenced one
// never lapses.
func (l *Lease) Check(now time.Time) error {
	if !l.fenced {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lost && now.Sub(l.since) >= l.term {
		l.lost = true
	}
	if l.lost {
		return fmt.Errorf("%w: no settlement or in-progress within the ack wait less its margin", queue.ErrSuperseded)
	}
	return nil
}

// Renew records a successful InProgress sent at sent: the broker restarted
// the ack wait no earlier than that.
func (l *Lease) Renew(sent time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.lost && sent.After(l.since) {
		l.since = sent
	}
}

// Fresh reports whether the ack wait started so recently at now that an
// InProgress would move its deadline by less than a tenth of it: then it
// need not be sent.
func (l *Lease) Fresh(now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return now.Sub(l.since) < l.fresh
}
