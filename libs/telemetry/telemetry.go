// Package telemetry sets up OpenTelemetry tracing for Outpost's services and
// carries trace context across the queue.
//
// Tracing is off unless the standard OTEL_* variables ask for it: Setup
// installs an OTLP exporter when OTEL_TRACES_EXPORTER is "otlp", or when it
// is unset and OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Otherwise the global tracer
// provider stays OpenTelemetry's no-op one and spans cost next to nothing;
// the W3C trace context of a request is still carried to the events it
// causes, so a trace id given by a client follows its job either way.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/outposthq/outpost/libs/version"
)

// ErrConfig is returned by Setup for OTEL_* variables it cannot honour (an
// exporter or protocol it does not support).
var ErrConfig = errors.New("invalid OpenTelemetry configuration")

// Propagator is the W3C trace context propagator every service uses on its
// API and on the event envelope. Setup also installs it as the global one.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Tracer is the tracer of Outpost's own spans, from the global provider.
func Tracer() trace.Tracer {
	return otel.Tracer("github.com/outposthq/outpost")
}

// Enabled reports whether the environment asks for traces to be exported
// (see the package documentation).
func Enabled(getenv func(string) string) bool {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") {
		return false
	}
	switch strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER")) {
	case "":
		return getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
	case "none":
		return false
	default:
		return true
	}
}

// Setup installs the global propagator and, when the environment asks for
// it, a tracer provider that exports to OTLP with a resource naming
// service (OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override and add).
// The returned shutdown flushes the spans not yet exported; it is a no-op
// when tracing is off. The exporter reads its endpoint, headers, timeout and
// TLS from the standard OTEL_EXPORTER_OTLP_* variables and the sampler
// OTEL_TRACES_SAMPLER; OTEL_EXPORTER_OTLP_PROTOCOL (or its _TRACES_ form)
// chooses "http/protobuf" (the default) or "grpc".
func Setup(ctx context.Context, service string) (shutdown func(context.Context) error, err error) {
	otel.SetTextMapPropagator(Propagator)
	noop := func(context.Context) error { return nil }
	if !Enabled(os.Getenv) {
		return noop, nil
	}
	if exp := strings.TrimSpace(os.Getenv("OTEL_TRACES_EXPORTER")); exp != "" && exp != "otlp" {
		return noop, fmt.Errorf("%w: OTEL_TRACES_EXPORTER %q is not supported (use \"otlp\" or \"none\")", ErrConfig, exp)
	}
	protocol := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
	if protocol == "" {
		protocol = os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL")
	}
	var exporter sdktrace.SpanExporter
	switch protocol {
	case "", "http/protobuf":
		exporter, err = otlptracehttp.New(ctx)
	case "grpc":
		exporter, err = otlptracegrpc.New(ctx)
	default:
		return noop, fmt.Errorf("%w: OTLP protocol %q is not supported (use \"http/protobuf\" or \"grpc\")", ErrConfig, protocol)
	}
	if err != nil {
		return noop, fmt.Errorf("create OTLP trace exporter: %w", err)
	}
	res, err := resource.Merge(
		resource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceVersion(version.Get())),
		// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win.
		resource.Environment(),
	)
	if err != nil {
		return noop, fmt.Errorf("%w: resource: %w", ErrConfig, err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	return tp.Shutdown, nil
}

// Inject returns the W3C trace context of ctx's span as a carrier map, or
// nil when ctx has no valid span context.
func Inject(ctx context.Context) map[string]string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	c := propagation.MapCarrier{}
	Propagator.Inject(ctx, c)
	return c
}

// Extract returns ctx with the remote span context that carrier holds, if
// any; a missing or malformed traceparent leaves ctx as it is.
func Extract(ctx context.Context, carrier map[string]string) context.Context {
	if len(carrier) == 0 {
		return ctx
	}
	return Propagator.Extract(ctx, propagation.MapCarrier(carrier))
}

// TraceID returns the hex trace id of ctx's span, or "" when there is none.
func TraceID(ctx context.Context) string {
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		return sc.TraceID().String()
	}
	return ""
}

// End ends span, recording err (if any) as its error status.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
