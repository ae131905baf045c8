package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strings"

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
// Errors wrap queue.ErrInvalidSubject, queue.ErrUnknownTenant (the tenant
// was never ensured), queue.ErrPayloadTooLarge, queue.ErrLimitExceeded (the
// tenant's work stream is full), queue.ErrUnavailable (no stream or server
// answered for the moment) or queue.ErrClosed.
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
	if _, err := c.js.PublishMsg(ctx, m); err != nil {
		return c.publishError(ctx, msg.Subject, tenant, role, err)
	}
	return nil
}

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
		return fmt.Errorf("natsjs: publish to %s: no stream answered (leader election or outage?): %w: %w", subject, queue.ErrUnavailable, err)
	case errors.As(err, &apiErr):
		switch {
		case apiErr.ErrorCode == jetstream.JSErrCodeStreamMessageExceedsMaximum:
			return fmt.Errorf("natsjs: publish to %s: %w: %w", subject, queue.ErrPayloadTooLarge, err)
		case isLimitError(apiErr):
			return fmt.Errorf("natsjs: publish to %s: %w: %w", subject, queue.ErrLimitExceeded, err)
		}
	}
	if unavailable(err) {
		return fmt.Errorf("natsjs: publish to %s: %w: %w", subject, queue.ErrUnavailable, err)
	}
	return fmt.Errorf("natsjs: publish to %s: %w", subject, err)
}

// isLimitError reports a store refused by a stream's discard-new limits.
func isLimitError(e *jetstream.APIError) bool {
	d := e.Description
	return strings.Contains(d, "maximum messages") || strings.Contains(d, "maximum bytes") ||
		strings.Contains(d, "resource limits exceeded")
}
