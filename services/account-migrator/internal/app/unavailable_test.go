package app

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBrokerDownAnswers503: while the broker is gone, requests that need
// it answer 503 with Retry-After, not 500 or 400, as the OpenAPI document
// says.
func TestBrokerDownAnswers503(t *testing.T) {
	e := newEnv(t, 1)
	code, out := e.do(http.MethodPost, "/api/v1/accounts", `[{"name":"before"}]`)
	require.Equal(t, http.StatusOK, code, string(out))
	e.srv.Shutdown()

	tests := []struct {
		name, method, path, body string
	}{
		{"create", http.MethodPost, "/api/v1/accounts", `[{"name":"during"}]`},
		{"get", http.MethodGet, "/api/v1/accounts/before", ""},
		{"list", http.MethodGet, "/api/v1/accounts", ""},
		{"credentials create", http.MethodPost, "/credentials", `{"@type":"kubernetes","name":"during"}`},
		{"credentials update", http.MethodPut, "/credentials", `{"@type":"kubernetes","name":"before"}`},
		{"credentials get", http.MethodGet, "/credentials/before", ""},
		{"credentials list", http.MethodGet, "/credentials", ""},
		{"credentials type", http.MethodGet, "/credentials/type/kubernetes", ""},
		{"credentials delete", http.MethodDelete, "/credentials/before", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each waits for the broker's timeout: together.
			t.Parallel()
			req, err := http.NewRequestWithContext(context.Background(), tt.method, e.http[0]+tt.path, strings.NewReader(tt.body))
			require.NoError(t, err)
			req.Header.Set("Authorization", "Bearer "+e.token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := e.spec.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
			require.NotEmpty(t, resp.Header.Get("Retry-After"))
			require.NotContains(t, string(body), "deadline")
		})
	}
}
