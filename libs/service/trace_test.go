package service

import (
	"context"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/telemetry"
	"github.com/outposthq/outpost/libs/testenv"
)

// traceEcho answers with the trace id its request's context holds.
type traceEcho struct{}

func (traceEcho) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.WriteString(w, telemetry.TraceID(r.Context()))
}
func (traceEcho) Ready() error { return nil }

// TestRuntimeAPITakesTraceparent: the API listener hands the service a
// request whose context continues the client's W3C trace, and one without
// a traceparent none (tracing is off: the no-op provider starts no trace).
func TestRuntimeAPITakesTraceparent(t *testing.T) {
	apiAddr := testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	rt, err := Start(ctx, Options{Name: "svc", APIAddr: apiAddr, APIPaths: []string{"/api/"}, Grace: time.Second})
	require.NoError(t, err)
	rt.Set(traceEcho{})
	t.Cleanup(func() {
		cancel()
		require.NoError(t, rt.Wait())
	})

	tests := []struct {
		name        string
		traceparent string
		want        string
	}{
		{name: "client's trace", traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", want: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{name: "no traceparent", want: ""},
		{name: "malformed traceparent", traceparent: "00-nothex-00f067aa0ba902b7-01", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, "http://"+apiAddr+"/api/v1/x", nil)
			require.NoError(t, err)
			if tt.traceparent != "" {
				req.Header.Set("traceparent", tt.traceparent)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			require.Equal(t, tt.want, string(body))
		})
	}
}
