package runner

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/outposthq/outpost/libs/telemetry"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// startJobSpan starts a span of the runner about one attempt of job.
func startJobSpan(ctx context.Context, name string, job *jobsv1.JobDispatched, attempt int) (context.Context, trace.Span) {
	return telemetry.Tracer().Start(ctx, name, trace.WithAttributes(
		attribute.String("outpost.tenant", job.GetEnvelope().GetTenant()),
		attribute.String("outpost.job_id", job.GetJobId()),
		attribute.String("outpost.pool", job.GetSpec().GetPool()),
		attribute.Int("outpost.attempt", attempt),
	))
}
