package app

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

// routeRoles is the accounts API's route table, as the README states it:
// every registered route must have its row, and every row its route.
var routeRoles = func() map[string]auth.Role {
	m := map[string]auth.Role{
		"GET /agents/kubernetes/accounts/{name}": auth.RoleViewer,
		"GET /api/v1/zones":                      auth.RoleViewer,
		"GET /api/v1/watchers":                   auth.RoleViewer,
		"GET /openapi.json":                      auth.RoleViewer,
		"/api/":                                  auth.RoleViewer,
		"/armory/":                               auth.RoleViewer,
		// Live control-plane replicas.
		"GET /armory/clouddrivers": auth.RoleViewer,
		"GET /api/v1/instances":    auth.RoleViewer,
		// Spinnaker's account management API.
		"POST /credentials":                   auth.RoleAdmin,
		"PUT /credentials":                    auth.RoleAdmin,
		"DELETE /credentials/{accountName}":   auth.RoleAdmin,
		"GET /credentials":                    auth.RoleViewer,
		"GET /credentials/{accountName}":      auth.RoleViewer,
		"GET /credentials/type/{accountType}": auth.RoleViewer,
	}
	for _, p := range []string{"/api/v1/accounts", "/armory/accounts"} {
		m["POST "+p] = auth.RoleAdmin
		m["PATCH "+p] = auth.RoleAdmin
		m["DELETE "+p] = auth.RoleAdmin
		m["GET "+p] = auth.RoleViewer
		m["GET "+p+"/{name}"] = auth.RoleViewer
		m["DELETE "+p+"/{name}"] = auth.RoleAdmin
		m["GET "+p+"/{name}/objects"] = auth.RoleViewer
		m["GET "+p+"/{name}/objects/{kind}/{namespace}/{object}"] = auth.RoleViewer
		m["POST "+p+"/{name}/operations"] = auth.RoleOperator
		m["GET "+p+"/{name}/operations/{id}"] = auth.RoleViewer
	}
	return m
}()

func TestEveryRouteHasARule(t *testing.T) {
	e := newEnv(t, 1)
	seen := map[string]bool{}
	for _, r := range e.migs[0].Rules() {
		want, ok := routeRoles[r.Pattern]
		require.True(t, ok, "route %q has no row in the route table", r.Pattern)
		require.Equal(t, want, r.Role, "route %q", r.Pattern)
		seen[r.Pattern] = true
	}
	for p := range routeRoles {
		require.True(t, seen[p], "the route table names %q, which is not registered", p)
	}
}

// TestAuthEveryRoute calls every route with each kind of bad or
// insufficient credential; keys come from the bucket the scheduler shares.
func TestAuthEveryRoute(t *testing.T) {
	e := newEnv(t, 1, func(c *config.Config) { c.Tenants = []string{"default", "acme"} })
	const secret = "account-of-tenant-default"
	code, out := e.do(http.MethodPost, "/api/v1/accounts", `[{"name":"`+secret+`"}]`)
	require.Equal(t, http.StatusOK, code, string(out))
	keys := auth.NewKeys(e.conn, nil)
	mk := func(tenant string, role auth.Role) string {
		_, s, err := keys.Create(context.Background(), auth.KeyRequest{Owner: "t", Tenants: []string{tenant}, Role: role})
		require.NoError(t, err)
		return s
	}
	viewer, acmeAdmin, revoked := mk("default", auth.RoleViewer), mk("acme", auth.RoleAdmin), mk("default", auth.RoleAdmin)
	k, err := keys.List(context.Background())
	require.NoError(t, err)
	for _, key := range k {
		if strings.Contains(revoked, key.ID) {
			_, err := keys.Revoke(context.Background(), key.ID)
			require.NoError(t, err)
		}
	}
	scenarios := []struct {
		name     string
		token    string
		header   map[string]string
		want     func(auth.Rule) int
		outsider bool
	}{
		{"no credential", "", nil, func(auth.Rule) int { return 401 }, false},
		{"malformed", "opk_bad", nil, func(auth.Rule) int { return 401 }, false},
		{"unsigned JWT", "e30.e30.", nil, func(auth.Rule) int { return 401 }, false},
		{"revoked key", revoked, nil, func(auth.Rule) int { return 401 }, false},
		{"viewer", viewer, nil, func(r auth.Rule) int {
			if r.Role > auth.RoleViewer {
				return 403
			}
			return 0
		}, false},
		{"header naming a tenant not held", viewer, map[string]string{auth.TenantHeader: "acme"}, func(auth.Rule) int { return 403 }, true},
		{"other tenant's admin", acmeAdmin, nil, func(r auth.Rule) int {
			if strings.Contains(r.Pattern, "{name}") && strings.HasPrefix(r.Pattern, "GET") && !strings.Contains(r.Pattern, "operations") && !strings.Contains(r.Pattern, "objects") {
				return 404
			}
			return 0
		}, true},
	}
	rules := e.migs[0].Rules()
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			for _, rule := range rules {
				method, path, ok := strings.Cut(rule.Pattern, " ")
				if !ok {
					method, path = "GET", rule.Pattern+"nothing"
				}
				path = strings.NewReplacer("{name}", secret, "{accountName}", secret, "{accountType}", "kubernetes", "{kind}", "configmaps", "{namespace}", "default", "{object}", "x", "{id}", "1").Replace(path)
				var body any
				if method == "POST" || method == "PATCH" || method == "PUT" || (method == "DELETE" && !strings.Contains(rule.Pattern, "{")) {
					body = "[]"
					if strings.HasSuffix(path, "/operations") {
						body = "{}"
					}
				}
				header := map[string]string{"Authorization": "Bearer " + sc.token}
				if sc.token == "" {
					header = map[string]string{"Authorization": ""}
				}
				for k, v := range sc.header {
					header[k] = v
				}
				code, out, err := e.tryDo(0, method, path, body, header)
				require.NoError(t, err)
				if want := sc.want(rule); want != 0 {
					require.Equal(t, want, code, "%s %s: %s", method, path, out)
				}
				require.NotEqual(t, http.StatusInternalServerError, code, "%s %s: %s", method, path, out)
				if sc.outsider && strings.HasPrefix(rule.Pattern, "GET") {
					require.NotContains(t, strings.ReplaceAll(string(out), path, ""), `"name":"`+secret, "%s %s leaks tenant default's account", method, path)
				}
			}
		})
	}
}

func TestBrowserSafety(t *testing.T) {
	e := newEnv(t, 1)
	for name, h := range map[string]map[string]string{
		"text/plain": {"Content-Type": "text/plain"},
		"form":       {"Content-Type": "application/x-www-form-urlencoded"},
		"cross-site": {"Origin": "https://evil.example"},
	} {
		t.Run(name, func(t *testing.T) {
			code, out := e.doOn(0, http.MethodPost, "/api/v1/accounts", `[{"name":"csrf"}]`, h)
			if name == "cross-site" {
				require.Equal(t, http.StatusForbidden, code, string(out))
			} else {
				require.Equal(t, http.StatusUnsupportedMediaType, code, string(out))
			}
		})
	}
	code, _ := e.do(http.MethodGet, "/api/v1/accounts/csrf", nil)
	require.Equal(t, http.StatusNotFound, code, "no account was created")
}

// A mutating call is published on the tenant's audit subject, where the
// scheduler's GET /api/v1/audit reads it.
func TestAuditEventPublished(t *testing.T) {
	e := newEnv(t, 1)
	code, out := e.do(http.MethodPost, "/api/v1/accounts", `[{"name":"audited"}]`)
	require.Equal(t, http.StatusOK, code, string(out))
	var got []auth.Event
	require.NoError(t, e.conn.Read(e.ctx, e.subj.All("default", queue.RoleAudit), queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		ev, err := auth.DecodeAudit(m)
		require.NoError(t, err)
		got = append(got, ev)
		return true
	}))
	require.Len(t, got, 1)
	require.Equal(t, "POST /api/v1/accounts", got[0].Action)
	require.Equal(t, "account-migrator", got[0].Service)
	require.Equal(t, "default", got[0].Tenant)
	require.Equal(t, "ok", got[0].Result())
	require.True(t, strings.HasPrefix(got[0].Principal, "apikey:"))
	require.NotEmpty(t, got[0].RequestID)
}
