package cluster

import (
	"testing"

	"github.com/stretchr/testify/require"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestParseSecretRef(t *testing.T) {
	tests := []struct {
		ref     string
		want    SecretRef
		wantErr string
	}{
		{ref: "encryptedFile:k8s!n:creds!k:kubeconfig!ns:team", want: SecretRef{Namespace: "team", Name: "creds", Key: "kubeconfig"}},
		{ref: "encryptedFile:k8s!ns:team!k:config!n:creds", want: SecretRef{Namespace: "team", Name: "creds", Key: "config"}},
		{ref: "encryptedFile:vault!n:x", wantErr: "want encryptedFile:k8s"},
		{ref: "encryptedFile:k8s", wantErr: "want encryptedFile:k8s"},
		{ref: "encryptedFile:k8s!n:creds!k:config", wantErr: "n, k and ns are all required"},
		{ref: "encryptedFile:k8s!n:creds!k:config!ns:a!x:y", wantErr: `unknown field "x"`},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			got, err := ParseSecretRef(tt.ref)
			if tt.wantErr != "" {
				require.ErrorIs(t, err, ErrBadReference)
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSelection(t *testing.T) {
	deploy := Kind{GVR: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, Kind: "Deployment", Namespaced: true}
	nodes := Kind{GVR: schema.GroupVersionResource{Version: "v1", Resource: "nodes"}, Kind: "Node"}
	tests := []struct {
		name string
		sel  Selection
		kind Kind
		want bool
	}{
		{name: "everything", kind: deploy, want: true},
		{name: "by Kind any case", sel: Selection{Kinds: []string{"deployment"}}, kind: deploy, want: true},
		{name: "by resource", sel: Selection{Kinds: []string{"deployments"}}, kind: deploy, want: true},
		{name: "by resource.group", sel: Selection{Kinds: []string{"deployments.apps"}}, kind: deploy, want: true},
		{name: "other group", sel: Selection{Kinds: []string{"deployments.example.com"}}, kind: deploy, want: false},
		{name: "omitted", sel: Selection{OmitKinds: []string{"Deployment"}}, kind: deploy, want: false},
		{name: "cluster-scoped with namespaces", sel: Selection{Namespaces: []string{"a"}}, kind: nodes, want: false},
		{name: "namespaced with namespaces", sel: Selection{Namespaces: []string{"a"}}, kind: deploy, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, keep(tt.kind, tt.sel))
		})
	}
}
