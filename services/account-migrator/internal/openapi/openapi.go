// Package openapi holds the account-migrator API's OpenAPI document
// (account-migrator.yaml), the source of truth the API is tested against:
// a test compares its operations with the registered routes, and the HTTP
// tests check their requests and responses against it.
package openapi

import _ "embed"

// Spec is the OpenAPI 3.1 document of the account-migrator API, served as
// JSON at GET /openapi.json.
//
//go:embed account-migrator.yaml
var Spec []byte
