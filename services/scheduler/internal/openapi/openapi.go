// Package openapi holds the scheduler API's OpenAPI document
// (scheduler.yaml), the source of truth the API is tested against: a test
// compares its operations with the registered routes, and the HTTP tests
// check their requests and responses against it.
package openapi

import _ "embed"

// Spec is the OpenAPI 3.1 document of the scheduler API, served as JSON at
// GET /openapi.json.
//
//go:embed scheduler.yaml
var Spec []byte
