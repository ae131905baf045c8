package app_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/apispec"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
	"github.com/outposthq/outpost/services/scheduler/internal/openapi"
)

// TestSpecMatchesRoutes walks the registered routes (the agents routes
// included, served when agents.auth_dir is set): a route missing from the
// OpenAPI document, or an operation of the document no route serves,
// fails here.
func TestSpecMatchesRoutes(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Agents.AuthDir = t.TempDir() })
	doc, err := apispec.Load(openapi.Spec)
	require.NoError(t, err)
	var patterns []string
	for _, r := range e.sched.Rules() {
		patterns = append(patterns, r.Pattern)
	}
	require.Contains(t, patterns, "POST /api/v1/agents")
	require.NoError(t, apispec.CompareRoutes(doc, patterns))
}

// TestServeSpec: GET /openapi.json serves the committed document as JSON
// to any credential, and to none only a 401.
func TestServeSpec(t *testing.T) {
	e := newEnv(t)
	code, out := e.do(http.MethodGet, "/openapi.json", "", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(out, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	require.Contains(t, doc.Paths, "/api/v1/jobs/{id}/explain")
	want, err := apispec.JSON(openapi.Spec)
	require.NoError(t, err)
	require.JSONEq(t, string(want), string(out))

	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, e.url+"/openapi.json", nil)
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}
