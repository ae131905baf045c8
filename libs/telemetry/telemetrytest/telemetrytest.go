// Package telemetrytest records the spans a test's code ends, in memory.
package telemetrytest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// Record installs, as the global tracer provider, one that keeps every
// ended span in the returned exporter, and puts the previous provider
// back when the test ends.
func Record(t testing.TB) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(prev)
		require.NoError(t, tp.Shutdown(context.Background()))
	})
	return exp
}

// Named returns the ended spans called name, in the order they ended.
func Named(exp *tracetest.InMemoryExporter, name string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range exp.GetSpans() {
		if s.Name == name {
			out = append(out, s)
		}
	}
	return out
}

// One returns the one ended span called name, failing the test if there
// is not exactly one.
func One(t testing.TB, exp *tracetest.InMemoryExporter, name string) tracetest.SpanStub {
	t.Helper()
	found := Named(exp, name)
	require.Len(t, found, 1, "spans named %s", name)
	return found[0]
}
