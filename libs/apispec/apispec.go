// Package apispec loads the OpenAPI documents of the services' APIs,
// serves them as JSON (GET /openapi.json) and compares their operations
// with the routes a service registers, so that neither can drift from the
// other without a test failing.
package apispec

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"go.yaml.in/yaml/v3"
)

// Path is where every service serves its document.
const Path = "/openapi.json"

// ErrInvalid is wrapped by Load's error for a document that does not
// parse or is not valid OpenAPI.
var ErrInvalid = errors.New("apispec: invalid OpenAPI document")

// ErrRouteMismatch is wrapped by CompareRoutes' error when the document
// and the registered routes differ.
var ErrRouteMismatch = errors.New("apispec: the OpenAPI document and the registered routes differ")

// Load parses an OpenAPI document (YAML or JSON) and validates it.
func Load(raw []byte) (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return doc, nil
}

// Operations returns every operation of doc as an http.ServeMux pattern
// ("GET /api/v1/jobs/{id}"), sorted.
func Operations(doc *openapi3.T) []string {
	var out []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, method+" "+path)
		}
	}
	slices.Sort(out)
	return out
}

// CompareRoutes checks that the operations of doc are exactly the
// patterns: a registered route missing from the document, or an operation
// of the document no route serves, is an error naming them all. Patterns
// without a method (the "/api/" prefixes answering 404) are not
// operations and are skipped.
func CompareRoutes(doc *openapi3.T, patterns []string) error {
	registered := map[string]bool{}
	for _, p := range patterns {
		method, _, ok := strings.Cut(p, " ")
		if !ok || method == "" || strings.HasPrefix(method, "/") {
			continue
		}
		registered[p] = true
	}
	var problems []string
	ops := Operations(doc)
	for _, op := range ops {
		if !registered[op] {
			problems = append(problems, "in the document but not registered: "+op)
		}
		delete(registered, op)
	}
	for _, p := range slices.Sorted(mapKeys(registered)) {
		problems = append(problems, "registered but not in the document: "+p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w:\n  %s", ErrRouteMismatch, strings.Join(problems, "\n  "))
	}
	return nil
}

func mapKeys(m map[string]bool) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// JSON converts a YAML (or JSON) document to JSON as written: the order of
// keys aside, what is served is what is committed.
func JSON(raw []byte) ([]byte, error) {
	var v any
	if err := yaml.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	v, err := jsonable(v)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, nil
}

// jsonable turns YAML's maps into maps with string keys.
func jsonable(v any) (any, error) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			x[k] = c
		}
		return x, nil
	case map[any]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			out[fmt.Sprint(k)] = c
		}
		return out, nil
	case []any:
		for i, e := range x {
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			x[i] = c
		}
		return x, nil
	default:
		return v, nil
	}
}

// Handler serves the document as JSON. It fails for a document that is
// not valid OpenAPI, so a broken document stops the service's tests, not
// its users.
func Handler(raw []byte) (http.Handler, error) {
	if _, err := Load(raw); err != nil {
		return nil, err
	}
	body, err := JSON(raw)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(body)
	}), nil
}
