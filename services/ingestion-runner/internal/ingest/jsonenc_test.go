package ingest

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"
)

// TestJSONWriterMatchesProtojson: strings and numbers come out as
// protojson writes them in a Struct, the encoding the sinks used before.
func TestJSONWriterMatchesProtojson(t *testing.T) {
	ascii := make([]byte, 128)
	for i := range ascii {
		ascii[i] = byte(i)
	}
	values := []any{
		string(ascii), "", "plain", `<b>&"q"</b>`, "é✓ 😀 \u2028\u2029 \ufeff", "tab\tnew\nline\r\b\f",
		0.0, 1.0, -1.0, 0.5, 1.0 / 3, 1767323045000.0, 1e21, 1e-7, 123456789.125, math.MaxInt32 * 3.0, 2e-6,
		true, false, nil,
		map[string]any{"b": "x", "a": []any{1.0, "y", map[string]any{"Z": true, "z": nil}}, "": []any{}},
	}
	for _, v := range values {
		pv, err := structpb.NewValue(v)
		require.NoError(t, err)
		want, err := protojson.Marshal(pv)
		require.NoError(t, err)
		w := jsonWriter{}
		w.value(v)
		require.NoError(t, w.err)
		require.Equal(t, string(compact(t, want)), string(w.b), "%#v", v)
	}
}

func TestJSONWriterRefusesInvalidUTF8(t *testing.T) {
	for _, s := range []string{"\xff", "ok\xc3", "a\xed\xa0\x80b"} {
		w := jsonWriter{}
		w.str(s)
		require.ErrorIs(t, w.err, errInvalidUTF8, "%q", s)
		rec := &Record{URN: "urn:li:x", aspects: []namedAspect{{"subTypes", subTypesAspect{name: s}}}}
		_, err := rec.AppendJSON(nil)
		require.ErrorIs(t, err, errInvalidUTF8)
	}
}

// compact drops the spaces protojson may add at random.
func compact(t *testing.T, raw []byte) []byte {
	t.Helper()
	v := &structpb.Value{}
	require.NoError(t, protojson.Unmarshal(raw, v))
	out, err := protojson.MarshalOptions{}.Marshal(v)
	require.NoError(t, err)
	b := make([]byte, 0, len(out))
	inString, esc := false, false
	for _, c := range out {
		switch {
		case esc:
			esc = false
		case inString && c == '\\':
			esc = true
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\n'):
			continue
		}
		b = append(b, c)
	}
	return b
}
