package httpjson

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// fuzzBody has the shapes request bodies use: nested objects, arrays of
// objects, maps, pointers, numbers and an ignored field.
type fuzzBody struct {
	Name   string            `json:"name"`
	Count  int               `json:"count"`
	Ratio  float64           `json:"ratio"`
	On     *bool             `json:"on,omitempty"`
	Tags   []string          `json:"tags"`
	Labels map[string]string `json:"labels"`
	Task   *struct {
		Command struct {
			Args []string `json:"args"`
		} `json:"command"`
	} `json:"task"`
	Items  []fuzzItem          `json:"items"`
	ByZone map[string]fuzzItem `json:"byZone"`
	Secret string              `json:"-"`
	Plain  uint8
}

type fuzzItem struct {
	Zone string `json:"zone"`
	Size int64  `json:"size"`
}

// FuzzDecode feeds Decode any request body. Every failure is a *FieldError
// with a message, under the given path; a body it accepts is one JSON value
// that the lenient decoder reads the same way, and that survives an encode
// and strict decode unchanged.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"name":"a","count":1,"ratio":0.5,"on":true,"tags":["x"],"labels":{"k":"v"}}`,
		`{"task":{"command":{"args":["-v"]}},"items":[{"zone":"eu","size":3}],"byZone":{"eu":{"zone":"eu"}}}`,
		`{"items":[{"zone":"eu"},{"zone":"us","nope":1}]}`,
		`{"byZone":{"eu":{"color":"red"}}}`,
		`{"task":{"command":{"argv":[]}}}`,
		`{"NAME":"case","Plain":7,"plain":8}`,
		`{"count":"one"}`,
		`{"count":1e400}`,
		`{"plain":300}`,
		`{"name":"a"} {"name":"b"}`,
		`{"name":"a"}]`,
		`{"name":`,
		`[{"zone":"eu"}]`,
		``,
		`null`,
		`"\ud800"`,
		`{"Secret":"s","-":"dash"}`,
	} {
		f.Add([]byte(s), "")
		f.Add([]byte(s), "[1]")
	}

	f.Fuzz(func(t *testing.T, raw []byte, path string) {
		var got fuzzBody
		err := Decode(raw, &got, path)
		if err != nil {
			fe, ok := errors.AsType[*FieldError](err)
			require.True(t, ok, "every error is a *FieldError: %v", err)
			require.NotEmpty(t, fe.Message)
			require.True(t, strings.HasPrefix(fe.Field, path), "field %q is under the path %q", fe.Field, path)
			if fe.Message == "unknown field" {
				require.NotEmpty(t, fe.Field, "an unknown field is named")
			}
			return
		}
		require.True(t, json.Valid(raw), "an accepted body is valid JSON")
		var lenient fuzzBody
		require.NoError(t, json.Unmarshal(raw, &lenient))
		require.Equal(t, lenient, got, "the strict decoder reads what the lenient one does")

		again, err := json.Marshal(got)
		require.NoError(t, err)
		var back fuzzBody
		require.NoError(t, Decode(again, &back, path), "a re-encoded body decodes: %s", again)
		require.Equal(t, got, back)
	})
}
