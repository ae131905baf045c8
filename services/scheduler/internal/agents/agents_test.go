package agents_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/apispec/apispectest"
	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/natsauth"
	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/services/scheduler/internal/agents"
	"github.com/outposthq/outpost/services/scheduler/internal/openapi"
)

// TestMain fails the run when the tests leave goroutines behind.
func TestMain(m *testing.M) { testenv.VerifyNoLeaks(m) }

// as serves h with p as the request's principal (nil: none).
func as(h http.Handler, p *auth.Principal) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p != nil {
			r = r.WithContext(auth.WithPrincipal(r.Context(), p))
		}
		h.ServeHTTP(w, r)
	})
}

// call serves one request and checks it and its answer against the
// scheduler's OpenAPI document.
func call(t *testing.T, h http.Handler, method, path, body string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	req := httptest.NewRequestWithContext(t.Context(), method, path, bytes.NewBufferString(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	h.ServeHTTP(rec, req)
	var reqBody []byte
	if body != "" {
		reqBody = []byte(body)
	}
	apispectest.New(t, openapi.Spec).Check(req.Clone(t.Context()), reqBody, rec.Code, rec.Header(), rec.Body.Bytes())
	var out map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), rec.Body.String())
	return rec.Code, out
}

// TestIssueAndRevoke: an admin of the tenant gets credentials that
// connect to the broker; DELETE cuts the agent off within seconds.
func TestIssueAndRevoke(t *testing.T) {
	a, err := natsauth.Open(t.TempDir())
	require.NoError(t, err)
	srv := natstest.RunServerWith(t, natsembed.Options{Auth: a.ServerAuth()})
	h := agents.New(a, func(ctx context.Context) error { return a.PushTo(ctx, srv.ClientURL()) }, "", "", slog.New(slog.DiscardHandler))
	mux := http.NewServeMux()
	h.RegisterUnguarded(mux)
	adminA := as(mux, &auth.Principal{Subject: "alice", Tenants: map[string]auth.Role{"a": auth.RoleAdmin, "b": auth.RoleViewer}})

	refused := []struct {
		name    string
		handler http.Handler
		body    string
		code    int
	}{
		{"no principal", as(mux, nil), `{"role":"runner","tenant":"a","pool":"p"}`, http.StatusUnauthorized},
		{"viewer of the tenant", adminA, `{"role":"runner","tenant":"b","pool":"p"}`, http.StatusForbidden},
		{"unknown role", adminA, `{"role":"scheduler","tenant":"a"}`, http.StatusBadRequest},
		{"runner without pool", adminA, `{"role":"runner","tenant":"a"}`, http.StatusBadRequest},
		{"wildcard pool", adminA, `{"role":"runner","tenant":"a","pool":">"}`, http.StatusBadRequest},
		{"expiry too long", adminA, `{"role":"runner","tenant":"a","pool":"p","expiry":"9000h"}`, http.StatusBadRequest},
		{"unknown field", adminA, `{"role":"runner","tenant":"a","pool":"p","admin":true}`, http.StatusBadRequest},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			code, _ := call(t, c.handler, http.MethodPost, "/api/v1/agents", c.body)
			require.Equal(t, c.code, code)
		})
	}

	code, out := call(t, adminA, http.MethodPost, "/api/v1/agents", `{"role":"runner","tenant":"a","pool":"p","expiry":"1h"}`)
	require.Equal(t, http.StatusCreated, code, out)
	id := out["id"].(string)
	expires, err := time.Parse(time.RFC3339, out["expires_at"].(string))
	require.NoError(t, err)
	require.WithinDuration(t, time.Now().Add(time.Hour), expires, time.Minute)
	path := filepath.Join(t.TempDir(), "runner.creds")
	require.NoError(t, os.WriteFile(path, []byte(out["credentials"].(string)), 0o600))
	nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(path))
	require.NoError(t, err)
	t.Cleanup(nc.Close)

	// Only an admin of the agent's tenant may revoke it.
	code, _ = call(t, as(mux, &auth.Principal{Subject: "bob", Tenants: map[string]auth.Role{"b": auth.RoleAdmin}}), http.MethodDelete, "/api/v1/agents/"+id, "")
	require.Equal(t, http.StatusForbidden, code)
	code, _ = call(t, adminA, http.MethodDelete, "/api/v1/agents/UNKNOWN", "")
	require.Equal(t, http.StatusNotFound, code)

	code, out = call(t, adminA, http.MethodDelete, "/api/v1/agents/"+id, "")
	require.Equal(t, http.StatusOK, code, out)
	require.Equal(t, true, out["revoked"])
	require.Eventually(t, func() bool { return !nc.IsConnected() }, 10*time.Second, 20*time.Millisecond)
	_, err = nats.Connect(srv.ClientURL(), nats.UserCredentials(path))
	require.ErrorIs(t, err, nats.ErrAuthorization)
}
