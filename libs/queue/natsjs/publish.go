package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/outposthq/outpost/libs/queue"
)

// Publish stores msg in its tenant's stream and returns once JetStream has
// acknowledged it. Header becomes NATS headers and DedupeID, scoped to the
// subject, the Nats-Msg-Id header (deduplicated within
// Config.DuplicateWindow). JetStream deduplicates per stream, and one stream
// holds several subjects, so the subject is part of the id.
//
// While the tenant's stream elects a leader nothing answers; Publish tries
// again with backoff until ctx is done, so callers bound it with ctx.
//
// Errors wrap queue.ErrInvalidSubject, queue.ErrUnknownTenant (the tenant
// was never ensured), queue.ErrPayloadTooLarge, queue.ErrLimitExceeded (the
// tenant's work stream is full) or queue.ErrClosed.
func (c *Conn) Publish(ctx context.Context, msg queue.Message) error {
	if c.closed.Load() {
		return queue.ErrClosed
	}
	tenant, role, err := c.checkSubject(msg.Subject, false)
	if err != nil {
		return fmt.Errorf("natsjs: publish: %w", err)
	}
	if len(msg.Data) > c.maxPayload {
		return fmt.Errorf("natsjs: publish to %s: %w: %d bytes, limit is %d bytes", msg.Subject, queue.ErrPayloadTooLarge, len(msg.Data), c.maxPayload)
	}
	if !c.isKnown(tenant) || accountRole(role) {
		if err := c.checkRole(ctx, tenant, role); err != nil {
			return fmt.Errorf("natsjs: publish to %s: %w", msg.Subject, err)
		}
	}
	m := &nats.Msg{Subject: msg.Subject, Data: msg.Data}
	if n := len(msg.Header); n > 0 || msg.DedupeID != "" {
		if msg.DedupeID != "" {
			n++
		}
		h := make(nats.Header, n)
		for k, v := range msg.Header {
			h[k] = []string{v}
		}
		if msg.DedupeID != "" {
			h[jetstream.MsgIDHeader] = []string{msg.Subject + "|" + msg.DedupeID}
		}
		m.Header = h
	}
	return c.publishMsg(ctx, m, tenant, role)
}

// publishMsg publishes m, riding out a stream leader election: while a
// replicated stream elects a leader (right after it was created, or when
// its leader's node stops or falls behind) nothing answers its subjects,
// and the client reports no responders. No responder means the message
// was not stored, so publishing again cannot duplicate it; it is tried
// again with backoff while ctx lasts, once the tenant is known to exist.
//
// A publish sent just as the leader's node goes can also get no answer at
// all. A message with a dedupe id is therefore given publishAttempt per
// try and sent again, unchanged, when the try times out: the stream
// stores it once whichever try arrives. One without a dedupe id waits for
// its answer until ctx is done, as sending it twice could store it twice.
func (c *Conn) publishMsg(ctx context.Context, m *nats.Msg, tenant string, role queue.Role) error {
	idempotent := m.Header.Get(jetstream.MsgIDHeader) != ""
	var b backoff.BackOff
	for {
		actx, cancel := ctx, context.CancelFunc(func() {})
		if idempotent {
			actx, cancel = context.WithTimeout(ctx, publishAttempt)
		}
		_, err := c.js.PublishMsg(actx, m)
		cancel()
		if err == nil {
			return nil
		}
		var perr error
		if idempotent && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			perr = fmt.Errorf("natsjs: publish to %s: %w: %w", m.Subject, errNoStreamAnswer, err)
		} else {
			perr = c.publishError(ctx, m.Subject, tenant, role, err)
		}
		if !errors.Is(perr, errNoStreamAnswer) {
			return perr
		}
		if b == nil {
			b = leaderBackoff()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", perr, ctx.Err())
		case <-time.After(b.NextBackOff()):
		}
		if c.closed.Load() {
			return queue.ErrClosed
		}
	}
}

// publishAttempt bounds one try of a publish that carries a dedupe id.
const publishAttempt = 5 * time.Second

// errNoStreamAnswer marks a publish that no stream answered while the
// tenant's streams exist: a leader election or an outage.
var errNoStreamAnswer = errors.New("no stream answered (leader election or outage?)")

// publishError maps a JetStream publish failure onto the queue errors.
func (c *Conn) publishError(ctx context.Context, subject, tenant string, role queue.Role, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("natsjs: publish to %s: %w", subject, queue.ErrClosed)
	case errors.Is(err, nats.ErrMaxPayload):
		return fmt.Errorf("natsjs: publish to %s: %w: over the server's limit of %d bytes (data and headers)", subject, queue.ErrPayloadTooLarge, c.nc.MaxPayload())
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		// Nothing stores the subject: the tenant's streams are gone, or
		// the stream has no leader right now.
		exists, lerr := c.tenantExists(ctx, tenant, role)
		if lerr == nil && !exists {
			c.forgetTenant(tenant)
			return fmt.Errorf("natsjs: publish to %s: %w: %q", subject, queue.ErrUnknownTenant, tenant)
		}
		if lerr != nil {
			return fmt.Errorf("natsjs: publish to %s: %w: %w (look up tenant: %w)", subject, errNoStreamAnswer, err, lerr)
		}
		return fmt.Errorf("natsjs: publish to %s: %w: %w", subject, errNoStreamAnswer, err)
	case errors.As(err, &apiErr):
		switch {
		case apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
			return fmt.Errorf("natsjs: publish to %s: %w: %w", subject, queue.ErrPayloadTooLarge, err)
		case isLimitError(apiErr):
			return fmt.Errorf("natsjs: publish to %s: %w: %w", subject, queue.ErrLimitExceeded, err)
		}
	}
	return fmt.Errorf("natsjs: publish to %s: %w", subject, err)
}

// isLimitError reports a store refused by a stream's discard-new limits.
func isLimitError(e *jetstream.APIError) bool {
	d := e.Description
	return strings.Contains(d, "maximum messages") || strings.Contains(d, "maximum bytes") ||
		strings.Contains(d, "resource limits exceeded")
}
