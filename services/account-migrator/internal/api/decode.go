package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
)

// errTooLarge is returned by readBody for a body over the limit.
var errTooLarge = errors.New("request body too large")

// fieldError is a request error naming the offending field by JSON path.
type fieldError struct {
	Field   string
	Message string
}

func (e *fieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// readBody reads at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, fmt.Errorf("%w: the limit is %d bytes", errTooLarge, limit)
		}
		return nil, &fieldError{Message: "cannot read the request body: " + err.Error()}
	}
	return raw, nil
}

// decodeStrict decodes one JSON value into dst, refusing unknown fields and
// trailing data; path prefixes the field names of its errors.
func decodeStrict(raw []byte, dst any, path string) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return &fieldError{Field: path, Message: fmt.Sprintf("invalid JSON at byte %d: %s", se.Offset, se.Error())}
		case errors.As(err, &te):
			return &fieldError{Field: joinPath(path, te.Field), Message: "wrong type: got JSON " + te.Value}
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			return &fieldError{Field: path, Message: "truncated or empty JSON"}
		}
		if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
			return &fieldError{Field: joinPath(path, strings.Trim(name, `"`)), Message: "unknown field"}
		}
		return &fieldError{Field: path, Message: "invalid JSON: " + err.Error()}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &fieldError{Field: path, Message: "unexpected data after the JSON value"}
	}
	return nil
}

func joinPath(path, field string) string {
	switch {
	case path == "":
		return field
	case field == "":
		return path
	}
	return path + "." + field
}

// decodeEntries decodes a JSON array of T (or a single object, taken as an
// array of one), each element strictly: any error refuses the whole
// request, so that nothing is half-applied.
func decodeEntries[T any](raw []byte) ([]T, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 {
		return nil, &fieldError{Message: "the request body is empty: a JSON array of accounts is required"}
	}
	if trimmed[0] == '{' {
		trimmed = slices.Concat([]byte("["), trimmed, []byte("]"))
	}
	var elems []json.RawMessage
	if err := decodeStrict(trimmed, &elems, ""); err != nil {
		return nil, err
	}
	if len(elems) == 0 {
		return nil, &fieldError{Message: "the array of accounts is empty"}
	}
	out := make([]T, len(elems))
	for i, e := range elems {
		if err := decodeStrict(e, &out[i], fmt.Sprintf("[%d]", i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// writeDecodeError answers a body that could not be decoded.
func writeDecodeError(w http.ResponseWriter, err error) {
	if errors.Is(err, errTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, err.Error(), "")
		return
	}
	if fe, ok := errors.AsType[*fieldError](err); ok {
		writeError(w, http.StatusBadRequest, fe.Message, fe.Field)
		return
	}
	writeError(w, http.StatusBadRequest, err.Error(), "")
}
