package httpjson

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type command struct {
	Command string   `json:"command"`
	Args    []string `json:"args"`
}

type check struct {
	Name string `json:"name"`
}

type request struct {
	Task struct {
		Command *command `json:"command"`
	} `json:"task"`
	Retries int               `json:"retries"`
	Labels  map[string]string `json:"labels"`
	Checks  []check           `json:"checks"`
	Skipped string            `json:"-"`
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		path    string
		field   string
		message string
	}{
		{"unknown field", `{"bogus":1}`, "", "bogus", "unknown field"},
		{"unknown nested field", `{"task":{"command":{"command":"x","bogus":1}}}`, "", "task.command.bogus", "unknown field"},
		{"unknown field in an array element", `{"checks":[{"name":"a"},{"name":"b","bogus":1}]}`, "", "checks[1].bogus", "unknown field"},
		{"json:\"-\" field is unknown", `{"Skipped":"x"}`, "", "Skipped", "unknown field"},
		{"type error", `{"retries":"3"}`, "", "retries", "must be an integer, not string"},
		{"nested type error", `{"task":{"command":{"args":"-v"}}}`, "", "task.command.args", "must be an array, not string"},
		{"map value type error", `{"labels":{"a":1}}`, "", "labels", "must be a string, not number"},
		{"not an object", `[1]`, "", "", "must be an object, not array"},
		{"syntax error", `{"retries":}`, "", "", "invalid JSON at byte 12: invalid character '}' looking for beginning of value"},
		{"truncated", `{"task":{"command":`, "", "", "truncated JSON"},
		{"empty", ``, "", "", "empty JSON: a value is required"},
		{"trailing data", `{"retries":1} {}`, "", "", "unexpected data after the JSON object"},
		{"prefix on an unknown field", `{"bogus":1}`, "[1]", "[1].bogus", "unknown field"},
		{"prefix on an unknown nested field", `{"task":{"command":{"bogus":1}}}`, "[0]", "[0].task.command.bogus", "unknown field"},
		{"prefix on a type error", `{"retries":true}`, "[2]", "[2].retries", "must be an integer, not bool"},
		{"prefix on a top-level type error", `"x"`, "[3]", "[3]", "must be an object, not string"},
		{"prefix on trailing data", `{} 1`, "[4]", "[4]", "unexpected data after the JSON object"},
		{"invalid UTF-8 in a string", "{\"name\":\"a\xff\"}", "", "", "the body is not valid UTF-8 (at byte 10)"},
		{"truncated UTF-8 sequence", "{\"name\":\"\xc3\"}", "[1]", "[1]", "the body is not valid UTF-8 (at byte 9)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst request
			err := Decode([]byte(tt.raw), &dst, tt.path)
			fe, ok := errors.AsType[*FieldError](err)
			require.True(t, ok, "want a *FieldError, got %v", err)
			require.Equal(t, tt.field, fe.Field)
			require.Equal(t, tt.message, fe.Message)
		})
	}
}

func TestDecodeAccepts(t *testing.T) {
	var dst request
	require.NoError(t, Decode([]byte(` {"task":{"command":{"command":"x","args":["-v"]}},"RETRIES":2,"checks":[{"name":"a"}]} `), &dst, ""))
	require.Equal(t, []string{"-v"}, dst.Task.Command.Args)
	require.Equal(t, 2, dst.Retries, "keys match fields case-insensitively, as in encoding/json")
	require.Equal(t, "a", dst.Checks[0].Name)

	var arr []json.RawMessage
	require.NoError(t, Decode([]byte(`[{"a":1},2]`), &arr, ""))
	require.Len(t, arr, 2)
	err := Decode([]byte(`[1] [2]`), &arr, "")
	require.EqualError(t, err, "unexpected data after the JSON array")
}

func TestFieldError(t *testing.T) {
	var dst request
	err := Decode([]byte(`{"retries":"3"}`), &dst, "[0]")
	require.EqualError(t, err, "[0].retries: must be an integer, not string")
	_, ok := errors.AsType[*json.UnmarshalTypeError](err)
	require.True(t, ok, "the encoding/json error is kept")
	require.EqualError(t, &FieldError{Message: "no field"}, "no field")
}

func TestReadBody(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		limit   int64
		wantErr string
	}{
		{"within the limit", `{"a":1}`, 7, ""},
		{"too large", `{"a":12}`, 7, "request body too large: the limit is 7 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			raw, err := ReadBody(w, r, tt.limit)
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, tt.body, string(raw))
				return
			}
			require.ErrorIs(t, err, ErrTooLarge)
			require.EqualError(t, err, tt.wantErr)
		})
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestReadBodyFails(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "/", failingReader{})
	_, err := ReadBody(httptest.NewRecorder(), r, 10)
	fe, ok := errors.AsType[*FieldError](err)
	require.True(t, ok)
	require.Equal(t, "cannot read the request body: connection reset", fe.Message)
}

func TestWrite(t *testing.T) {
	tests := []struct {
		name  string
		write func(w http.ResponseWriter)
		code  int
		body  string
		retry string
	}{
		{"json", func(w http.ResponseWriter) { WriteJSON(w, http.StatusCreated, map[string]int{"n": 1}) }, http.StatusCreated, `{"n":1}` + "\n", ""},
		{"error with a field", func(w http.ResponseWriter) { WriteError(w, http.StatusBadRequest, "unknown field", "a.b") }, http.StatusBadRequest, `{"error":"unknown field","field":"a.b"}` + "\n", ""},
		{"error without a field", func(w http.ResponseWriter) { WriteError(w, http.StatusNotFound, "no such job", "") }, http.StatusNotFound, `{"error":"no such job"}` + "\n", ""},
		{"unavailable", func(w http.ResponseWriter) { WriteUnavailable(w, 1500*time.Millisecond, "broker restarting") }, http.StatusServiceUnavailable, `{"error":"broker restarting"}` + "\n", "2"},
		{"unavailable, at least a second", func(w http.ResponseWriter) { WriteUnavailable(w, 0, "x") }, http.StatusServiceUnavailable, `{"error":"x"}` + "\n", "1"},
		{"internal, only the request id", func(w http.ResponseWriter) { WriteInternal(w, "r-1") }, http.StatusInternalServerError, `{"error":"internal error","request_id":"r-1"}` + "\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			tt.write(w)
			require.Equal(t, tt.code, w.Code)
			require.Equal(t, "application/json", w.Header().Get("Content-Type"))
			require.Equal(t, tt.body, w.Body.String())
			require.Equal(t, tt.retry, w.Header().Get("Retry-After"))
		})
	}
}
