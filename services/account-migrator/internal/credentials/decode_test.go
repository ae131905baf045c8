package credentials

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
)

func TestDecode(t *testing.T) {
	cases := []struct {
		name        string
		body        string
		wantErr     string
		wantIgnored []string
	}{
		{"minimal", `{"@type":"kubernetes","name":"a"}`, "", []string{}},
		{"ignored and read-only fields", `{"@type":"kubernetes","name":"a","cacheThreads":3,"debug":true,"dynamicAccount":{"state":"ACTIVE"},"ignoredFields":["x"]}`, "", []string{"cacheThreads", "debug"}},
		{"empty omitNamespaces", `{"@type":"kubernetes","name":"a","omitNamespaces":[]}`, "", []string{}},
		{"null body", `null`, "must be a JSON object", nil},
		{"type not a string", `{"@type":5,"name":"a"}`, "@type 5 is not supported", nil},
		{"unknown permission", `{"@type":"kubernetes","name":"a","permissions":{"EXECUTE":["g"]}}`, "EXECUTE", nil},
		{"namespaces and omitNamespaces", `{"@type":"kubernetes","name":"a","namespaces":["x"],"omitNamespaces":["y"]}`, "at most one of namespaces and omitNamespaces", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := decode([]byte(tc.body))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.wantIgnored, d.ignored)
		})
	}
}

func TestInput(t *testing.T) {
	decodeOf := func(body string) decoded {
		d, err := decode([]byte(body))
		require.NoError(t, err)
		return d
	}
	t.Run("create keeps what was sent", func(t *testing.T) {
		in := decodeOf(`{"@type":"kubernetes","name":"a","namespaces":["web"]}`).input(false)
		require.Nil(t, in.Kinds)
		require.Equal(t, []string{"web"}, *in.Namespaces)
		require.Equal(t, &accounts.Permissions{}, in.Permissions)
	})
	t.Run("replace clears the rest but keeps credentials", func(t *testing.T) {
		in := decodeOf(`{"@type":"kubernetes","name":"a","namespaces":["web"]}`).input(true)
		require.Equal(t, []string{}, *in.Kinds)
		require.Equal(t, []string{}, *in.OmitKinds)
		require.Empty(t, *in.Context)
		require.False(t, *in.ServiceAccount)
		require.Nil(t, in.KubeconfigFile)
		require.Nil(t, in.KubeconfigContents)
	})
	t.Run("replace with serviceAccount drops the kubeconfig", func(t *testing.T) {
		in := decodeOf(`{"@type":"kubernetes","name":"a","serviceAccount":true}`).input(true)
		require.Empty(t, *in.KubeconfigFile)
		require.Empty(t, *in.KubeconfigContents)
	})
	t.Run("requiredGroupMembership without permissions", func(t *testing.T) {
		in := decodeOf(`{"@type":"kubernetes","name":"a","requiredGroupMembership":["g"]}`).input(false)
		require.Equal(t, &accounts.Permissions{Read: []string{"g"}, Write: []string{"g"}}, in.Permissions)
	})
}
