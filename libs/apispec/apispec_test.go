package apispec_test

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/apispec"
	"github.com/outposthq/outpost/libs/apispec/apispectest"
)

const doc = `
openapi: 3.1.0
info: {title: test, version: v1}
paths:
  /things: &things
    post:
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [name]
              properties:
                name: {type: string}
      responses:
        "201":
          description: The thing.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Thing"}
        default:
          description: An error.
          content:
            application/json:
              schema:
                type: object
                required: [error]
                properties:
                  error: {type: string}
  /things/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      responses:
        "200":
          description: The thing.
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Thing"}
  /aliases: *things
components:
  schemas:
    Thing:
      type: object
      required: [name, size]
      properties:
        name: {type: string}
        size: {type: integer}
`

func TestCompareRoutes(t *testing.T) {
	d, err := apispec.Load([]byte(doc))
	require.NoError(t, err)
	require.Equal(t, []string{"GET /things/{id}", "POST /aliases", "POST /things"}, apispec.Operations(d))
	tests := []struct {
		name     string
		patterns []string
		problems []string
	}{
		{"same", []string{"POST /things", "GET /things/{id}", "POST /aliases", "/api/"}, nil},
		{"route missing from the document", []string{"POST /things", "GET /things/{id}", "POST /aliases", "DELETE /things/{id}"},
			[]string{"registered but not in the document: DELETE /things/{id}"}},
		{"operation no route serves", []string{"POST /things", "POST /aliases"},
			[]string{"in the document but not registered: GET /things/{id}"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := apispec.CompareRoutes(d, tt.patterns)
			if tt.problems == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, apispec.ErrRouteMismatch)
			for _, p := range tt.problems {
				require.Contains(t, err.Error(), p)
			}
		})
	}
}

func TestLoadRefusesInvalidDocuments(t *testing.T) {
	for _, raw := range []string{"openapi: [", "openapi: 3.1.0\ninfo: {title: t, version: v}\npaths:\n  /x/{id}:\n    get:\n      responses: {\"200\": {description: x}}\n"} {
		_, err := apispec.Load([]byte(raw))
		require.ErrorIs(t, err, apispec.ErrInvalid)
	}
}

func TestHandlerServesJSON(t *testing.T) {
	h, err := apispec.Handler([]byte(doc))
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, apispec.Path, nil))
	require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	require.Contains(t, rec.Body.String(), `"openapi":"3.1.0"`)
	// Aliases are expanded.
	require.Contains(t, rec.Body.String(), `"/aliases":{"post"`)
}

// recorder keeps the validator's failures instead of failing the test.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *recorder) Helper() {}

func TestValidator(t *testing.T) {
	mux := http.NewServeMux()
	answer := func(code int, body string) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_, _ = io.WriteString(w, body)
		}
	}
	mux.HandleFunc("POST /things", func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		if strings.Contains(string(raw), "accept-anything") {
			answer(http.StatusCreated, `{"name":"x","size":1}`)(w, r)
			return
		}
		if !strings.Contains(string(raw), `"name"`) {
			answer(http.StatusBadRequest, `{"error":"name is required"}`)(w, r)
			return
		}
		answer(http.StatusCreated, `{"name":"x","size":1}`)(w, r)
	})
	mux.HandleFunc("GET /things/good", answer(http.StatusOK, `{"name":"good","size":2}`))
	mux.HandleFunc("GET /things/bad", answer(http.StatusOK, `{"name":"bad","size":"two"}`))
	mux.HandleFunc("GET /things/accepted", answer(http.StatusAccepted, `{"name":"a","size":2}`))
	mux.HandleFunc("GET /undocumented", answer(http.StatusOK, `{}`))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	tests := []struct {
		name, method, path, body string
		problem                  string
	}{
		{"valid request and answer", "POST", "/things", `{"name":"x"}`, ""},
		{"invalid request refused", "POST", "/things", `{}`, ""},
		{"invalid request accepted", "POST", "/things", `{"accept-anything":true}`, "the API accepted (201) a request the document refuses"},
		{"valid answer", "GET", "/things/good", "", ""},
		{"answer off the schema", "GET", "/things/bad", "", "does not match the document"},
		{"status the operation does not list", "GET", "/things/accepted", "", "a status its operation does not list"},
		{"route not in the document", "GET", "/undocumented", "", "is not in the document"},
		{"unknown path answered 404", "GET", "/nothing", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			client := apispectest.New(rec, []byte(doc)).Client()
			var body io.Reader
			if tt.body != "" {
				body = strings.NewReader(tt.body)
			}
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, body)
			require.NoError(t, err)
			if tt.body != "" {
				req.Header.Set("Content-Type", "application/json")
			}
			resp, err := client.Do(req)
			require.NoError(t, err)
			_, err = io.ReadAll(resp.Body)
			require.NoError(t, errors.Join(err, resp.Body.Close()))
			if tt.problem == "" {
				require.Empty(t, rec.errs)
				return
			}
			require.Len(t, rec.errs, 1)
			require.Contains(t, rec.errs[0], tt.problem)
		})
	}
}
