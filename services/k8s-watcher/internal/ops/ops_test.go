package ops

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDocuments(t *testing.T) {
	tests := []struct {
		name      string
		manifests string
		want      []string
		wantErr   string
	}{
		{name: "yaml documents", manifests: "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n", want: []string{"ConfigMap/a", "Secret/b"}},
		{name: "json", manifests: `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}}`, want: []string{"ConfigMap/a"}},
		{name: "list", manifests: "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n", want: []string{"ConfigMap/a", "ConfigMap/b"}},
		{name: "not yaml", manifests: "kind: [oops", wantErr: "manifest document 1"},
		{name: "no name", manifests: "apiVersion: v1\nkind: ConfigMap\n", wantErr: "metadata.name"},
		{name: "list item without a name", manifests: "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap}\n", wantErr: "manifest document 1: item 2: apiVersion, kind and metadata.name are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := Documents([]byte(tt.manifests))
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrBadOperation)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			var got []string
			for _, d := range docs {
				got = append(got, d.GetKind()+"/"+d.GetName())
			}
			require.Equal(t, tt.want, got)
		})
	}
}
