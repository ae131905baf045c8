package dispatch

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/telemetry"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// startSpan starts a span of the engine about job id of t.
func startSpan(ctx context.Context, name string, t *tenants.Tenant, id string) (context.Context, trace.Span) {
	return telemetry.Tracer().Start(ctx, name, trace.WithAttributes(
		attribute.String("outpost.tenant", t.Name),
		attribute.String("outpost.job_id", id),
	))
}

// statusSpan starts the span of one job's status write: the child of the
// first event's trace context (the runner's), linked to the others'.
// Without a trace in any of them, the span belongs to no trace the job
// has; with the no-op provider it costs next to nothing either way.
func statusSpan(ctx context.Context, t *tenants.Tenant, id string, items []statusItem) (context.Context, trace.Span) {
	parent := ctx
	var links []trace.Link
	found := false
	for _, it := range items {
		if it.env == nil {
			continue
		}
		rc := events.TraceContext(ctx, it.env)
		if !found {
			parent, found = rc, true
			continue
		}
		links = append(links, trace.LinkFromContext(rc))
	}
	return telemetry.Tracer().Start(parent, "scheduler.record_status", trace.WithLinks(links...), trace.WithAttributes(
		attribute.String("outpost.tenant", t.Name),
		attribute.String("outpost.job_id", id),
		attribute.Int("outpost.events", len(items)),
	))
}
