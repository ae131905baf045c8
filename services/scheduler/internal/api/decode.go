package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"slices"
	"strings"

	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
)

// errTooLarge is returned by decodeBody for a body over the limit.
var errTooLarge = errors.New("request body too large")

// decodeBody reads a JSON object of at most limit bytes into dst, refusing
// unknown fields. Errors are *jobs.FieldError (naming the field by its JSON
// path where there is one) or errTooLarge. An empty body is allowed when
// optional is set and leaves dst as it is.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, dst any, optional bool) error {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return fmt.Errorf("%w: the limit is %d bytes", errTooLarge, limit)
		}
		return &jobs.FieldError{Message: "cannot read the request body: " + err.Error()}
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if optional {
			return nil
		}
		return &jobs.FieldError{Message: "the request body is empty: a JSON object is required"}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeError(err, raw, reflect.TypeOf(dst))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &jobs.FieldError{Message: "unexpected data after the JSON object"}
	}
	return nil
}

func decodeError(err error, raw []byte, t reflect.Type) error {
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		return &jobs.FieldError{Message: fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error())}
	}
	if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
		return &jobs.FieldError{Field: te.Field, Message: fmt.Sprintf("must be %s, not %s", typeName(te.Type), te.Value)}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &jobs.FieldError{Message: "truncated JSON"}
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field := unknownField(raw, t, "")
		if field == "" {
			field = strings.Trim(name, `"`)
		}
		return &jobs.FieldError{Field: field, Message: "unknown field"}
	}
	return &jobs.FieldError{Message: "invalid JSON: " + err.Error()}
}

// unknownField returns the JSON path of the first key of raw (in sorted
// order) that type t has no field for, or "".
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
				return join(path, k)
			}
			if p := unknownField(obj[k], f.Type, join(path, k)); p != "" {
				return p
			}
		}
	case reflect.Map:
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil {
			return ""
		}
		for k, v := range obj {
			if p := unknownField(v, t.Elem(), join(path, k)); p != "" {
				return p
			}
		}
	case reflect.Slice:
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

func join(path, key string) string {
	if path == "" {
		return key
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
