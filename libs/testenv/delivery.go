package testenv

import (
	"context"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/queue"
)

// Settlement ops recorded by Delivery.
const (
	// OpAck is a delivery settled with Ack.
	OpAck = "ack"
	// OpNak is a delivery settled with Nak.
	OpNak = "nak"
	// OpTerm is a delivery settled with Term.
	OpTerm = "term"
)

// Settlement is how a Delivery was settled.
type Settlement struct {
	// Op is OpAck, OpNak or OpTerm.
	Op string
	// Delay is Nak's delay.
	Delay time.Duration
	// Reason is Term's reason.
	Reason string
}

// Delivery is a queue.Delivery held in memory, for unit tests of handlers:
// it records how it was settled. Like a real delivery it is settled once:
// a second Ack, Nak or Term returns queue.ErrAlreadyAcked and is not
// recorded.
type Delivery struct {
	msg     queue.Message
	attempt int

	mu         sync.Mutex
	settlement Settlement
	inProgress int
	superseded bool
	settled    chan struct{}
}

// NewDelivery is a delivery of msg as its attempt-th delivery (1 when
// below 1). A nil msg.Header is given an empty one.
func NewDelivery(msg queue.Message, attempt int) *Delivery {
	if msg.Header == nil {
		msg.Header = map[string]string{}
	}
	return &Delivery{msg: msg, attempt: max(attempt, 1), settled: make(chan struct{})}
}

// Subject implements queue.Delivery.
func (d *Delivery) Subject() string { return d.msg.Subject }

// Data implements queue.Delivery.
func (d *Delivery) Data() []byte { return d.msg.Data }

// Header implements queue.Delivery.
func (d *Delivery) Header() map[string]string { return d.msg.Header }

// Attempt implements queue.Delivery.
func (d *Delivery) Attempt() int { return d.attempt }

// Ack implements queue.Delivery.
func (d *Delivery) Ack(context.Context) error { return d.settle(Settlement{Op: OpAck}) }

// Nak implements queue.Delivery.
func (d *Delivery) Nak(_ context.Context, delay time.Duration) error {
	return d.settle(Settlement{Op: OpNak, Delay: delay})
}

// Term implements queue.Delivery.
func (d *Delivery) Term(_ context.Context, reason string) error {
	return d.settle(Settlement{Op: OpTerm, Reason: reason})
}

// InProgress implements queue.Delivery; it counts the calls.
func (d *Delivery) InProgress(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.superseded {
		return queue.ErrSuperseded
	}
	d.inProgress++
	return nil
}

// Supersede makes every later InProgress, Ack, Nak and Term fail with
// queue.ErrSuperseded, as a queue answers once the delivery's ack wait
// passed and another consumer may hold the message.
func (d *Delivery) Supersede() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.superseded = true
}

func (d *Delivery) settle(s Settlement) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.settlement.Op != "" {
		return queue.ErrAlreadyAcked
	}
	if d.superseded {
		return queue.ErrSuperseded
	}
	d.settlement = s
	close(d.settled)
	return nil
}

// Settled is closed once the delivery is settled.
func (d *Delivery) Settled() <-chan struct{} { return d.settled }

// Settlement is how the delivery was settled; the zero Settlement (Op "")
// while it is not.
func (d *Delivery) Settlement() Settlement {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.settlement
}

// WaitSettled waits up to timeout for the delivery to be settled and
// returns how; ok is false when it was not settled in time.
func (d *Delivery) WaitSettled(timeout time.Duration) (s Settlement, ok bool) {
	select {
	case <-d.settled:
		return d.Settlement(), true
	case <-time.After(timeout):
		return Settlement{}, false
	}
}

// InProgressCount is how many times InProgress was called.
func (d *Delivery) InProgressCount() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.inProgress
}
