package auth_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
)

type guardEnv struct {
	srv     *httptest.Server
	keys    *auth.Keys
	audit   *auth.Auditor
	router  *auth.Router
	secrets map[string]string
	now     *time.Time
}

func newGuardEnv(t *testing.T, rl auth.RateLimit) *guardEnv {
	t.Helper()
	now := time.Now()
	e := &guardEnv{keys: auth.NewKeys(&memOpener{}, nil), secrets: map[string]string{}, now: &now}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	e.audit = auth.NewAuditor(nil, log)
	g := auth.NewGuard(auth.GuardOptions{
		Verifier: auth.Credentials{Keys: e.keys}, AllowedOrigins: []string{"https://console.example.com"},
		DefaultTenant: "a", RateLimit: rl, Audit: e.audit, Logger: log, Now: func() time.Time { return *e.now },
	})
	mux := http.NewServeMux()
	e.router = g.Router(mux)
	echo := func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, auth.TenantFrom(r.Context())+" "+auth.PrincipalFrom(r.Context()).Name)
	}
	e.router.HandleFunc("GET /things", auth.RoleViewer, echo)
	e.router.HandleFunc("POST /things", auth.RoleOperator, echo)
	e.router.HandlePathTenant("PUT /tenants/{tenant}", "tenant", auth.RoleAdmin, echo)
	e.srv = httptest.NewServer(mux)
	t.Cleanup(e.srv.Close)
	for name, req := range map[string]auth.KeyRequest{
		"viewer-a":   {Tenants: []string{"a"}, Role: auth.RoleViewer},
		"operator-a": {Tenants: []string{"a"}, Role: auth.RoleOperator},
		"admin-ab":   {Tenants: []string{"a", "b"}, Role: auth.RoleAdmin},
		"admin-b":    {Tenants: []string{"b"}, Role: auth.RoleAdmin},
		"platform":   {Tenants: []string{auth.AllTenants}, Role: auth.RoleAdmin},
		"revoked":    {Tenants: []string{"a"}, Role: auth.RoleAdmin},
	} {
		req.Owner = name
		k, s, err := e.keys.Create(context.Background(), req)
		require.NoError(t, err)
		e.secrets[name] = s
		if name == "revoked" {
			_, err := e.keys.Revoke(context.Background(), k.ID)
			require.NoError(t, err)
		}
	}
	return e
}

type call struct {
	method, path, key, body, ctype string
	header                         map[string]string
}

func (e *guardEnv) do(t *testing.T, c call) (int, string, http.Header) {
	t.Helper()
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, e.srv.URL+c.path, body)
	require.NoError(t, err)
	if c.key != "" {
		s, ok := e.secrets[c.key]
		if !ok {
			s = c.key
		}
		req.Header.Set("Authorization", "Bearer "+s)
	}
	if c.ctype != "" {
		req.Header.Set("Content-Type", c.ctype)
	}
	for k, v := range c.header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(raw), resp.Header
}

func TestGuard(t *testing.T) {
	e := newGuardEnv(t, auth.RateLimit{})
	tests := []struct {
		name string
		call call
		code int
		body string
	}{
		{"no credential", call{method: "GET", path: "/things"}, 401, ""},
		{"not bearer", call{method: "GET", path: "/things", header: map[string]string{"Authorization": "Basic eDp5"}}, 401, ""},
		{"malformed key", call{method: "GET", path: "/things", key: "opk_nope"}, 401, ""},
		{"revoked key", call{method: "GET", path: "/things", key: "revoked"}, 401, ""},
		{"JWT with no issuer configured", call{method: "GET", path: "/things", key: "a.b.c"}, 401, ""},
		{"viewer reads its tenant", call{method: "GET", path: "/things", key: "viewer-a"}, 200, "a viewer-a"},
		{"viewer names its own tenant", call{method: "GET", path: "/things", key: "viewer-a", header: map[string]string{auth.TenantHeader: "a"}}, 200, "a viewer-a"},
		{"viewer names another tenant", call{method: "GET", path: "/things", key: "viewer-a", header: map[string]string{auth.TenantHeader: "b"}}, 403, ""},
		{"viewer cannot write", call{method: "POST", path: "/things", key: "viewer-a", body: "{}", ctype: "application/json"}, 403, ""},
		{"operator writes", call{method: "POST", path: "/things", key: "operator-a", body: "{}", ctype: "application/json; charset=utf-8"}, 200, "a operator-a"},
		{"multi-tenant key without header takes the default", call{method: "GET", path: "/things", key: "admin-ab"}, 200, "a admin-ab"},
		{"multi-tenant key names one of its tenants", call{method: "GET", path: "/things", key: "admin-ab", header: map[string]string{auth.TenantHeader: "b"}}, 200, "b admin-ab"},
		{"multi-tenant key names a tenant not held", call{method: "GET", path: "/things", key: "admin-ab", header: map[string]string{auth.TenantHeader: "c"}}, 403, ""},
		{"single-tenant key of another tenant", call{method: "GET", path: "/things", key: "admin-b"}, 200, "b admin-b"},
		{"platform admin names any tenant", call{method: "GET", path: "/things", key: "platform", header: map[string]string{auth.TenantHeader: "z"}}, 200, "z platform"},
		{"text/plain body", call{method: "POST", path: "/things", key: "operator-a", body: "{}", ctype: "text/plain"}, 415, ""},
		{"form body", call{method: "POST", path: "/things", key: "operator-a", body: "a=b", ctype: "application/x-www-form-urlencoded"}, 415, ""},
		{"body without a type", call{method: "POST", path: "/things", key: "operator-a", body: "{}"}, 415, ""},
		{"cross-site origin", call{method: "POST", path: "/things", key: "operator-a", body: "{}", ctype: "application/json", header: map[string]string{"Origin": "https://evil.example"}}, 403, ""},
		{"cross-site fetch metadata", call{method: "GET", path: "/things", key: "operator-a", header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, 403, ""},
		{"allowed origin", call{method: "POST", path: "/things", key: "operator-a", body: "{}", ctype: "application/json", header: map[string]string{"Origin": "https://console.example.com", "Sec-Fetch-Site": "cross-site"}}, 200, "a operator-a"},
		{"tenant admin on the path tenant", call{method: "PUT", path: "/tenants/b", key: "admin-b"}, 200, "b admin-b"},
		{"tenant admin of another tenant", call{method: "PUT", path: "/tenants/a", key: "admin-b"}, 403, ""},
		{"platform admin adds a tenant", call{method: "PUT", path: "/tenants/new", key: "platform"}, 200, "new platform"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, h := e.do(t, tt.call)
			require.Equal(t, tt.code, code, body)
			require.Len(t, h.Get(auth.RequestIDHeader), 24)
			if tt.body != "" {
				require.Equal(t, tt.body, body)
			}
			if code == 401 {
				require.Contains(t, h.Get("WWW-Authenticate"), "Bearer")
			}
			require.Empty(t, h.Get("Access-Control-Allow-Origin"), "no CORS wildcard")
		})
	}
	events := e.audit.Recent("a")
	require.NotEmpty(t, events)
	last := events[len(events)-1]
	require.Equal(t, "POST /things", last.Action)
	require.Equal(t, "operator-a", last.Name)
	require.Equal(t, "ok", last.Result())
	require.NotEmpty(t, e.audit.Recent("new"), "the tenant admin route is audited under its tenant")
}

func TestGuardRateLimit(t *testing.T) {
	e := newGuardEnv(t, auth.RateLimit{PerSecond: 1, Burst: 2})
	for range 2 {
		code, _, _ := e.do(t, call{method: "GET", path: "/things", key: "viewer-a"})
		require.Equal(t, 200, code)
	}
	code, _, h := e.do(t, call{method: "GET", path: "/things", key: "viewer-a"})
	require.Equal(t, http.StatusTooManyRequests, code)
	require.Equal(t, "1", h.Get("Retry-After"))
	code, _, _ = e.do(t, call{method: "GET", path: "/things", key: "operator-a"})
	require.Equal(t, 200, code, "the limit is per principal")
	*e.now = e.now.Add(time.Second)
	code, _, _ = e.do(t, call{method: "GET", path: "/things", key: "viewer-a"})
	require.Equal(t, 200, code, "the bucket refills")
}

func TestRouterRefusesARouteWithoutARole(t *testing.T) {
	g := auth.NewGuard(auth.GuardOptions{Verifier: auth.Credentials{}})
	r := g.Router(http.NewServeMux())
	require.Panics(t, func() { r.HandleFunc("GET /x", auth.RoleNone, func(http.ResponseWriter, *http.Request) {}) })
	r.HandleFunc("GET /y", auth.RoleViewer, func(http.ResponseWriter, *http.Request) {})
	require.Equal(t, []auth.Rule{{Pattern: "GET /y", Role: auth.RoleViewer}}, r.Rules())
}

// A front router (the console) leaves the audit of what it serves to the
// API it calls, and audits what it refuses itself.
func TestFrontRouterAuditsOnlyRefusals(t *testing.T) {
	e := newGuardEnv(t, auth.RateLimit{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	audit := auth.NewAuditor(nil, log)
	g := auth.NewGuard(auth.GuardOptions{Verifier: auth.Credentials{Keys: e.keys}, DefaultTenant: "a", Audit: audit, Logger: log})
	mux := http.NewServeMux()
	g.FrontRouter(mux).HandleFunc("POST /things", auth.RoleOperator, func(http.ResponseWriter, *http.Request) {})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e.srv = srv

	code, body, _ := e.do(t, call{method: "POST", path: "/things", key: "operator-a", body: "{}", ctype: "application/json"})
	require.Equal(t, http.StatusOK, code, body)
	require.Empty(t, audit.Recent("a"), "served: the API it calls audits it")

	code, body, _ = e.do(t, call{method: "POST", path: "/things", key: "viewer-a", body: "{}", ctype: "application/json"})
	require.Equal(t, http.StatusForbidden, code, body)
	events := audit.Recent("a")
	require.Len(t, events, 1, "refused: the front audits it")
	require.Equal(t, "viewer-a", events[0].Name)
	require.Equal(t, "denied", events[0].Result())
}
