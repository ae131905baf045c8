package auth

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	auditv1 "github.com/outposthq/outpost/proto/outpost/audit/v1"
)

// Publisher publishes a message (queue.Broker has this method).
type Publisher interface {
	Publish(ctx context.Context, msg queue.Message) error
}

// QueueAudit returns a Publish that puts each event on its tenant's audit
// subject, subjects.Audit(tenant, service), as an AuditEvent deduplicated
// by request id.
func QueueAudit(pub Publisher, subjects queue.Subjects, service string) Publish {
	return func(ctx context.Context, e Event) error {
		env := events.NewEnvelope(e.Tenant, 0, e.RequestID, "")
		env.OccurredAt = timestamppb.New(e.Time)
		m := &auditv1.AuditEvent{
			Envelope: env, Principal: e.Principal, Name: e.Name, Action: e.Action, Target: e.Target,
			Result: e.Result(), Status: int32(e.Status), RequestId: e.RequestID, Service: service,
		}
		msg, err := events.Encode(subjects.Audit(e.Tenant, service), m, "audit-"+e.RequestID)
		if err != nil {
			return err
		}
		if err := pub.Publish(ctx, msg); err != nil {
			return fmt.Errorf("publish audit event: %w", err)
		}
		return nil
	}
}

// DecodeAudit reads an event QueueAudit published.
func DecodeAudit(m queue.StreamMessage) (Event, error) {
	a, err := events.DecodeAs[*auditv1.AuditEvent](m.Header, m.Data)
	if err != nil {
		return Event{}, fmt.Errorf("decode audit event: %w", err)
	}
	return Event{
		Time: a.GetEnvelope().GetOccurredAt().AsTime(), RequestID: a.GetRequestId(), Principal: a.GetPrincipal(),
		Name: a.GetName(), Tenant: a.GetEnvelope().GetTenant(), Action: a.GetAction(), Target: a.GetTarget(),
		Status: int(a.GetStatus()), Service: a.GetService(),
	}, nil
}
