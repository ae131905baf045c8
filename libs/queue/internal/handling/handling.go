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
			if err := d.Nak(ctx, PanicNakDelay); err != nil && !errors.Is(err, queue.ErrAlreadyAcked) {
				log.Error("nak after panic failed", "subject", d.Subject(), "error", err)
			}
		}
	}()
	h(base, d)
}
