package sqs

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/outposthq/outpost/libs/queue"
)

// ErrNoHistory is returned (wrapped) by Read: SQS deletes a message once it
// is consumed and cannot replay what was published. It wraps
// errors.ErrUnsupported, as queue.Broker's contract asks.
var ErrNoHistory = fmt.Errorf("sqs: queues keep no history to read: %w", errors.ErrUnsupported)

// Publish sends msg to its queue (see the package documentation for the
// mapping) and returns once SQS has stored it. Sends to the same queue
// within Config.BatchLinger share one SendMessageBatch request.
//
// Errors wrap queue.ErrInvalidSubject, queue.ErrUnknownTenant (the
// tenant was never ensured), queue.ErrPayloadTooLarge, ErrNameConflict or
// queue.ErrClosed.
func (b *Broker) Publish(ctx context.Context, msg queue.Message) error {
	if b.closed.Load() {
		return queue.ErrClosed
	}
	id, err := b.queueFor(msg.Subject)
	if err != nil {
		return fmt.Errorf("sqs: publish: %w", err)
	}
	if len(msg.Data) > b.cfg.MaxPayload {
		return fmt.Errorf("sqs: publish to %s: %w: %d bytes, limit is %d bytes (SQS message limit %d bytes, base64 body and attributes included)",
			msg.Subject, queue.ErrPayloadTooLarge, len(msg.Data), b.cfg.MaxPayload, b.cfg.MaxMessageSize)
	}
	e, size := b.encode(id, msg.Subject, msg.Data, msg.Header, msg.DedupeID)
	if size > b.cfg.MaxMessageSize {
		return fmt.Errorf("sqs: publish to %s: %w: %d bytes with base64 body and attributes, SQS limit is %d bytes (headers too large?)",
			msg.Subject, queue.ErrPayloadTooLarge, size, b.cfg.MaxMessageSize)
	}
	qi, err := b.resolve(ctx, id, true)
	if err != nil {
		return fmt.Errorf("sqs: publish to %s: %w", msg.Subject, err)
	}
	dedupeKey := ""
	if !b.fifo && msg.DedupeID != "" {
		dedupeKey = qi.url + "\x00" + msg.DedupeID
		if !b.sent.claim(dedupeKey) {
			b.metrics.dropped()
			return nil
		}
	}
	if err := b.sends.do(ctx, qi.url, e, size); err != nil {
		if dedupeKey != "" {
			b.sent.drop(dedupeKey) // not stored: a retry must go out
		}
		if isNotFound(err) {
			b.forget(qi.name)
			return fmt.Errorf("sqs: publish to %s: %w: %q: queue %s was deleted", msg.Subject, queue.ErrUnknownTenant, id.Tenant, qi.name)
		}
		return fmt.Errorf("sqs: publish to %s: %w", msg.Subject, err)
	}
	return nil
}

// encode builds the send entry of a message to id's queue and its size as
// SQS counts it.
func (b *Broker) encode(id queueID, subject string, data []byte, header map[string]string, dedupeID string) (sendEntry, int) {
	e := sendEntry{body: encodeBody(data)}
	if b.fifo {
		e.dedupe = dedupeID
		if e.dedupe == "" {
			e.dedupe = uuid.NewString()
		}
		e.dedupe = fifoToken(e.dedupe)
		switch {
		case id.Role.IsWork() || id.Role == queue.RoleDeadLetter:
			// One group per message: a slow or delayed job never holds up
			// another. A repeated DedupeID lands in the same group.
			e.groupID = e.dedupe
		default:
			// Events of one subject (one job's statuses) stay in order.
			e.groupID = fifoToken(subject)
		}
		e.attrs = encodeAttributes(subject, "", header)
	} else {
		e.attrs = encodeAttributes(subject, dedupeID, header)
	}
	return e, messageSize(e.body, e.attrs)
}

// Read always fails on SQS: a subject that is not valid, or names a work
// role, gives an error wrapping queue.ErrInvalidSubject; any other one an
// error wrapping ErrNoHistory (and errors.ErrUnsupported). SQS cannot
// replay stored messages; use Consume.
func (b *Broker) Read(_ context.Context, subject string, _ queue.ReadOptions, _ func(queue.StreamMessage) bool) error {
	if b.closed.Load() {
		return queue.ErrClosed
	}
	_, role, _, err := b.checkSubject(subject)
	if err != nil {
		return fmt.Errorf("sqs: read: %w", err)
	}
	if role.IsWork() {
		return fmt.Errorf("sqs: read %s: %w: role %q is a work queue and keeps no history; only event roles can be read", subject, queue.ErrInvalidSubject, role)
	}
	return fmt.Errorf("sqs: read %s: %w", subject, ErrNoHistory)
}

// window remembers keys (with a value) for a while, for the
// standard-queue duplicate checks. It holds at most windowMax keys,
// dropping the oldest.
type window struct {
	ttl   time.Duration
	mu    sync.Mutex
	keys  map[string]*list.Element
	order *list.List // of windowEntry, oldest first
}

type windowEntry struct {
	key, val string
	at       time.Time
}

const windowMax = 100_000

func newWindow(ttl time.Duration) *window {
	return &window{ttl: ttl, keys: map[string]*list.Element{}, order: list.New()}
}

// get returns the value of key if it was added within the window.
func (w *window) get(key string) (string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(time.Now())
	el, ok := w.keys[key]
	if !ok {
		return "", false
	}
	return el.Value.(windowEntry).val, true
}

// seen reports whether key was added within the window.
func (w *window) seen(key string) bool {
	_, ok := w.get(key)
	return ok
}

// add records key with val now.
func (w *window) add(key, val string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	w.expire(now)
	if el, ok := w.keys[key]; ok {
		w.order.Remove(el)
	}
	w.keys[key] = w.order.PushBack(windowEntry{key: key, val: val, at: now})
	for w.order.Len() > windowMax {
		w.remove(w.order.Front())
	}
}

// claim adds key unless it is already in the window, atomically, and
// reports whether it did.
func (w *window) claim(key string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.expire(time.Now())
	if _, ok := w.keys[key]; ok {
		return false
	}
	w.keys[key] = w.order.PushBack(windowEntry{key: key, at: time.Now()})
	for w.order.Len() > windowMax {
		w.remove(w.order.Front())
	}
	return true
}

// drop forgets key.
func (w *window) drop(key string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if el, ok := w.keys[key]; ok {
		w.remove(el)
	}
}

func (w *window) expire(now time.Time) {
	for el := w.order.Front(); el != nil && now.Sub(el.Value.(windowEntry).at) > w.ttl; el = w.order.Front() {
		w.remove(el)
	}
}

func (w *window) remove(el *list.Element) {
	delete(w.keys, el.Value.(windowEntry).key)
	w.order.Remove(el)
}

// hashHex is the hex SHA-256 of s.
func hashHex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
