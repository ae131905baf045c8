// Package httpjson decodes JSON request bodies strictly and writes JSON
// responses for Outpost's REST APIs.
//
// A body is read with a size limit (ErrTooLarge over it), decoded refusing
// unknown fields and trailing data, and every decoding error is a
// *FieldError naming the wrong field by its JSON path, such as
// "task.command.args" or "[1].zone", with a message meant for the client.
package httpjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrTooLarge is wrapped by the error ReadBody returns for a body over its
// limit; answer it with 413 Request Entity Too Large.
var ErrTooLarge = errors.New("request body too large")

// FieldError is a request error naming the offending field by its JSON path
// (empty when the error is not about one field).
type FieldError struct {
	// Field is the JSON path of the wrong field, or "".
	Field string
	// Message says what is wrong, for the client.
	Message string
	// Err is the encoding/json error behind it, if any.
	Err error
}

// Error returns the message, after the field's path when there is one.
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Unwrap returns the encoding/json error behind e, if any.
func (e *FieldError) Unwrap() error { return e.Err }

// ReadBody reads the request body, at most limit bytes. The error wraps
// ErrTooLarge for a longer body and is a *FieldError if it cannot be read.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, fmt.Errorf("%w: the limit is %d bytes", ErrTooLarge, limit)
		}
		return nil, &FieldError{Message: "cannot read the request body: " + err.Error()}
	}
	return raw, nil
}

// Decode decodes the one JSON value in raw into dst, refusing unknown
// fields and trailing data. Errors are *FieldError; path, if not empty,
// prefixes their field paths, so that the elements of an array decoded one
// by one report "[1].zone".
func Decode(raw []byte, dst any, path string) error {
	if !utf8.Valid(raw) {
		// encoding/json would replace the bad bytes with U+FFFD: the
		// client's data would change without a word.
		return &FieldError{Field: path, Message: fmt.Sprintf("the body is not valid UTF-8 (at byte %d)", invalidAt(raw))}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err, raw, reflect.TypeOf(dst), path)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &FieldError{Field: path, Message: "unexpected data after the JSON " + kind(raw)}
	}
	return nil
}

// invalidAt returns the offset of the first byte of raw that is not valid
// UTF-8.
func invalidAt(raw []byte) int {
	for i := 0; i < len(raw); {
		r, n := utf8.DecodeRune(raw[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(raw)
}

func decodeError(err error, raw []byte, t reflect.Type, path string) error {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return &FieldError{Field: path, Message: fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error()), Err: err}
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return &FieldError{Field: join(path, te.Field), Message: fmt.Sprintf("must be %s, not %s", typeName(te.Type), te.Value), Err: err}
	}
	if errors.Is(err, io.EOF) {
		return &FieldError{Field: path, Message: "empty JSON: a value is required", Err: err}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &FieldError{Field: path, Message: "truncated JSON", Err: err}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field := unknownField(raw, t, path)
		if field == "" {
			field = join(path, keyName(strings.Trim(name, `"`)))
		}
		return &FieldError{Field: field, Message: "unknown field", Err: err}
	}
	return &FieldError{Field: path, Message: "invalid JSON: " + err.Error(), Err: err}
}

// kind names the JSON value raw starts with.
func kind(raw []byte) string {
	switch b := bytes.TrimSpace(raw); {
	case len(b) > 0 && b[0] == '{':
		return "object"
	case len(b) > 0 && b[0] == '[':
		return "array"
	}
	return "value"
}

// unknownField returns the JSON path, below path, of the first key of raw
// (in sorted order) that type t has no field for, or "".
func unknownField(raw []byte, t reflect.Type, path string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return ""
		}
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			f, ok := jsonField(t, k)
			if !ok {
				return join(path, keyName(k))
			}
			if p := unknownField(obj[k], f.Type, join(path, keyName(k))); p != "" {
				return p
			}
		}
	case reflect.Map:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return ""
		}
		for k, v := range obj {
			if p := unknownField(v, t.Elem(), join(path, keyName(k))); p != "" {
				return p
			}
		}
	case reflect.Slice, reflect.Array:
		var arr []json.RawMessage
		if json.Unmarshal(raw, &arr) != nil {
			return ""
		}
		for i, v := range arr {
			if p := unknownField(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); p != "" {
				return p
			}
		}
	}
	return ""
}

// jsonField finds the field encoding/json would fill from key: an exact
// tag match, else a case-insensitive one.
func jsonField(t reflect.Type, key string) (reflect.StructField, bool) {
	var fold *reflect.StructField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name == key {
			return f, true
		}
		if fold == nil && strings.EqualFold(name, key) {
			fold = &f
		}
	}
	if fold != nil {
		return *fold, true
	}
	return reflect.StructField{}, false
}

// keyName is how key shows in a path: the empty key as "" so that the
// path still points at it.
func keyName(key string) string {
	if key == "" {
		return `""`
	}
	return key
}

// join appends key to path with a dot, or returns the one that is not empty.
func join(path, key string) string {
	switch {
	case path == "":
		return key
	case key == "":
		return path
	}
	return path + "." + key
}

func typeName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Map, reflect.Struct, reflect.Pointer:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return t.String()
}

// ErrorBody is the body of every error response: the message and, where
// there is one, the JSON path of the wrong field (or the header or
// parameter at fault).
type ErrorBody struct {
	// Error says what is wrong.
	Error string `json:"error"`
	// Field names what is wrong, if anything in particular.
	Field string `json:"field,omitempty"`
}

// WriteJSON writes v as the JSON body of a response with status code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteUnavailable writes a 503 Service Unavailable ErrorBody with a
// Retry-After header of retryAfter, in whole seconds (at least 1): the
// request failed for a reason that passes, such as a broker restart, and
// the same request may be sent again.
func WriteUnavailable(w http.ResponseWriter, retryAfter time.Duration, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retryAfter.Seconds())))))
	WriteError(w, http.StatusServiceUnavailable, msg, "")
}

// WriteError writes an ErrorBody with status code.
func WriteError(w http.ResponseWriter, code int, msg, field string) {
	WriteJSON(w, code, ErrorBody{Error: msg, Field: field})
}

// WriteInternal writes a 500 that says only which request failed: the
// error itself is logged with requestID, never sent to the client.
func WriteInternal(w http.ResponseWriter, requestID string) {
	if requestID == "" {
		requestID = w.Header().Get("X-Request-Id")
	}
	WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error", "request_id": requestID})
}

// DecodeBody reads r's body (at most limit bytes) and decodes it strictly
// into dst, a JSON object, or writes the error: 413 for a body over the
// limit, 400 naming the wrong field otherwise. An empty body is allowed
// when optional is set and leaves dst as it is. It reports success.
func DecodeBody(w http.ResponseWriter, r *http.Request, dst any, limit int64, optional bool) bool {
	raw, err := ReadBody(w, r, limit)
	switch {
	case errors.Is(err, ErrTooLarge):
		WriteError(w, http.StatusRequestEntityTooLarge, err.Error(), "")
		return false
	case err == nil && len(bytes.TrimSpace(raw)) == 0:
		if optional {
			return true
		}
		err = &FieldError{Message: "the request body is empty: a JSON object is required"}
	case err == nil:
		err = Decode(raw, dst, "")
	}
	if err == nil {
		return true
	}
	if fe, ok := errors.AsType[*FieldError](err); ok {
		WriteError(w, http.StatusBadRequest, fe.Message, fe.Field)
		return false
	}
	WriteError(w, http.StatusBadRequest, "the request body cannot be read", "")
	return false
}
