package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/outposthq/outpost/libs/httpjson"
)

// decodeStrict is httpjson.Decode with the API's message for a value of
// the wrong type ("wrong type: must be an array, not string").
func decodeStrict(raw []byte, dst any, path string) error {
	err := httpjson.Decode(raw, dst, path)
	if fe, ok := errors.AsType[*httpjson.FieldError](err); ok {
		if _, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
			fe.Message = "wrong type: " + fe.Message
		}
	}
	return err
}

// decodeEntries decodes a JSON array of T (or a single object, taken as an
// array of one), each element strictly: any error refuses the whole
// request, so that nothing is half-applied.
func decodeEntries[T any](raw []byte) ([]T, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return nil, &httpjson.FieldError{Message: "the request body is empty: a JSON array of accounts is required"}
	}
	if trimmed[0] == '{' {
		trimmed = slices.Concat([]byte("["), trimmed, []byte("]"))
	}
	var elems []json.RawMessage
	if err := decodeStrict(trimmed, &elems, ""); err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		return nil, &httpjson.FieldError{Message: "the array of accounts is empty"}
	}
	out := make([]T, len(elems))
	for i, e := range elems {
		if err := decodeStrict(e, &out[i], fmt.Sprintf("[%d]", i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeDecodeError answers a body that could not be read or decoded.
func writeDecodeError(w http.ResponseWriter, err error) {
	if errors.Is(err, httpjson.ErrTooLarge) {
		httpjson.WriteError(w, http.StatusRequestEntityTooLarge, err.Error(), "")
		return
	}
	if fe, ok := errors.AsType[*httpjson.FieldError](err); ok {
		httpjson.WriteError(w, http.StatusBadRequest, fe.Message, fe.Field)
		return
	}
	httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "")
}
