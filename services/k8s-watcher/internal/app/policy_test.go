package app

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
)

// TestActivationPolicy runs a watcher whose own configuration allows
// kubeconfig files in one directory, Secrets in one namespace and not its
// own ServiceAccount: accounts within those rules activate, the others fail
// with the rule in their error, whatever the control plane asked for.
func TestActivationPolicy(t *testing.T) {
	e := newEnv(t)
	allowedNS := e.kc.CreateNamespace(t)
	otherNS := e.kc.CreateNamespace(t)
	admin, err := os.ReadFile(e.kc.Kubeconfig)
	require.NoError(t, err)
	for _, ns := range []string{allowedNS, otherNS} {
		_, err = e.kc.Client().CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "cluster-creds"},
			Data:       map[string][]byte{"kubeconfig": admin},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	dir := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "team-a.kubeconfig"), admin, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(outside, "stolen.kubeconfig"), admin, 0o600))
	require.NoError(t, os.Symlink(filepath.Join(outside, "stolen.kubeconfig"), filepath.Join(dir, "link.kubeconfig")))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "elsewhere")))

	cfg := e.config(t)
	cfg.KubeconfigDir, cfg.SecretNamespaces, cfg.AllowServiceAccount = dir, []string{allowedNS}, false
	require.NoError(t, cfg.Validate())
	e.start(t, cfg)

	tests := []struct {
		name    string
		mutate  func(*accountsv1.AccountSpec)
		wantErr string // empty: activates
	}{
		{name: "file in the directory", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile = "file:" + filepath.Join(dir, "team-a.kubeconfig") }},
		{name: "relative file name", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile = "file:team-a.kubeconfig" }},
		{name: "secret in an allowed namespace", mutate: func(s *accountsv1.AccountSpec) {
			s.KubeconfigFile = "encryptedFile:k8s!n:cluster-creds!k:kubeconfig!ns:" + allowedNS
		}},
		{name: "file outside the directory", mutate: func(s *accountsv1.AccountSpec) {
			s.KubeconfigFile = "file:" + filepath.Join(outside, "stolen.kubeconfig")
		}, wantErr: "refused by the watcher's policy: file " + filepath.Join(outside, "stolen.kubeconfig") + " is not under kubeconfig_dir"},
		{name: "dot dot out of the directory", mutate: func(s *accountsv1.AccountSpec) {
			s.KubeconfigFile = "file:../" + filepath.Base(outside) + "/stolen.kubeconfig"
		}, wantErr: "is not under kubeconfig_dir"},
		{name: "linked file leading out", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile = "file:link.kubeconfig" },
			wantErr: "file link.kubeconfig leads out of kubeconfig_dir"},
		{name: "linked directory leading out", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile = "elsewhere/stolen.kubeconfig" },
			wantErr: "leads out of kubeconfig_dir"},
		{name: "secret in another namespace", mutate: func(s *accountsv1.AccountSpec) {
			s.KubeconfigFile = "encryptedFile:k8s!n:cluster-creds!k:kubeconfig!ns:" + otherNS
		}, wantErr: "namespace " + otherNS + " is not in secret_namespaces"},
		{name: "own service account", mutate: func(s *accountsv1.AccountSpec) { s.KubeconfigFile, s.ServiceAccount = "", true },
			wantErr: "allow_service_account is off"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := e.spec("pol"+itoa(i), allowedNS)
			tt.mutate(spec)
			if tt.wantErr == "" {
				st := e.activated(t, spec, 1)
				require.Equal(t, e.kc.Server, st.GetCluster().GetHost())
				return
			}
			e.lease(t, spec, 1)
			st := e.waitStatus(t, spec.GetName(), 1, accountsv1.AccountStatus_TYPE_FAILED)
			require.Contains(t, st.GetErrorMessage(), tt.wantErr)
		})
	}
}
