package ingest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"

	"github.com/outposthq/outpost/libs/telemetry/telemetrytest"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// TestSinkBatchSpans: each batch a sink writes is a span, the child of the
// task's, with the number of records it held.
func TestSinkBatchSpans(t *testing.T) {
	exp := telemetrytest.Record(t)

	db, source := sinkSource(t)
	dir := t.TempDir()
	writeSecret(t, dir, "PG_PASSWORD", db.Password)
	pub := &publisher{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx, task := otel.Tracer("runner-test").Start(ctx, "runner.task")
	out := newOutput()
	res := newTask(dir, pub).Run(ctx, tasks.Input{Tenant: "acme", JobID: "job-1", Attempt: 1,
		Spec: ingestSpec(source + "sink: {type: outpost, config: {batch_size: 3}}\n")}, out)
	task.End()
	require.NoError(t, res.Err, out.text())

	var sizes []int64
	for _, s := range telemetrytest.Named(exp, "runner.sink_batch") {
		require.Equal(t, task.SpanContext().TraceID(), s.SpanContext.TraceID())
		require.Equal(t, task.SpanContext().SpanID(), s.Parent.SpanID())
		for _, a := range s.Attributes {
			if a.Key == "outpost.records" {
				sizes = append(sizes, a.Value.AsInt64())
			}
		}
	}
	require.Equal(t, []int64{3, 1}, sizes, "one span per batch of the sink")
}
