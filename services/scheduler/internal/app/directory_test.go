package app_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDirectoryAPIErrors: bad input gets a clear 4xx naming the field and
// changes nothing; missing entities are 404, entities in use 409.
func TestDirectoryAPIErrors(t *testing.T) {
	e := newRulesEnv(t)
	e.directory()
	cases := []struct {
		name, principal, role, method, path string
		body                                any
		code                                int
		field, message                      string
	}{
		{name: "unknown field", method: "PUT", path: "/api/v1/users/bob", body: map[string]any{"nmae": "Bob"}, code: 400, field: "nmae"},
		{name: "wrong type", method: "PUT", path: "/api/v1/projects/p-x", body: map[string]any{"team": 7}, code: 400, field: "team"},
		{name: "project without team", method: "PUT", path: "/api/v1/projects/p-x", body: map[string]any{}, code: 400, field: "team"},
		{name: "project of unknown team", method: "PUT", path: "/api/v1/projects/p-x", body: map[string]any{"team": "t-nope"}, code: 404, message: "team t-nope not found"},
		{name: "invalid team id", method: "PUT", path: "/api/v1/teams/a.b", code: 400, field: "team"},
		{name: "invalid user id", method: "PUT", path: "/api/v1/users/a%20b", code: 400, field: "user"},
		{name: "member not a user", method: "PUT", path: "/api/v1/teams/t-data/members/nobody", code: 404, message: "user nobody not found"},
		{name: "member of unknown team", method: "PUT", path: "/api/v1/teams/t-nope/members/svc-hybrid", code: 404, message: "team t-nope not found"},
		{name: "associate unknown project", method: "PUT", path: "/api/v1/environments/gke-prod/projects/p-nope", code: 404, message: "project p-nope not found"},
		{name: "deployment in unknown environment", principal: "svc-x", method: "PUT", path: "/api/v1/deployments/pool-x", body: map[string]any{"environment": "nope"}, code: 404, message: "environment nope not found"},
		{name: "deployment with unknown project", principal: "svc-x", method: "PUT", path: "/api/v1/deployments/pool-x", body: map[string]any{"projects": []string{"p-list", "p-nope"}}, code: 404, message: "project p-nope not found"},
		{name: "deployment with invalid project", principal: "svc-x", method: "PUT", path: "/api/v1/deployments/pool-x", body: map[string]any{"projects": []string{"a b"}}, code: 400, field: "projects[0]"},
		{name: "deployment without a principal", method: "PUT", path: "/api/v1/deployments/pool-x", code: 401, field: "Authorization"},
		{name: "rebind by an operator", principal: "svc-other", role: "operator", method: "PUT", path: "/api/v1/deployments/hybrid", code: 403, message: "bound to svc-hybrid"},
		{name: "delete a team with projects", method: "DELETE", path: "/api/v1/teams/t-data", code: 409, message: "belongs to team t-data"},
		{name: "delete a member user", method: "DELETE", path: "/api/v1/users/alice@example.com", code: 409, message: "member of team t-data"},
		{name: "delete an associated project", method: "DELETE", path: "/api/v1/projects/p-env", code: 409, message: "associated with environment gke-prod"},
		{name: "delete an environment in use", method: "DELETE", path: "/api/v1/environments/gke-prod", code: 409, message: "deployment hybrid runs in environment gke-prod"},
		{name: "get unknown deployment", method: "GET", path: "/api/v1/deployments/nope", code: 404},
		{name: "text body", method: "PUT", path: "/api/v1/users/bob", body: "name=bob", code: 400},
		{name: "job with an invalid project", method: "POST", path: "/api/v1/jobs", body: noopJob(map[string]any{"project": "p 1"}), code: 400, field: "project"},
		{name: "job naming its user", method: "POST", path: "/api/v1/jobs", body: noopJob(map[string]any{"user": "svc-hybrid"}), code: 400, field: "user"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			principal := tc.principal
			if principal == "" && tc.code != 401 {
				principal = "admin@example.com"
			}
			code, out := e.asRole(principal, tc.role, tc.method, tc.path, tc.body)
			require.Equal(t, tc.code, code, string(out))
			body := decode[struct {
				Error string `json:"error"`
				Field string `json:"field"`
			}](t, out)
			require.NotEmpty(t, body.Error)
			require.Equal(t, tc.field, body.Field)
			require.Contains(t, body.Error, tc.message)
		})
	}
	// Nothing of the refused requests was stored.
	code, out := e.as("admin@example.com", "GET", "/api/v1/projects/p-x", nil)
	require.Equal(t, http.StatusNotFound, code, string(out))
	code, out = e.as("admin@example.com", "GET", "/api/v1/deployments/pool-x", nil)
	require.Equal(t, http.StatusNotFound, code, string(out))
	code, out = e.as("admin@example.com", "GET", "/api/v1/deployments/hybrid", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	require.Equal(t, "svc-hybrid", decode[struct {
		User string `json:"user"`
	}](t, out).User)
}

// TestDirectoryAPIRoundTrip: what is written reads back; removals undo
// additions; a re-registration by the deployment user itself (an
// operator) replaces the environment and project list.
func TestDirectoryAPIRoundTrip(t *testing.T) {
	e := newRulesEnv(t)
	e.directory()
	type team struct {
		Members []string `json:"members"`
	}
	code, out := e.as("viewer@example.com", "GET", "/api/v1/teams/t-data", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	require.Equal(t, []string{"alice@example.com", "svc-hybrid"}, decode[team](t, out).Members)
	e.must("DELETE", "/api/v1/teams/t-data/members/alice@example.com", nil)
	_, out = e.as("viewer@example.com", "GET", "/api/v1/teams/t-data", nil)
	require.Equal(t, []string{"svc-hybrid"}, decode[team](t, out).Members)

	e.must("DELETE", "/api/v1/environments/gke-prod/projects/p-env", nil)
	_, out = e.as("viewer@example.com", "GET", "/api/v1/environments/gke-prod", nil)
	require.Empty(t, decode[struct {
		Projects []string `json:"projects"`
	}](t, out).Projects)

	code, out = e.asRole("svc-hybrid", "operator", "PUT", "/api/v1/deployments/hybrid", map[string]any{"projects": []string{"p-env", "p-admin"}})
	require.Equal(t, http.StatusOK, code, string(out))
	dep := decode[struct {
		User        string   `json:"user"`
		Environment string   `json:"environment"`
		Projects    []string `json:"projects"`
	}](t, out)
	require.Equal(t, "svc-hybrid", dep.User)
	require.Empty(t, dep.Environment)
	require.Equal(t, []string{"p-admin", "p-env"}, dep.Projects)

	code, out = e.as("viewer@example.com", "GET", "/api/v1/deployments", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	require.Len(t, decode[struct {
		Deployments []any `json:"deployments"`
	}](t, out).Deployments, 1)
	for _, path := range []string{"/api/v1/users", "/api/v1/teams", "/api/v1/projects", "/api/v1/environments"} {
		code, out = e.as("viewer@example.com", "GET", path, nil)
		require.Equal(t, http.StatusOK, code, "%s: %s", path, out)
	}
}

// TestSourceRunsAsItsUser: a source's jobs carry its project and are
// submitted as the principal that runs it (a scheduled run goes as the
// user who created or last changed the source).
func TestSourceRunsAsItsUser(t *testing.T) {
	e := newRulesEnv(t)
	e.directory()
	r := e.runner("default", "hybrid")
	code, out := e.as("alice@example.com", "POST", "/api/v1/sources", map[string]any{
		"id": "src-env", "pool": "hybrid", "project": "p-env", "task": map[string]any{"noop": map[string]any{}},
	})
	require.Equal(t, http.StatusCreated, code, string(out))

	code, out = e.as("alice@example.com", "POST", "/api/v1/sources/src-env/run", nil)
	require.Equal(t, http.StatusCreated, code, string(out))
	_, m := r.next(t)
	require.Equal(t, "p-env", m.GetSpec().GetProject())

	code, out = e.as("carol@example.com", "POST", "/api/v1/sources/src-env/run", nil)
	require.Equal(t, http.StatusCreated, code, string(out))
	id := decode[jobView](t, out).ID
	require.NotEmpty(t, id)
	j := e.waitGated(id)
	require.Equal(t, "carol@example.com", j.User)
	r.requireEmpty(t)
}
