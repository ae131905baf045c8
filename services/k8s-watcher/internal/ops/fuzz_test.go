package ops

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzDocuments feeds Documents any manifests, as an Apply operation
// carries them. A failure is ErrBadOperation; every object it returns,
// List items included, names its apiVersion, kind and name and encodes as
// the JSON body of the apply, and the objects read back unchanged from
// that JSON.
func FuzzDocuments(f *testing.F) {
	for _, s := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b}\n",
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"data":{"k":"v"}}`,
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: b}}\n",
		"apiVersion: v1\nkind: List\nitems:\n- {kind: ConfigMap}\n- 3\n",
		"apiVersion: v1\nkind: ConfigMapList\nitems: []\n",
		"kind: [oops",
		"apiVersion: v1\nkind: ConfigMap\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {n: .nan, i: .inf}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: [a]}\n",
		"{}\n---\nnull\n---\n[]",
		`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"}} {"kind":`,
		"",
	} {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, manifests []byte) {
		docs, err := Documents(manifests)
		if err != nil {
			require.ErrorIs(t, err, ErrBadOperation)
			return
		}
		var all []byte
		for _, u := range docs {
			require.NotEmpty(t, u.GetAPIVersion(), "apiVersion")
			require.NotEmpty(t, u.GetKind(), "kind")
			require.NotEmpty(t, u.GetName(), "metadata.name")
			body, err := json.Marshal(u.Object)
			require.NoError(t, err, "the object encodes as an apply body")
			all = append(append(all, body...), '\n')
		}
		again, err := Documents(all)
		require.NoError(t, err, "the objects read back: %s", all)
		require.Len(t, again, len(docs))
		for i := range docs {
			require.Equal(t, docs[i].Object, again[i].Object)
		}
	})
}
