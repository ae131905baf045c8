package e2e

import (
	"context"
	"encoding/hex"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/tests/harness"
)

// exportedSpan is what the test looks at in a span a service exported.
type exportedSpan struct {
	service, name           string
	traceID, spanID, parent string
}

// otlpCollector is an OTLP/HTTP trace receiver on 127.0.0.1: it keeps the
// spans the services export.
type otlpCollector struct {
	mu    sync.Mutex
	spans []exportedSpan
}

func (c *otlpCollector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err != nil || r.URL.Path != "/v1/traces" || proto.Unmarshal(body, &req) != nil {
		http.Error(w, "bad export", http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans = append(c.spans, exportedSpan{service: service, name: s.GetName(),
					traceID: hex.EncodeToString(s.GetTraceId()), spanID: hex.EncodeToString(s.GetSpanId()), parent: hex.EncodeToString(s.GetParentSpanId())})
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(nil)
}

// childrenOf returns the spans of trace whose parent is span.
func (c *otlpCollector) childrenOf(trace, span string) []exportedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []exportedSpan
	for _, s := range c.spans {
		if s.traceID == trace && s.parent == span {
			out = append(out, s)
		}
	}
	return out
}

// named returns the spans of trace called name.
func (c *otlpCollector) named(trace, name string) []exportedSpan {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []exportedSpan
	for _, s := range c.spans {
		if s.traceID == trace && s.name == name {
			out = append(out, s)
		}
	}
	return out
}

// TestTraceSpansTheStack: with OTEL_EXPORTER_OTLP_ENDPOINT set, a job
// submitted with a W3C traceparent is one trace across the processes: the
// API request (child of the client's span), the scheduler's submit and dispatch, the runner's claim and task (children of
// the dispatch, through the JobDispatched's envelope) and the scheduler's
// status write (the child of the runner's task).
func TestTraceSpansTheStack(t *testing.T) {
	col := &otlpCollector{}
	srv := httptest.NewServer(col)
	t.Cleanup(srv.Close)
	otel := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": srv.URL, "OTEL_BSP_SCHEDULE_DELAY": "100"}
	renv := maps.Clone(runnerEnv)
	maps.Copy(renv, otel)
	s := harness.StartStack(t, harness.StackOptions{SchedulerEnv: otel, RunnerEnv: renv})
	s.StartRunner("runner-1", nil)
	c := s.Client()

	const clientTrace, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	api := testenv.Client{Base: c.Base, Token: c.Token}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code, _, body, err := api.SendHeader(ctx, http.MethodPost, "/api/v1/jobs", harness.Command("default", "echo", "traced"),
		map[string]string{"X-Outpost-Tenant": "default", "traceparent": "00-" + clientTrace + "-" + clientSpan + "-01"})
	require.NoError(t, err)
	require.Contains(t, []int{http.StatusCreated, http.StatusServiceUnavailable}, code, string(body))
	require.Eventually(t, func() bool {
		subs := col.named(clientTrace, "scheduler.submit")
		return len(subs) > 0
	}, 30*time.Second, 50*time.Millisecond, "the scheduler exported no submit span of the client's trace")

	// The API's server span is the child of the client's span, and the
	// submit the child of the API's span.
	var apiSpans []exportedSpan
	require.Eventually(t, func() bool {
		apiSpans = col.childrenOf(clientTrace, clientSpan)
		return len(apiSpans) == 1
	}, 30*time.Second, 50*time.Millisecond, "no API span is the child of the client's traceparent")
	require.Equal(t, "scheduler", apiSpans[0].service)
	require.Equal(t, apiSpans[0].spanID, col.named(clientTrace, "scheduler.submit")[0].parent, "the submit is the child of the API request")

	var dispatch, claim, task, status []exportedSpan
	require.Eventually(t, func() bool {
		dispatch, claim = col.named(clientTrace, "scheduler.dispatch"), col.named(clientTrace, "runner.claim")
		task, status = col.named(clientTrace, "runner.task"), col.named(clientTrace, "scheduler.record_status")
		return len(dispatch) == 1 && len(claim) == 1 && len(task) == 1 && len(status) >= 1
	}, 60*time.Second, 100*time.Millisecond, "the trace never spanned the stack: %d dispatch, %d claim, %d task, %d status spans",
		len(dispatch), len(claim), len(task), len(status))
	require.Equal(t, "scheduler", dispatch[0].service)
	require.NotEqual(t, "scheduler", claim[0].service, "the runner's spans come from the runner")
	require.Equal(t, dispatch[0].spanID, claim[0].parent, "the claim is the child of the dispatch")
	require.Equal(t, claim[0].spanID, task[0].parent, "the task is the child of the claim")
	for _, st := range status {
		require.Equal(t, task[0].spanID, st.parent, "a status write is the child of the runner's task")
	}
}
