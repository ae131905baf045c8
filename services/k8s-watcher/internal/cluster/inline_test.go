package cluster

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/seal"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
)

const inlineBase = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:6443"%s}
contexts:
- name: c
  context: {cluster: c, user: u}
current-context: c
users:
- name: u
  user: %s
`

// TestSealedKubeconfigPolicy: a sealed inline kubeconfig comes from the
// control plane, so it may carry credentials as data only; one that
// would run a plugin or read a local file of the watcher's host is
// refused before anything runs or is read.
func TestSealedKubeconfigPolicy(t *testing.T) {
	keys, err := seal.NewKeyring([]seal.Key{{ID: "k1", Secret: make([]byte, seal.KeySize)}}, nil)
	require.NoError(t, err)
	r := &Resolver{Keys: keys, Tenant: "acme"}
	tests := []struct {
		name, cluster, user, wantErr string
	}{
		{name: "token as data", user: "{token: abc}"},
		{name: "exec plugin", user: "{exec: {apiVersion: client.authentication.k8s.io/v1, command: /bin/sh, args: [-c, 'touch /tmp/x']}}", wantErr: "runs a credential plugin (exec)"},
		{name: "auth provider", user: "{auth-provider: {name: oidc}}", wantErr: "uses an auth provider"},
		{name: "token file", user: "{tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token}", wantErr: "names a local file"},
		{name: "client key file", user: "{client-certificate: /etc/x.crt, client-key: /etc/x.key}", wantErr: "names a local file"},
		{name: "ca file", cluster: ", certificate-authority: /etc/ca.crt", user: "{token: abc}", wantErr: "names a local CA file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kc := []byte(fmtInline(tt.cluster, tt.user))
			box, err := keys.Seal("acme", kc)
			require.NoError(t, err)
			rc, err := r.RESTConfig(context.Background(), &accountsv1.AccountSpec{KubeconfigSealed: box})
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, "https://127.0.0.1:6443", rc.Host)
				return
			}
			require.ErrorIs(t, err, ErrRefused)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func fmtInline(cluster, user string) string {
	return fmt.Sprintf(inlineBase, cluster, user)
}
