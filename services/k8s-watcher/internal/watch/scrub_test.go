package watch

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestScrub(t *testing.T) {
	tests := []struct {
		name   string
		gvr    schema.GroupVersionResource
		obj    map[string]any
		absent []string
		want   map[string]any
	}{
		{
			name: "secret",
			gvr:  secrets,
			obj: map[string]any{
				"apiVersion": "v1", "kind": "Secret",
				"metadata": map[string]any{
					"name":          "s",
					"annotations":   map[string]any{LastAppliedAnnotation: `{"data":{"k":"c2VjcmV0"}}`},
					"managedFields": []any{map[string]any{"manager": "kubectl"}},
				},
				"data":       map[string]any{"k": "c2VjcmV0", "other": "eA=="},
				"stringData": map[string]any{"k": "secret"},
			},
			absent: []string{"c2VjcmV0", "secret\"", "eA==", "managedFields", "last-applied"},
			want:   map[string]any{"k": "", "other": ""},
		},
		{
			name: "configmap keeps data",
			gvr:  schema.GroupVersionResource{Version: "v1", Resource: "configmaps"},
			obj: map[string]any{
				"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{
					"name":        "c",
					"annotations": map[string]any{LastAppliedAnnotation: "{}", "keep": "me"},
				},
				"data": map[string]any{"k": "visible"},
			},
			absent: []string{"last-applied"},
			want:   map[string]any{"k": "visible"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &unstructured.Unstructured{Object: tt.obj}
			u.SetNamespace("ns")
			u.SetResourceVersion("7")
			u.SetUID("u-1")
			var out any = u
			for range 2 { // idempotent
				var err error
				out, err = Scrubber(tt.gvr)(out)
				require.NoError(t, err)
			}
			c, ok := out.(*cached)
			require.True(t, ok, "cached in compact form, got %T", out)
			require.Equal(t, metav1.ObjectMeta{Namespace: "ns", Name: u.GetName(), UID: "u-1", ResourceVersion: "7"}, c.meta)
			raw, err := json.Marshal(u.Object)
			require.NoError(t, err)
			require.Equal(t, string(raw), string(c.raw), "the scrubbed object, encoded once")
			for _, s := range tt.absent {
				require.NotContains(t, string(c.raw), s)
			}
			require.Equal(t, tt.want, u.Object["data"])
		})
	}
}
