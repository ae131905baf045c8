package app_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/telemetry"
	"github.com/outposthq/outpost/libs/telemetry/telemetrytest"
	"github.com/outposthq/outpost/libs/testenv"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// TestTraceFromAPIToRunnerAndBack follows one W3C trace: the client's
// traceparent on POST /api/v1/jobs, the API's server span, the submit, the
// record made by the submit consumer, the dispatch whose JobDispatched
// carries the trace to the runner, and the status write the runner's
// report (sent in the runner's span) makes.
func TestTraceFromAPIToRunnerAndBack(t *testing.T) {
	exp := telemetrytest.Record(t)
	e := newEnv(t)
	r := e.runner("default", "gpu")
	// The API as the service serves it (libs/service wraps it the same way).
	url := serveTest(t, telemetry.Handler(e.sched))

	const (
		clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
		clientSpan  = "00f067aa0ba902b7"
	)
	api := testenv.Client{Base: url, Token: e.token, HTTP: e.http}
	code, _, out, err := api.SendHeader(e.ctx, "POST", "/api/v1/jobs", noopJob(map[string]any{"pool": "gpu"}),
		map[string]string{"X-Outpost-Tenant": "default", "traceparent": "00-" + clientTrace + "-" + clientSpan + "-01"})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, code, string(out))
	j := decode[jobView](t, out)
	require.Equal(t, clientTrace, decode[map[string]any](t, out)["trace_id"], "the record names the client's trace")

	_, m := r.next(t)
	require.Equal(t, j.ID, m.JobId)
	require.Equal(t, clientTrace, m.GetEnvelope().GetTraceId())
	// What the runner does with the dispatch: its spans are children of
	// the dispatch's, and its status reports carry its own.
	runCtx, run := otel.Tracer("runner-test").Start(events.TraceContext(e.ctx, m.GetEnvelope()), "runner.task")
	st := &jobsv1.JobStatus{
		Envelope: events.WithTrace(runCtx, events.NewEnvelope("default", 1, "", "")),
		JobId:    j.ID, State: jobsv1.JobState_JOB_STATE_SUCCEEDED, RunnerId: "runner-1",
		AttemptToken: m.GetAttemptToken(), Result: &jobsv1.JobResult{ExitCode: 0},
	}
	run.End()
	e.publish(e.subjects.JobStatus("default", j.ID), st, "")
	e.waitState("default", j.ID, "SUCCEEDED")
	require.Eventually(t, func() bool {
		for _, s := range exp.GetSpans() {
			if s.Name == "scheduler.record_status" {
				return true
			}
		}
		return false
	}, waitFor, tick)

	var servers []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.SpanKind == trace.SpanKindServer {
			servers = append(servers, s)
		}
	}
	require.Len(t, servers, 1, "one API request was traced")
	server := servers[0]
	submit := telemetrytest.One(t, exp, "scheduler.submit")
	record := telemetrytest.One(t, exp, "scheduler.record")
	dispatch := telemetrytest.One(t, exp, "scheduler.dispatch")
	runner := telemetrytest.One(t, exp, "runner.task")
	status := telemetrytest.One(t, exp, "scheduler.record_status")
	tests := []struct {
		name   string
		span   tracetest.SpanStub
		parent string
	}{
		{"server span is the child of the client's", server, clientSpan},
		{"submit is the child of the request", submit, server.SpanContext.SpanID().String()},
		{"record is the child of the submit", record, submit.SpanContext.SpanID().String()},
		{"dispatch is the child of the record", dispatch, record.SpanContext.SpanID().String()},
		{"runner is the child of the dispatch", runner, dispatch.SpanContext.SpanID().String()},
		{"status write is the child of the runner", status, runner.SpanContext.SpanID().String()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, clientTrace, tt.span.SpanContext.TraceID().String())
			require.Equal(t, tt.parent, tt.span.Parent.SpanID().String())
		})
	}
	sc := trace.SpanContextFromContext(events.TraceContext(context.Background(), m.GetEnvelope()))
	require.Equal(t, dispatch.SpanContext.SpanID(), sc.SpanID(), "the JobDispatched carries the dispatch span")
}
