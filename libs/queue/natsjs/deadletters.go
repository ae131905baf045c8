package natsjs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/outposthq/outpost/libs/queue"
)

var _ queue.DeadLetterStore = (*Conn)(nil)

// DeadLetters implements queue.DeadLetterStore: it reads the tenant's
// dead-letter subjects (one role's with q.Role) from the dead-letter
// stream, oldest first. A dead letter's id is its stream sequence; in the
// shared layout the stream, and so the sequences, are shared by every
// tenant of the stack, and the subject filter keeps the tenant's own.
func (c *Conn) DeadLetters(ctx context.Context, tenant string, q queue.DeadLetterQuery) ([]queue.DeadLetter, string, error) {
	if q.Limit <= 0 {
		return nil, "", fmt.Errorf("natsjs: dead letters of %q: limit %d must be positive", tenant, q.Limit)
	}
	if !queue.ValidToken(tenant) {
		return nil, "", fmt.Errorf("natsjs: dead letters: %w: tenant %q", queue.ErrInvalidSubject, tenant)
	}
	subject := c.subjects.All(tenant, queue.RoleDeadLetter)
	if q.Role != "" {
		if !queue.ValidToken(string(q.Role)) {
			return nil, "", fmt.Errorf("natsjs: dead letters of %q: %w: role %q", tenant, queue.ErrInvalidSubject, q.Role)
		}
		subject = c.subjects.DeadLetter(tenant, q.Role)
	}
	var from uint64 = 1
	if q.After != "" {
		after, err := parseDeadLetterID(q.After)
		if err != nil {
			return nil, "", err
		}
		from = after + 1
	}
	var (
		page []queue.DeadLetter
		more bool
	)
	err := c.Read(ctx, subject, queue.ReadOptions{FromSequence: from}, func(m queue.StreamMessage) bool {
		if len(page) == q.Limit {
			more = true
			return false
		}
		page = append(page, queue.ParseDeadLetter(tenant, strconv.FormatUint(m.Sequence, 10), m))
		return true
	})
	if err != nil {
		return nil, "", fmt.Errorf("natsjs: dead letters of %q: %w", tenant, err)
	}
	next := ""
	if more {
		next = page[len(page)-1].ID
	}
	return page, next, nil
}

// DeadLetter implements queue.DeadLetterStore with one request for the
// stream message.
func (c *Conn) DeadLetter(ctx context.Context, tenant, id string) (queue.DeadLetter, error) {
	_, d, err := c.deadLetter(ctx, tenant, id)
	return d, err
}

// DeleteDeadLetter implements queue.DeadLetterStore: the message is
// removed from the dead-letter stream (its bytes overwritten on disk).
func (c *Conn) DeleteDeadLetter(ctx context.Context, tenant, id string) error {
	stream, d, err := c.deadLetter(ctx, tenant, id)
	if err != nil {
		return err
	}
	seq, _ := strconv.ParseUint(d.ID, 10, 64)
	if err := stream.SecureDeleteMsg(ctx, seq); err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) {
			return fmt.Errorf("natsjs: delete dead letter %s of %q: %w", id, tenant, queue.ErrDeadLetterNotFound)
		}
		return fmt.Errorf("natsjs: delete dead letter %s of %q: %w", id, tenant, err)
	}
	return nil
}

// deadLetter reads the dead letter id of tenant and its stream; a message
// of another tenant (shared layout) is not found.
func (c *Conn) deadLetter(ctx context.Context, tenant, id string) (jetstream.Stream, queue.DeadLetter, error) {
	if c.closed.Load() {
		return nil, queue.DeadLetter{}, queue.ErrClosed
	}
	seq, err := parseDeadLetterID(id)
	if err != nil {
		return nil, queue.DeadLetter{}, err
	}
	if !queue.ValidToken(tenant) {
		return nil, queue.DeadLetter{}, fmt.Errorf("natsjs: dead letter: %w: tenant %q", queue.ErrInvalidSubject, tenant)
	}
	if err := c.checkTenant(ctx, tenant, queue.RoleDeadLetter); err != nil {
		return nil, queue.DeadLetter{}, fmt.Errorf("natsjs: dead letter %s: %w", id, err)
	}
	name := c.streamName(tenant, kindDLQ)
	stream, err := c.js.Stream(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			c.forgetTenant(tenant)
			return nil, queue.DeadLetter{}, fmt.Errorf("natsjs: dead letter %s: %w: %q", id, queue.ErrUnknownTenant, tenant)
		}
		return nil, queue.DeadLetter{}, fmt.Errorf("natsjs: dead letter %s: stream %s: %w", id, name, err)
	}
	m, err := stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, queue.DeadLetter{}, fmt.Errorf("natsjs: dead letter %s of %q: %w", id, tenant, queue.ErrDeadLetterNotFound)
	}
	if err != nil {
		return nil, queue.DeadLetter{}, fmt.Errorf("natsjs: dead letter %s of %q: %w", id, tenant, err)
	}
	if !strings.HasPrefix(m.Subject, c.subjects.Stack+"."+tenant+"."+string(queue.RoleDeadLetter)+".") {
		return nil, queue.DeadLetter{}, fmt.Errorf("natsjs: dead letter %s of %q: %w", id, tenant, queue.ErrDeadLetterNotFound)
	}
	sm := queue.StreamMessage{Subject: m.Subject, Data: m.Data, Header: headerMap(m.Header), Sequence: m.Sequence, Time: m.Time}
	return stream, queue.ParseDeadLetter(tenant, strconv.FormatUint(m.Sequence, 10), sm), nil
}

// parseDeadLetterID reads a dead-letter id: a stream sequence in decimal.
func parseDeadLetterID(id string) (uint64, error) {
	seq, err := strconv.ParseUint(id, 10, 64)
	if err != nil || seq == 0 {
		return 0, fmt.Errorf("natsjs: dead letter id %q: %w (ids are positive decimal numbers)", id, queue.ErrDeadLetterNotFound)
	}
	return seq, nil
}
