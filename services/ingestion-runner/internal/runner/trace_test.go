package runner

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/telemetry/telemetrytest"
)

// TestTraceFromDispatchToStatus follows the trace a JobDispatched carries:
// the runner's claim is the child of the dispatch's span, the task the
// child of the claim, and the status reports carry the task's span, so the
// scheduler's record of them joins the same trace.
func TestTraceFromDispatchToStatus(t *testing.T) {
	exp := telemetrytest.Record(t)

	tests := []struct {
		name   string
		traced bool
	}{
		{name: "dispatch with a trace context", traced: true},
		{name: "dispatch without one starts its own trace", traced: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			exp.Reset()
			h := startRunner(t, nil)
			job := noopJob("traced", 0, "")
			var dispatch trace.SpanContext
			if tt.traced {
				ctx, span := otel.Tracer("scheduler-test").Start(context.Background(), "scheduler.dispatch")
				events.WithTrace(ctx, job.Envelope)
				dispatch = span.SpanContext()
				span.End()
			}
			d := h.b.deliverJob(t, job, 1)
			op, _, _ := d.wait(t)
			require.Equal(t, "ack", op)

			var claim, task tracetest.SpanStub
			require.Eventually(t, func() bool {
				for _, s := range exp.GetSpans() {
					switch s.Name {
					case "runner.claim":
						claim = s
					case "runner.task":
						task = s
					}
				}
				return claim.SpanContext.IsValid() && task.SpanContext.IsValid()
			}, 10*time.Second, 10*time.Millisecond)
			if tt.traced {
				require.Equal(t, dispatch.TraceID(), claim.SpanContext.TraceID())
				require.Equal(t, dispatch.SpanID(), claim.Parent.SpanID())
			} else {
				require.False(t, claim.Parent.IsValid(), "the claim is a root span")
			}
			require.Equal(t, claim.SpanContext.TraceID(), task.SpanContext.TraceID())
			require.Equal(t, claim.SpanContext.SpanID(), task.Parent.SpanID())

			sts := h.b.statuses(t, job.GetJobId())
			require.Len(t, sts, 2)
			for _, st := range sts {
				sc := trace.SpanContextFromContext(events.TraceContext(context.Background(), st.GetEnvelope()))
				require.Equal(t, task.SpanContext.TraceID(), sc.TraceID(), st.GetState().String())
				require.Equal(t, task.SpanContext.SpanID(), sc.SpanID(), st.GetState().String())
				require.Equal(t, task.SpanContext.TraceID().String(), st.GetEnvelope().GetTraceId())
			}
		})
	}
}
