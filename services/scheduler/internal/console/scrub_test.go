package console

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestScrubbed(t *testing.T) {
	for _, tc := range []struct {
		name, kind, object string
		hidden             []string
		kept               []string
	}{
		{"secret values", "Secret", `{"data":{"password":"c2VjcmV0"},"stringData":{"token":"plain-token"},"type":"Opaque"}`, []string{"c2VjcmV0", "plain-token"}, []string{"password", "token", "Opaque"}},
		{"configmap kept", "ConfigMap", `{"data":{"a":"b-value"}}`, nil, []string{"b-value"}},
		{"empty", "Secret", ``, []string{"anything"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := scrubbed(object{Kind: tc.kind, Object: json.RawMessage(tc.object)})
			for _, h := range tc.hidden {
				require.NotContains(t, out, h)
			}
			for _, k := range tc.kept {
				require.Contains(t, out, k)
			}
		})
	}
}
