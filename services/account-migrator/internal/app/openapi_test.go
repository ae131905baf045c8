package app

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/apispec"
	"github.com/outposthq/outpost/services/account-migrator/internal/openapi"
)

// TestSpecMatchesRoutes walks the registered routes: a route missing from
// the OpenAPI document, or an operation of the document no route serves,
// fails here.
func TestSpecMatchesRoutes(t *testing.T) {
	e := newEnv(t, 1)
	doc, err := apispec.Load(openapi.Spec)
	require.NoError(t, err)
	var patterns []string
	for _, r := range e.migs[0].Rules() {
		patterns = append(patterns, r.Pattern)
	}
	require.NoError(t, apispec.CompareRoutes(doc, patterns))
}

// TestServeSpec: GET /openapi.json serves the committed document as JSON.
func TestServeSpec(t *testing.T) {
	e := newEnv(t, 1)
	code, out := e.do(http.MethodGet, "/openapi.json", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	var doc struct {
		OpenAPI string         `json:"openapi"`
		Paths   map[string]any `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(out, &doc))
	require.Equal(t, "3.1.0", doc.OpenAPI)
	// The Armory paths are written as YAML aliases: served expanded.
	require.Equal(t, doc.Paths["/api/v1/accounts/{name}"], doc.Paths["/armory/accounts/{name}"])
	require.Contains(t, doc.Paths, "/agents/kubernetes/accounts/{name}")
}
