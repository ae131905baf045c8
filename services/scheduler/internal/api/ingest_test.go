package api

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
)

// recipe is a minimal valid recipe, as a JSON string value.
const recipe = `"source:\n  type: postgres\n  config: {host_port: 'db:5432', database: d}\nsink:\n  type: outpost\n"`

// pg is a valid source section in flow style, for a JSON string.
const pg = `{type: postgres, config: {host_port: 'db:5432', database: d}}`

func TestSubmitIngestValidation(t *testing.T) {
	h := newTestAPI(t, &fakeEngine{})
	cases := []struct {
		name string
		body string
		want string
	}{
		{"no recipe", `{"task":{"ingest":{}}}`, `{"error":"is required","field":"task.ingest.recipe"}`},
		{"bad format", `{"task":{"ingest":{"recipe":` + recipe + `,"format":"toml"}}}`, `{"error":"must be yaml or json","field":"task.ingest.format"}`},
		{"malformed yaml", `{"task":{"ingest":{"recipe":"source: [a"}}}`, `{"error":"malformed recipe: YAML: yaml: line 1: did not find expected ',' or ']'","field":"task.ingest.recipe"}`},
		{"not a mapping", `{"task":{"ingest":{"recipe":"- a"}}}`, `{"error":"malformed recipe: the top level must be a mapping, not a list","field":"task.ingest.recipe"}`},
		{"unknown source type", `{"task":{"ingest":{"recipe":"source: {type: oracle}"}}}`, `{"error":"unknown source type \"oracle\" (supported: mysql, postgres)","field":"task.ingest.recipe.source.type"}`},
		{"unknown sink type", `{"task":{"ingest":{"recipe":"source: ` + pg + `\nsink: {type: kafka}"}}}`, `{"error":"unknown sink type \"kafka\" (supported: console, datahub-rest, file, http, outpost)","field":"task.ingest.recipe.sink.type"}`},
		{"no source type", `{"task":{"ingest":{"recipe":"source: {config: {}}"}}}`, `{"error":"required (supported: mysql, postgres)","field":"task.ingest.recipe.source.type"}`},
		{"missing keys, all named", `{"task":{"ingest":{"recipe":"source: {type: postgres}\nsink: {type: file}\ntransformers: [{type: simple_add_dataset_tags}]"}}}`, `{"error":"required (also task.ingest.recipe.transformers[0].config.tag_urns: required)","field":"task.ingest.recipe.sink.config.filename"}`},
		{"config not a mapping", `{"task":{"ingest":{"recipe":"source: {type: mysql, config: 1}"}}}`, `{"error":"must be a mapping, not a number","field":"task.ingest.recipe.source.config"}`},
		{"json format", `{"task":{"ingest":{"recipe":"source: {type: x}","format":"json"}}}`, `{"error":"malformed recipe: JSON: invalid character 's' looking for beginning of value","field":"task.ingest.recipe"}`},
		{"command recipe malformed", `{"task":{"command":{"command":"dh","recipe":{"recipe":"a: [b"}}}}`, `{"error":"malformed recipe: YAML: yaml: line 1: did not find expected ',' or ']'","field":"task.command.recipe.recipe"}`},
		{"assertion no checks", `{"task":{"assertion":{"source":"` + pg + `"}}}`, `{"error":"at least one check is required","field":"task.assertion.checks"}`},
		{"assertion source type", `{"task":{"assertion":{"source":"config: {}","checks":[{"name":"a","sql":{"query":"select true"}}]}}}`, `{"error":"required (supported: mysql, postgres)","field":"task.assertion.source.type"}`},
		{"check two kinds", `{"task":{"assertion":{"source":"` + pg + `","checks":[{"name":"a","sql":{"query":"q"},"row_count":{"table":"t","min":1}}]}}}`, `{"error":"exactly one of row_count, freshness, sql, column is allowed","field":"task.assertion.checks[0]"}`},
		{"check no kind", `{"task":{"assertion":{"source":"` + pg + `","checks":[{"name":"a"}]}}}`, `{"error":"exactly one of row_count, freshness, sql, column is required","field":"task.assertion.checks[0]"}`},
		{"check bounds", `{"task":{"assertion":{"source":"` + pg + `","checks":[{"name":"a","row_count":{"table":"t","min":5,"max":1}}]}}}`, `{"error":"must be at least min (5)","field":"task.assertion.checks[0].row_count.max"}`},
		{"freshness age", `{"task":{"assertion":{"source":"` + pg + `","checks":[{"name":"a","freshness":{"table":"t","column":"c","max_age":"1 day"}}]}}}`, `{"error":"must be a positive duration such as \"24h\"","field":"task.assertion.checks[0].freshness.max_age"}`},
		{"column flags", `{"task":{"assertion":{"source":"` + pg + `","checks":[{"name":"a","column":{"table":"t","column":"c"}}]}}}`, `{"error":"not_null, unique or both must be true","field":"task.assertion.checks[0].column"}`},
		{"duplicate names", `{"task":{"assertion":{"source":"` + pg + `","checks":[{"name":"a","sql":{"query":"q"}},{"name":"a","sql":{"query":"q"}}]}}}`, `{"error":"\"a\" is also the name of checks[0]: results are reported by name","field":"task.assertion.checks[1].name"}`},
		{"unknown check field", `{"task":{"assertion":{"source":"type: x","checks":[{"name":"a","sql":{"query":"q","params":[]}}]}}}`, `{"error":"unknown field","field":"task.assertion.checks[0].sql.params"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := serve(h, "POST", "/api/v1/jobs", c.body, nil)
			require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
			require.JSONEq(t, c.want, rec.Body.String())
		})
	}
}

func TestSubmitIngestAndAssertion(t *testing.T) {
	eng := &fakeEngine{}
	h := newTestAPI(t, eng)

	rec := serve(h, "POST", "/api/v1/jobs", `{"id":"i1","task":{"ingest":{"recipe":`+recipe+`}}}`, nil)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var got struct {
		Task json.RawMessage `json:"task"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	require.JSONEq(t, `{"ingest":{"recipe":`+recipe+`,"format":"yaml"}}`, string(got.Task))
	require.Equal(t, ingestv1.RecipeFormat_RECIPE_FORMAT_YAML, eng.submitted[0].GetTask().GetIngest().GetFormat())

	body := `{"id":"a1","task":{"assertion":{"source":"{\"type\":\"postgres\",\"config\":{\"host_port\":\"h:1\",\"database\":\"d\"}}","format":"json","checks":[{"name":"rows","row_count":{"table":"t","min":0}},{"name":"ids","column":{"table":"t","column":"id","unique":true}}]}}}`
	rec = serve(h, "POST", "/api/v1/jobs", body, nil)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	require.JSONEq(t, `{"assertion":{"source":"{\"type\":\"postgres\",\"config\":{\"host_port\":\"h:1\",\"database\":\"d\"}}","format":"json","checks":[{"name":"rows","row_count":{"table":"t","min":0}},{"name":"ids","column":{"table":"t","column":"id","unique":true}}]}}`, string(got.Task))
	a := eng.submitted[1].GetTask().GetAssertion()
	require.Len(t, a.GetChecks(), 2)
	require.Equal(t, int64(0), a.GetChecks()[0].GetRowCount().GetMin())
	require.NotNil(t, a.GetChecks()[0].GetRowCount().Min, "min 0 is kept as set")

	rec = serve(h, "POST", "/api/v1/jobs", `{"id":"c1","task":{"command":{"command":"dh","args":["${OUTPOST_RECIPE_FILE}"],"recipe":{"recipe":`+recipe+`}}}}`, nil)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Equal(t, "dh", eng.submitted[2].GetTask().GetCommand().GetCommand())
	require.NotEmpty(t, eng.submitted[2].GetTask().GetCommand().GetRecipe().GetRecipe())
}
