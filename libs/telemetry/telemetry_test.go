package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/telemetry"
)

func TestEnabled(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want bool
	}{
		{name: "nothing set", want: false},
		{name: "endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, want: true},
		{name: "traces endpoint", env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, want: true},
		{name: "otlp exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: true},
		{name: "none wins over an endpoint", env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, want: false},
		{name: "sdk disabled", env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, telemetry.Enabled(func(k string) string { return tt.env[k] }))
		})
	}
}

// restoreGlobals puts back the global tracer provider Setup replaces.
func restoreGlobals(t *testing.T) {
	prev := otel.GetTracerProvider()
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
}

func TestSetupRefusesWhatItCannotHonour(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{name: "exporter", env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}},
		{name: "protocol", env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restoreGlobals(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			_, err := telemetry.Setup(context.Background(), "test")
			require.ErrorIs(t, err, telemetry.ErrConfig)
		})
	}
}

func TestSetupOffByDefault(t *testing.T) {
	restoreGlobals(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	shutdown, err := telemetry.Setup(context.Background(), "test")
	require.NoError(t, err)
	_, span := telemetry.Tracer().Start(context.Background(), "op")
	require.False(t, span.IsRecording(), "the no-op provider is kept")
	span.End()
	require.NoError(t, shutdown(context.Background()))
}

// TestSetupExportsOverOTLPHTTP: with an endpoint, spans reach an OTLP/HTTP
// collector at its /v1/traces when the provider shuts down.
func TestSetupExportsOverOTLPHTTP(t *testing.T) {
	restoreGlobals(t)
	var got atomic.Int32
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
			got.Add(1)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(collector.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "")

	shutdown, err := telemetry.Setup(context.Background(), "test")
	require.NoError(t, err)
	_, span := telemetry.Tracer().Start(context.Background(), "op")
	require.True(t, span.IsRecording())
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, shutdown(ctx))
	require.Equal(t, int32(1), got.Load())
}

func TestEnvelopeCarriesTrace(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "producer")
	defer span.End()

	tests := []struct {
		name      string
		ctx       context.Context
		carrier   map[string]string
		wantTrace string
		wantSpan  string
	}{
		{name: "span in context", ctx: ctx, wantTrace: span.SpanContext().TraceID().String(), wantSpan: span.SpanContext().SpanID().String()},
		{name: "no span keeps the legacy trace id", ctx: context.Background(), wantTrace: ""},
		{name: "malformed traceparent is ignored", ctx: context.Background(), carrier: map[string]string{"traceparent": "00-xyz-abc-01"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := events.NewEnvelope("acme", 1, "k", "legacy")
			if tt.carrier != nil {
				env.TraceContext = tt.carrier
			}
			events.WithTrace(tt.ctx, env)
			sc := trace.SpanContextFromContext(events.TraceContext(context.Background(), env))
			if tt.wantSpan == "" {
				require.False(t, sc.IsValid())
				require.Equal(t, "legacy", env.GetTraceId())
				return
			}
			require.True(t, sc.IsRemote())
			require.Equal(t, tt.wantTrace, sc.TraceID().String())
			require.Equal(t, tt.wantSpan, sc.SpanID().String())
			require.Equal(t, tt.wantTrace, env.GetTraceId())
		})
	}
}

func TestLogHandlerAddsTraceID(t *testing.T) {
	tp := sdktrace.NewTracerProvider()
	t.Cleanup(func() { require.NoError(t, tp.Shutdown(context.Background())) })
	ctx, span := tp.Tracer("test").Start(context.Background(), "op")
	defer span.End()
	var buf bytes.Buffer
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil))).With("service", "test")

	tests := []struct {
		name string
		ctx  context.Context
		want any
	}{
		{name: "with a span", ctx: ctx, want: span.SpanContext().TraceID().String()},
		{name: "without", ctx: context.Background(), want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf.Reset()
			log.InfoContext(tt.ctx, "hello")
			var rec map[string]any
			require.NoError(t, json.Unmarshal(buf.Bytes(), &rec))
			require.Equal(t, tt.want, rec["trace_id"])
			require.Equal(t, "test", rec["service"])
		})
	}
}
