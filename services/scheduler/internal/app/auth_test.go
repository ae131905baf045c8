package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/auth/oidctest"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/services/scheduler/internal/app"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

// routeRoles is the scheduler's route table, as the README states it:
// every registered route must have its row, and every row its route.
var routeRoles = map[string]auth.Role{
	"POST /api/v1/jobs":                    auth.RoleOperator,
	"GET /api/v1/jobs":                     auth.RoleViewer,
	"GET /api/v1/jobs/{id}":                auth.RoleViewer,
	"GET /api/v1/jobs/{id}/logs":           auth.RoleViewer,
	"POST /api/v1/jobs/{id}/cancel":        auth.RoleOperator,
	"GET /api/v1/jobs/{id}/explain":        auth.RoleViewer,
	"GET /api/v1/jobs/{id}/results":        auth.RoleViewer,
	"GET /api/v1/metadata/datasets":        auth.RoleViewer,
	"POST /api/v1/sources":                 auth.RoleOperator,
	"GET /api/v1/sources":                  auth.RoleViewer,
	"GET /api/v1/sources/{id}":             auth.RoleViewer,
	"PATCH /api/v1/sources/{id}":           auth.RoleOperator,
	"DELETE /api/v1/sources/{id}":          auth.RoleOperator,
	"POST /api/v1/sources/{id}/run":        auth.RoleOperator,
	"GET /api/v1/sources/{id}/runs":        auth.RoleViewer,
	"GET /api/v1/pools":                    auth.RoleViewer,
	"GET /api/v1/runners":                  auth.RoleViewer,
	"POST /api/v1/pools/{pool}/pause":      auth.RoleOperator,
	"POST /api/v1/pools/{pool}/resume":     auth.RoleOperator,
	"GET /api/v1/deadletters":              auth.RoleViewer,
	"GET /api/v1/deadletters/{id}":         auth.RoleViewer,
	"POST /api/v1/deadletters/{id}/replay": auth.RoleOperator,
	"DELETE /api/v1/deadletters/{id}":      auth.RoleOperator,
	"GET /api/v1/tenants":                  auth.RoleViewer,
	"PUT /api/v1/tenants/{tenant}":         auth.RoleAdmin,
	"POST /api/v1/keys":                    auth.RoleAdmin,
	"GET /api/v1/keys":                     auth.RoleAdmin,
	"DELETE /api/v1/keys/{id}":             auth.RoleAdmin,
	"GET /api/v1/audit":                    auth.RoleAdmin,
	"GET /openapi.json":                    auth.RoleViewer,
	"/api/":                                auth.RoleViewer,
	// The directory of users, teams, projects, environments and
	// deployments (package directory).
	"GET /api/v1/users":                                            auth.RoleViewer,
	"GET /api/v1/users/{user}":                                     auth.RoleViewer,
	"PUT /api/v1/users/{user}":                                     auth.RoleAdmin,
	"DELETE /api/v1/users/{user}":                                  auth.RoleAdmin,
	"GET /api/v1/teams":                                            auth.RoleViewer,
	"GET /api/v1/teams/{team}":                                     auth.RoleViewer,
	"PUT /api/v1/teams/{team}":                                     auth.RoleAdmin,
	"DELETE /api/v1/teams/{team}":                                  auth.RoleAdmin,
	"PUT /api/v1/teams/{team}/members/{user}":                      auth.RoleAdmin,
	"DELETE /api/v1/teams/{team}/members/{user}":                   auth.RoleAdmin,
	"GET /api/v1/projects":                                         auth.RoleViewer,
	"GET /api/v1/projects/{project}":                               auth.RoleViewer,
	"PUT /api/v1/projects/{project}":                               auth.RoleAdmin,
	"DELETE /api/v1/projects/{project}":                            auth.RoleAdmin,
	"PUT /api/v1/projects/{project}/admins/{user}":                 auth.RoleAdmin,
	"DELETE /api/v1/projects/{project}/admins/{user}":              auth.RoleAdmin,
	"GET /api/v1/environments":                                     auth.RoleViewer,
	"GET /api/v1/environments/{environment}":                       auth.RoleViewer,
	"PUT /api/v1/environments/{environment}":                       auth.RoleAdmin,
	"DELETE /api/v1/environments/{environment}":                    auth.RoleAdmin,
	"PUT /api/v1/environments/{environment}/projects/{project}":    auth.RoleAdmin,
	"DELETE /api/v1/environments/{environment}/projects/{project}": auth.RoleAdmin,
	"GET /api/v1/deployments":                                      auth.RoleViewer,
	"GET /api/v1/deployments/{pool}":                               auth.RoleViewer,
	"PUT /api/v1/deployments/{pool}":                               auth.RoleOperator,
	"DELETE /api/v1/deployments/{pool}":                            auth.RoleAdmin,
}

// TestEveryRouteHasARule walks the registered routes: a route added
// without its row in routeRoles (and the README) fails here.
func TestEveryRouteHasARule(t *testing.T) {
	e := newEnv(t)
	seen := map[string]bool{}
	for _, r := range e.sched.Rules() {
		want, ok := routeRoles[r.Pattern]
		require.True(t, ok, "route %q has no row in the route table", r.Pattern)
		require.Equal(t, want, r.Role, "route %q", r.Pattern)
		seen[r.Pattern] = true
	}
	for p := range routeRoles {
		require.True(t, seen[p], "the route table names %q, which is not registered", p)
	}
}

// authEnv is a scheduler trusting an in-process OIDC issuer, with a job and
// an API key in tenant default that no other tenant may see.
type authEnv struct {
	*env
	issuer *oidctest.Issuer
	jobID  string
	keyID  string
	keys   map[string]string // principal name -> API key
}

const audience = "outpost-api"

// dataMarker is in the job of tenant default: no other tenant's answer may
// carry it.
const dataMarker = "marker-of-tenant-default"

func newAuthEnv(t *testing.T, edit ...func(*config.Config)) *authEnv {
	t.Helper()
	is := oidctest.New(t, jose.RS256)
	e := newEnv(t, append([]func(*config.Config){func(c *config.Config) {
		c.Auth.OIDC = []auth.IssuerConfig{{Issuer: is.URL, Audience: audience, TenantClaim: "tenant", RoleClaim: "role",
			Groups: []auth.GroupGrant{{Group: "acme-admins", Tenant: "acme", Role: "admin"}}}}
	}}, edit...)...)
	a := &authEnv{env: e, issuer: is, keys: map[string]string{}}
	a.jobID = e.submit("default", noopJob(map[string]any{"id": "secret-default-job", "labels": map[string]string{"secret": dataMarker}})).ID
	for _, k := range []struct {
		name, tenant, role string
	}{{"default-viewer", "default", "viewer"}, {"acme-admin", "acme", "admin"}, {"default-revoked", "default", "admin"}} {
		code, out := e.do("POST", "/api/v1/keys", "", map[string]any{"owner": k.name, "tenants": []string{k.tenant}, "role": k.role})
		require.Equal(t, http.StatusCreated, code, string(out))
		var created struct {
			Key    auth.Key `json:"key"`
			Secret string   `json:"secret"`
		}
		require.NoError(t, json.Unmarshal(out, &created))
		a.keys[k.name] = created.Secret
		if k.name == "default-viewer" {
			a.keyID = created.Key.ID
		}
		if k.name == "default-revoked" {
			code, out := e.do("DELETE", "/api/v1/keys/"+created.Key.ID, "", nil)
			require.Equal(t, http.StatusOK, code, string(out))
		}
	}
	return a
}

// call sends a request with token (none when empty) and header.
func (a *authEnv) call(method, path, token string, body any, header map[string]string) (int, string) {
	a.t.Helper()
	c := testenv.Client{Base: a.url, Token: token}
	code, out, err := c.Send(a.ctx, method, path, body, header)
	require.NoError(a.t, err)
	return code, string(out)
}

func (a *authEnv) oidc(claims oidctest.Claims) oidctest.Claims {
	out := oidctest.Claims{"sub": "alice", "aud": audience, "email": "alice@example.com"}
	for k, v := range claims {
		out[k] = v
	}
	return out
}

// path fills a route pattern with tenant default's objects.
func (a *authEnv) path(pattern string) (method, path string) {
	method, path, ok := strings.Cut(pattern, " ")
	if !ok {
		method, path = "GET", "/api/v1/nothing"
	}
	id := a.jobID
	switch {
	case strings.HasPrefix(path, "/api/v1/keys"):
		id = a.keyID
	case strings.HasPrefix(path, "/api/v1/deadletters"):
		id = "1"
	}
	r := strings.NewReplacer("{id}", id, "{pool}", "default", "{tenant}", "default",
		"{user}", "alice", "{team}", "team-a", "{project}", "p-1", "{environment}", "env-1")
	return method, r.Replace(path)
}

func TestAuthEveryRoute(t *testing.T) {
	a := newAuthEnv(t)
	is := a.issuer
	viewer := a.oidc(oidctest.Claims{"tenant": "default", "role": "viewer"})
	otherIssuer := oidctest.New(t, jose.RS256)
	type scenario struct {
		name   string
		token  string
		header map[string]string
		// outsider holds no role in tenant default: its answers carry
		// none of default's data, and reading default's object answers
		// as reading a missing one.
		outsider bool
		// want is the status; 0 means "no data of tenant default" only.
		want func(rule auth.Rule) int
	}
	always := func(code int) func(auth.Rule) int { return func(auth.Rule) int { return code } }
	scenarios := []scenario{
		{"no credential", "", nil, false, always(http.StatusUnauthorized)},
		{"malformed", "not-a-token", nil, false, always(http.StatusUnauthorized)},
		{"expired", is.Expired(viewer), nil, false, always(http.StatusUnauthorized)},
		{"wrong issuer", otherIssuer.Token(viewer), nil, false, always(http.StatusUnauthorized)},
		{"wrong issuer claiming ours", otherIssuer.Token(a.oidc(oidctest.Claims{"iss": is.URL, "tenant": "default", "role": "admin"})), nil, false, always(http.StatusUnauthorized)},
		{"wrong audience", is.Token(a.oidc(oidctest.Claims{"aud": "another-api", "tenant": "default", "role": "admin"})), nil, false, always(http.StatusUnauthorized)},
		{"alg none", is.AlgNone(a.oidc(oidctest.Claims{"tenant": "default", "role": "admin"})), nil, false, always(http.StatusUnauthorized)},
		{"HS256 with the public key", is.HS256WithPublicKey(a.oidc(oidctest.Claims{"tenant": "default", "role": "admin"})), nil, false, always(http.StatusUnauthorized)},
		{"revoked key", a.keys["default-revoked"], nil, false, always(http.StatusUnauthorized)},
		{"viewer token", is.Token(viewer), nil, false, func(r auth.Rule) int {
			if r.Role > auth.RoleViewer {
				return http.StatusForbidden
			}
			return 0
		}},
		{"viewer key", a.keys["default-viewer"], nil, false, func(r auth.Rule) int {
			if r.Role > auth.RoleViewer {
				return http.StatusForbidden
			}
			return 0
		}},
		{"header naming a tenant not held", is.Token(viewer), map[string]string{auth.TenantHeader: "acme"}, true, func(r auth.Rule) int {
			if r.TenantParam != "" {
				return http.StatusForbidden // not an admin of the path's tenant
			}
			return http.StatusForbidden
		}},
		{"other tenant's key", a.keys["acme-admin"], nil, true, func(r auth.Rule) int {
			if r.TenantParam != "" {
				return http.StatusForbidden
			}
			if strings.Contains(r.Pattern, "{id}") && !strings.Contains(r.Pattern, "deadletters") {
				return http.StatusNotFound
			}
			return 0
		}},
		{"other tenant's token (group)", is.Token(a.oidc(oidctest.Claims{"groups": []string{"acme-admins"}})), nil, true, func(r auth.Rule) int {
			if r.TenantParam != "" {
				return http.StatusForbidden
			}
			if strings.Contains(r.Pattern, "{id}") && !strings.Contains(r.Pattern, "deadletters") {
				return http.StatusNotFound
			}
			return 0
		}},
	}
	rules := a.sched.Rules()
	require.Len(t, rules, len(routeRoles))
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, rule := range rules {
				method, path := a.path(rule.Pattern)
				var body any
				if method != "GET" && method != "DELETE" {
					body = map[string]any{}
				}
				code, out := a.call(method, path, sc.token, body, sc.header)
				if want := sc.want(rule); want != 0 {
					require.Equal(t, want, code, "%s %s: %s", method, path, out)
				}
				require.NotEqual(t, http.StatusInternalServerError, code, "%s %s: %s", method, path, out)
				if !sc.outsider {
					continue
				}
				require.NotContains(t, out, dataMarker, "%s %s leaks tenant default's job", method, path)
				if rule.Pattern == "GET /api/v1/keys" {
					require.NotContains(t, out, a.keyID, "%s %s leaks tenant default's key", method, path)
				}
				require.NotContains(t, out, "default-viewer", "%s %s leaks tenant default's key", method, path)
				if strings.Contains(rule.Pattern, "{id}") {
					// Indistinguishable from an object that does not exist.
					missing := strings.Replace(path, a.jobID, "no-such-job", 1)
					missing = strings.Replace(missing, a.keyID, "0000000000000000", 1)
					mcode, mout := a.call(method, missing, sc.token, body, sc.header)
					require.Equal(t, mcode, code, "%s %s", method, path)
					mout = strings.ReplaceAll(strings.ReplaceAll(mout, "no-such-job", a.jobID), "0000000000000000", a.keyID)
					require.Equal(t, mout, out, "%s %s answers as for a missing object", method, path)
				}
			}
		})
	}
}

func TestAuthOIDCKeyRotation(t *testing.T) {
	a := newAuthEnv(t)
	claims := a.oidc(oidctest.Claims{"tenant": "default", "role": "viewer"})
	old := a.issuer.Token(claims)
	code, out := a.call("GET", "/api/v1/jobs/"+a.jobID, old, nil, nil)
	require.Equal(t, http.StatusOK, code, out)

	a.issuer.Rotate()
	code, out = a.call("GET", "/api/v1/jobs/"+a.jobID, a.issuer.Token(claims), nil, nil)
	require.Equal(t, http.StatusOK, code, "a token of the new key: %s", out)
	code, _ = a.call("GET", "/api/v1/jobs/"+a.jobID, old, nil, nil)
	require.Equal(t, http.StatusUnauthorized, code, "the retired key is no longer trusted")
}

func TestAuthBrowserSafety(t *testing.T) {
	a := newAuthEnv(t, func(c *config.Config) { c.Auth.AllowedOrigins = []string{"https://console.example.com"} })
	job := `{"task":{"noop":{}}}`
	tests := []struct {
		name   string
		header map[string]string
		body   string
		want   int
	}{
		{"text/plain POST", map[string]string{"Content-Type": "text/plain"}, job, http.StatusUnsupportedMediaType},
		{"form POST", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, "task=x", http.StatusUnsupportedMediaType},
		{"cross-site Origin", map[string]string{"Origin": "https://evil.example"}, job, http.StatusForbidden},
		{"cross-site fetch", map[string]string{"Sec-Fetch-Site": "cross-site"}, job, http.StatusForbidden},
		{"allowed origin", map[string]string{"Origin": "https://console.example.com", "Sec-Fetch-Site": "cross-site"}, job, http.StatusCreated},
		{"invalid UTF-8", nil, "{\"task\":{\"noop\":{\"fail_message\":\"\xff\"}}}", http.StatusBadRequest},
	}
	jobs := func() int {
		code, out := a.call("GET", "/api/v1/jobs", a.token, nil, nil)
		require.Equal(t, http.StatusOK, code)
		return strings.Count(out, `"id"`)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := jobs()
			code, out := a.call("POST", "/api/v1/jobs", a.token, tt.body, tt.header)
			require.Equal(t, tt.want, code, out)
			if code != http.StatusCreated {
				require.Equal(t, before, jobs(), "nothing was created")
			}
		})
	}
	// The one job created above is still the only other one.
	code, out := a.call("GET", "/api/v1/jobs", a.token, nil, nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, 2, strings.Count(out, `"id"`), out)
}

func TestAuthRateLimit(t *testing.T) {
	a := newAuthEnv(t, func(c *config.Config) { c.Auth.RateLimit = auth.RateLimit{PerSecond: 0.5, Burst: 6} })
	key := a.keys["default-viewer"]
	for range 6 {
		code, out := a.call("GET", "/api/v1/jobs", key, nil, nil)
		require.Equal(t, http.StatusOK, code, out)
	}
	c := testenv.Client{Base: a.url, Token: key}
	code, h, out, err := c.SendHeader(a.ctx, "GET", "/api/v1/jobs", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusTooManyRequests, code, string(out))
	require.NotEmpty(t, h.Get("Retry-After"))
}

// A key revoked through one scheduler is refused by another sharing the
// keys bucket, at once.
func TestAuthRevocationOnAnotherReplica(t *testing.T) {
	a := newAuthEnv(t)
	cfg := config.Default()
	cfg.Tenants.Names = []string{"default", "acme"}
	conn := openBroker(t, a.ctx, a.brokerURL, cfg.Settings)
	s := app.New(cfg, testLogger(), conn, conn, prometheus.NewRegistry(), nil)
	ctx, stop := context.WithCancel(a.ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return s.Ready() == nil }, waitFor, tick)
	other := serveTest(t, s)

	key := a.keys["default-viewer"]
	c := testenv.Client{Base: other, Token: key}
	code, out, err := c.Send(a.ctx, "GET", "/api/v1/jobs/"+a.jobID, nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code, string(out))

	code, out2 := a.call("DELETE", "/api/v1/keys/"+a.keyID, a.token, nil, nil)
	require.Equal(t, http.StatusOK, code, out2)
	code, _, err = c.Send(a.ctx, "GET", "/api/v1/jobs/"+a.jobID, nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, code, "the other replica refuses the revoked key at once")

	// Keys are listed without secrets or hashes.
	code, list := a.call("GET", "/api/v1/keys", a.token, nil, map[string]string{auth.TenantHeader: "default"})
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, list, `"hash"`)
	require.NotContains(t, list, strings.TrimPrefix(key, "opk_"+a.keyID+"_"))
	require.Contains(t, list, `"revoked"`)
}

// Every mutating call is audited for the tenant's admins.
func TestAuthAudit(t *testing.T) {
	a := newAuthEnv(t)
	code, out := a.call("POST", "/api/v1/jobs/"+a.jobID+"/cancel", a.keys["default-viewer"], nil, nil)
	require.Equal(t, http.StatusForbidden, code, out)
	code, out = a.call("GET", "/api/v1/audit", a.keys["default-viewer"], nil, nil)
	require.Equal(t, http.StatusForbidden, code, "only admins read the audit: %s", out)
	code, out = a.call("GET", "/api/v1/audit", a.token, nil, map[string]string{auth.TenantHeader: "default"})
	require.Equal(t, http.StatusOK, code, out)
	var got struct {
		Events []auth.Event `json:"events"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	var actions []string
	for _, ev := range got.Events {
		require.NotEmpty(t, ev.RequestID)
		require.Equal(t, "default", ev.Tenant)
		actions = append(actions, ev.Action+" "+ev.Result())
	}
	require.Contains(t, actions, "POST /api/v1/jobs ok")
	require.Contains(t, actions, "DELETE /api/v1/keys/{id} ok")
	require.Contains(t, actions, "POST /api/v1/jobs/{id}/cancel denied")
}
