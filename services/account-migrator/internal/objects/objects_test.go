package objects

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
)

func TestResolveKind(t *testing.T) {
	kinds := []accounts.Kind{
		{Version: "v1", Kind: "ConfigMap", Resource: "configmaps", Namespaced: true, Token: inventory.KindToken("", "configmaps")},
		{Group: "apps", Version: "v1", Kind: "Deployment", Resource: "deployments", Namespaced: true, Token: inventory.KindToken("apps", "deployments")},
		{Group: "extensions.example.com", Version: "v1", Kind: "Deployment", Resource: "deployments", Namespaced: true, Token: inventory.KindToken("extensions.example.com", "deployments")},
	}
	tests := []struct {
		q     string
		token string
		err   string
	}{
		{q: "configmaps", token: "configmaps"},
		{q: "ConfigMap", token: "configmaps"},
		{q: "CONFIGMAPS", token: "configmaps"},
		{q: "deployments.apps", token: "deployments%2Eapps"},
		{q: "deployments%2Eapps", token: "deployments%2Eapps"},
		{q: "deployments.extensions.example.com", token: "deployments%2Eextensions%2Eexample%2Ecom"},
		{q: "Deployment", token: "deployments%2Eapps"}, // the first one recorded
		{q: "pods", err: "known kinds are configmaps, deployments.apps, deployments.extensions.example.com"},
	}
	for _, tt := range tests {
		t.Run(tt.q, func(t *testing.T) {
			k, err := ResolveKind(kinds, tt.q)
			if tt.err != "" {
				require.ErrorIs(t, err, ErrUnknownKind)
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.token, k.Token)
		})
	}
	_, err := ResolveKind(nil, "pods")
	require.ErrorContains(t, err, "not been activated yet")
}
