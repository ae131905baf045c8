package queue

import (
	"context"
	"errors"
	"maps"
	"strconv"
	"strings"
	"time"
)

// Headers of dead letters and replays, beside HeaderDeadLetterReason,
// HeaderDeadLetterSubject and HeaderDeadLetterAttempts.
const (
	// HeaderDeadLetterFirstTime is set on a dead-lettered message, when the
	// backend knows it: when the original message was stored in its queue
	// (RFC 3339 with nanoseconds, UTC).
	HeaderDeadLetterFirstTime = "Outpost-Dlq-First-Time"
	// HeaderReplayOf is set on a message republished from the dead-letter
	// queue: the id of the dead letter it was replayed from.
	HeaderReplayOf = "Outpost-Replay-Of"
)

// ReasonPublishedDirectly is the reason given to a message found on a
// dead-letter subject without the dead-letter headers: nothing took it out
// of a queue, somebody published it there.
const ReasonPublishedDirectly = "published directly to the dead-letter subject, no dead-letter headers"

// ErrDeadLetterNotFound is returned for a dead-letter id that names no
// stored dead letter of the tenant.
var ErrDeadLetterNotFound = errors.New("queue: dead letter not found")

// DeadLetter is one stored dead letter.
type DeadLetter struct {
	// ID names the dead letter within its tenant (for JetStream, the
	// sequence of the dead-letter stream, in decimal).
	ID string
	// Tenant the dead letter belongs to.
	Tenant string
	// Subject is the dead-letter subject it is stored on,
	// "<stack>.<tenant>.dlq.<role>".
	Subject string
	// Role is the role the message was taken from; "unknown" when neither
	// the headers nor the subject name a known role.
	Role Role
	// OriginalSubject is the subject the message was published to; empty
	// for a message published directly (Direct).
	OriginalSubject string
	// Reason is why the message was dead-lettered.
	Reason string
	// Class is the Reason reduced to a small set (see DeadLetterClass), for
	// metrics and filters.
	Class string
	// Attempts is how many times the message was handed to a handler.
	Attempts int
	// FirstTime is when the original message was stored in its queue (Time
	// when the backend did not record it); Time is when the dead letter
	// was stored.
	FirstTime time.Time
	Time      time.Time
	// Direct is set for a message published on a dead-letter subject
	// without the dead-letter headers.
	Direct bool
	// Data and Header are the message as stored, dead-letter headers
	// included.
	Data   []byte
	Header map[string]string
}

// Size is the payload size in bytes.
func (d DeadLetter) Size() int { return len(d.Data) }

// Dead-letter reason classes, the bounded label of dead-letter metrics.
const (
	// ClassMaxDeliveries: delivered more often than the consumer's
	// MaxDeliveries.
	ClassMaxDeliveries = "max_deliveries"
	// ClassRedrive: moved by the SQS redrive policy.
	ClassRedrive = "redrive"
	// ClassMalformed: the payload did not decode (bad bytes, unknown type).
	ClassMalformed = "malformed"
	// ClassDirect: published directly on a dead-letter subject.
	ClassDirect = "direct"
	// ClassRejected: decoded, but terminated by its handler for any other
	// reason (invalid content, wrong tenant, ...).
	ClassRejected = "rejected"
)

// DeadLetterClass reduces a dead-letter reason to one of the Class
// constants, from the prefixes the queue library and events.Decode write.
func DeadLetterClass(reason string) string {
	switch {
	case reason == ReasonPublishedDirectly:
		return ClassDirect
	case strings.HasPrefix(reason, "max deliveries ("):
		return ClassMaxDeliveries
	case strings.HasPrefix(reason, "moved by the SQS redrive policy"):
		return ClassRedrive
	case strings.HasPrefix(reason, "malformed event"):
		return ClassMalformed
	}
	return ClassRejected
}

// ParseDeadLetter reads the dead-letter headers of a message stored on the
// dead-letter subject of tenant. A message without them is a Direct one,
// with ReasonPublishedDirectly. id is the backend's id of the message.
func ParseDeadLetter(tenant, id string, m StreamMessage) DeadLetter {
	h := m.Header
	if h == nil {
		h = map[string]string{}
	}
	d := DeadLetter{
		ID:              id,
		Tenant:          tenant,
		Subject:         m.Subject,
		OriginalSubject: h[HeaderDeadLetterSubject],
		Reason:          h[HeaderDeadLetterReason],
		Time:            m.Time,
		FirstTime:       m.Time,
		Data:            m.Data,
		Header:          h,
	}
	d.Attempts, _ = strconv.Atoi(h[HeaderDeadLetterAttempts])
	if t, err := time.Parse(time.RFC3339Nano, h[HeaderDeadLetterFirstTime]); err == nil {
		d.FirstTime = t
	}
	if _, ok := h[HeaderDeadLetterReason]; !ok {
		d.Direct = true
		d.Reason = ReasonPublishedDirectly
	}
	d.Class = DeadLetterClass(d.Reason)
	d.Role = DeadLetterRole(m.Subject, d.OriginalSubject)
	return d
}

// DeadLetterRole is the role a dead letter came from: the role of its
// original subject, else the key of its dead-letter subject when that is a
// known role, else "unknown". The result is always one of a few values, fit
// for a metric label.
func DeadLetterRole(subject, original string) Role {
	if p, err := ParseSubject(original); err == nil {
		return p.Role
	}
	if p, err := ParseSubject(subject); err == nil && Role(p.Key).Known() {
		return Role(p.Key)
	}
	return "unknown"
}

// ReplayMessage is the message that replays d: its payload and headers
// (less the dead-letter ones) to its original subject, with HeaderReplayOf
// and dedupeID, which must be new so that the original's deduplication does
// not drop the replay.
func ReplayMessage(d DeadLetter, dedupeID string) Message {
	h := maps.Clone(d.Header)
	for k := range h {
		if strings.HasPrefix(k, "Outpost-Dlq-") || k == HeaderReplayOf {
			delete(h, k)
		}
	}
	if h == nil {
		h = map[string]string{}
	}
	h[HeaderReplayOf] = d.ID
	return Message{Subject: d.OriginalSubject, Data: d.Data, Header: h, DedupeID: dedupeID}
}

// DeadLetterQuery selects a page of a tenant's dead letters.
type DeadLetterQuery struct {
	// Role keeps the dead letters of one role (the key of the dead-letter
	// subject); empty keeps all.
	Role Role
	// After starts the page after this id ("" = from the oldest).
	After string
	// Limit bounds the page; it must be positive.
	Limit int
}

// DeadLetterStore lists and removes the stored dead letters of a tenant.
// A backend whose dead-letter queues keep their messages once consumed
// (JetStream) implements it; on SQS the scheduler consumes and deletes
// them, so it does not.
type DeadLetterStore interface {
	// DeadLetters returns the tenant's dead letters matching q, oldest
	// first, and the id to pass as After for the next page ("" when this
	// page reached the end).
	DeadLetters(ctx context.Context, tenant string, q DeadLetterQuery) ([]DeadLetter, string, error)
	// DeadLetter returns one dead letter of the tenant, or an error
	// wrapping ErrDeadLetterNotFound.
	DeadLetter(ctx context.Context, tenant, id string) (DeadLetter, error)
	// DeleteDeadLetter removes one dead letter of the tenant, or returns an
	// error wrapping ErrDeadLetterNotFound.
	DeleteDeadLetter(ctx context.Context, tenant, id string) error
}
