// Package apispectest checks the requests and responses of a service's
// HTTP tests against its OpenAPI document (kin-openapi's openapi3filter):
// wrap the tests' client with Validator.Client or Validator.Transport.
package apispectest

import (
	"bytes"
	"context"
	"io"
	"mime"
	"net/http"
	"strconv"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/apispec"
)

// Validator checks request and response pairs against a document. A
// pair breaks the document when:
//   - the request's route is not in the document and the answer is not a
//     refusal (4xx: 404 for an unknown path, 401 or 403 before that);
//   - the request does not match the document but the API accepted it
//     (a status below 400): the document is stricter than the API;
//   - a status below 400 is not one the operation lists;
//   - a JSON body does not match the schema of its status (or the
//     operation's default, for errors).
//
// Each break fails the test (t.Errorf); the response is returned as it is.
type Validator struct {
	t      testing.TB
	doc    *openapi3.T
	router routers.Router
	// Base sends the requests; nil is http.DefaultTransport.
	Base http.RoundTripper
}

// New returns a validator of the document raw (YAML or JSON).
func New(t testing.TB, raw []byte) *Validator {
	t.Helper()
	doc, err := apispec.Load(raw)
	require.NoError(t, err)
	router, err := legacy.NewRouter(doc)
	require.NoError(t, err)
	return &Validator{t: t, doc: doc, router: router}
}

// Client returns an HTTP client whose requests are checked.
func (v *Validator) Client() *http.Client { return &http.Client{Transport: v} }

// RoundTrip sends req and checks it and its answer. A response that is
// not JSON (a log stream) is checked for its status only and not read, so
// that streaming still works.
func (v *Validator) RoundTrip(req *http.Request) (*http.Response, error) {
	var reqBody []byte
	if req.Body != nil && req.Body != http.NoBody {
		raw, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqBody = raw
		req.Body = io.NopCloser(bytes.NewReader(raw))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil }
	}
	base := v.Base
	if base == nil {
		base = http.DefaultTransport
	}
	resp, err := base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	var respBody []byte
	if isJSON(resp.Header.Get("Content-Type")) {
		respBody, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(respBody))
	}
	check := req.Clone(req.Context())
	check.Body = io.NopCloser(bytes.NewReader(reqBody))
	v.Check(check, reqBody, resp.StatusCode, resp.Header, respBody)
	return resp, nil
}

// Check checks one request and its answer (a nil respBody: the body is
// not checked).
func (v *Validator) Check(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) {
	v.t.Helper()
	name := req.Method + " " + req.URL.Path
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		if status < 400 || status >= 500 {
			v.t.Errorf("openapi: %s answered %d but is not in the document: %v", name, status, err)
		}
		return
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{
		Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if reqBody != nil {
		req.Body = io.NopCloser(bytes.NewReader(reqBody))
	}
	if err := openapi3filter.ValidateRequest(ctx, in); err != nil && status < 400 {
		v.t.Errorf("openapi: the API accepted (%d) a request the document refuses: %s: %v\nbody: %s", status, name, err, reqBody)
	}
	if status < 400 && route.Operation.Responses.Value(strconv.Itoa(status)) == nil {
		v.t.Errorf("openapi: %s answered %d, a status its operation does not list", name, status)
		return
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Options: &openapi3filter.Options{ExcludeResponseBody: respBody == nil, IncludeResponseStatus: true, MultiError: true},
	}
	out.SetBodyBytes(respBody)
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		v.t.Errorf("openapi: the answer %d to %s does not match the document: %v\nbody: %s", status, name, err, respBody)
	}
}

func isJSON(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}
