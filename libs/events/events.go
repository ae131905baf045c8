// Package events turns Outpost's protobuf events into queue messages and
// back. The payload's message type travels in the queue.HeaderType header
// so a consumer can tell events on one subject apart and refuse what it does
// not know.
package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/telemetry"
	commonv1 "github.com/outposthq/outpost/proto/outpost/common/v1"
)

// ErrMalformed is returned by Decode for a payload that is not a valid
// message of the type its header names, or that names no known type. Such a
// message is poison: terminate it, do not retry it.
var ErrMalformed = errors.New("malformed event")

// NewEnvelope returns an envelope for tenant with a fresh event id and the
// current time.
func NewEnvelope(tenant string, attempt uint32, idempotencyKey, traceID string) *commonv1.Envelope {
	now := timestamppb.Now()
	return &commonv1.Envelope{
		Tenant:         tenant,
		EventId:        uuid.NewString(),
		IdempotencyKey: idempotencyKey,
		Attempt:        attempt,
		TraceId:        traceID,
		OccurredAt:     now,
		SentAt:         now,
	}
}

// WithTrace writes the W3C trace context of ctx's span into env (its
// trace_context, and trace_id) and returns env. Without a span in ctx env is
// left as it is, so a trace id set by NewEnvelope is kept. Call it before a
// message is signed: the signature covers the envelope.
func WithTrace(ctx context.Context, env *commonv1.Envelope) *commonv1.Envelope {
	if c := telemetry.Inject(ctx); c != nil {
		env.TraceContext = c
		env.TraceId = telemetry.TraceID(ctx)
	}
	return env
}

// TraceContext returns ctx with the remote span context of env, so that
// the consumer's spans are children of the producer's. An envelope of a
// producer that only set trace_id carries no span to be a child of: ctx is
// returned as it is.
func TraceContext(ctx context.Context, env *commonv1.Envelope) context.Context {
	return telemetry.Extract(ctx, env.GetTraceContext())
}

// Encode serialises m into a message for subject, with its type header and
// dedupeID (which may be empty).
func Encode(subject string, m proto.Message, dedupeID string) (queue.Message, error) {
	// Deterministic: a signed message's bytes are its signed bytes with
	// the signature field in its place (see libs/signing).
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return queue.Message{}, fmt.Errorf("marshal %s: %w", m.ProtoReflect().Descriptor().FullName(), err)
	}
	return queue.Message{
		Subject:  subject,
		Data:     data,
		Header:   map[string]string{queue.HeaderType: TypeName(m)},
		DedupeID: dedupeID,
	}, nil
}

// LogChunkDedupeID is the deduplication id of the LogChunk of job's
// attempt whose first line is firstSeq: the runner publishes a chunk under
// it, and the scheduler does too when it moves the lines an outcome
// carried onto the log subject, so a chunk is stored once however often it
// is sent.
func LogChunkDedupeID(jobID string, attempt uint32, firstSeq uint64) string {
	return fmt.Sprintf("%s-%d-logs-%d", jobID, attempt, firstSeq)
}

// TypeName is the value of queue.HeaderType for m.
func TypeName(m proto.Message) string { return string(m.ProtoReflect().Descriptor().FullName()) }

// Decode parses data as the message type named by header.
//
// Fields this version does not know are accepted and kept (proto3 keeps
// unknown fields, so they survive a re-encode): agents and the control plane
// are upgraded on their own schedules, and a producer one version ahead may
// add a field at any time. Protobuf's rules make such a message readable by
// older code; refusing it would dead-letter every message between two
// versions. Bytes that are not a valid encoding, and a type this version
// does not know at all, are still ErrMalformed.
func Decode(header map[string]string, data []byte) (proto.Message, error) {
	name := header[queue.HeaderType]
	if name == "" {
		return nil, fmt.Errorf("%w: no %s header", ErrMalformed, queue.HeaderType)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(protoreflect.FullName(name))
	if err != nil {
		return nil, fmt.Errorf("%w: unknown type %q", ErrMalformed, name)
	}
	m := mt.New().Interface()
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, name, err)
	}
	return m, nil
}

// DecodeAs decodes into a message of type T and fails with ErrMalformed if
// the header names another type.
func DecodeAs[T proto.Message](header map[string]string, data []byte) (T, error) {
	var zero T
	m, err := Decode(header, data)
	if err != nil {
		return zero, err
	}
	t, ok := m.(T)
	if !ok {
		return zero, fmt.Errorf("%w: got %s, want %s", ErrMalformed, TypeName(m), TypeName(zero))
	}
	return t, nil
}

// Age returns how long ago the envelope's event occurred, or 0 if unknown.
func Age(env *commonv1.Envelope, now time.Time) time.Duration {
	if env.GetOccurredAt() == nil {
		return 0
	}
	return now.Sub(env.GetOccurredAt().AsTime())
}
