package telemetry

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// Handler wraps an API's handler so that each request gets a server span,
// the child of the W3C traceparent the client sent, if any. The span is
// named by OpenTelemetry's HTTP conventions (method and the ServeMux
// pattern that served the request); the handlers start their own spans,
// named after what they do, as its children.
func Handler(h http.Handler) http.Handler {
	return otelhttp.NewHandler(h, "api", otelhttp.WithPropagators(Propagator))
}
