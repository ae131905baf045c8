package app_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/app"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/config"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/kubejob"
)

func TestKubernetesTaskFromConfig(t *testing.T) {
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	require.NoError(t, os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	base := config.Default()
	base.Tenant = "acme"
	base.KubernetesJob = config.KubernetesJob{
		Namespace: "jobs", Kubeconfig: kubeconfig,
		UserServiceAccounts: []string{"alice=ksa-alice"}, ProjectServiceAccounts: []string{"analytics=ksa-analytics"},
		PollInterval: 2 * time.Second, TTLAfterFinished: time.Minute,
	}
	require.NoError(t, base.Validate())

	cases := []struct {
		name          string
		defaultSA     string
		user, project string
		want          string
		wantErr       error
	}{
		{"user map", "", "alice", "analytics", "ksa-alice", nil},
		{"project map", "", "bob", "analytics", "ksa-analytics", nil},
		{"default", "jobs-default", "bob", "", "jobs-default", nil},
		{"refused without a default", "", "bob", "", "", kubejob.ErrNoServiceAccount},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			cfg.KubernetesJob.DefaultServiceAccount = tc.defaultSA
			task, err := app.KubernetesTask(cfg, nil)
			require.NoError(t, err)
			require.Equal(t, "jobs", task.Namespace)
			require.Equal(t, 2*time.Second, task.PollInterval)
			sa, _, err := task.Accounts.For(tc.user, tc.project)
			require.ErrorIs(t, err, tc.wantErr)
			require.Equal(t, tc.want, sa)
		})
	}

	t.Run("a missing kubeconfig fails at start", func(t *testing.T) {
		cfg := base
		cfg.KubernetesJob.Kubeconfig = filepath.Join(t.TempDir(), "missing")
		_, err := app.KubernetesTask(cfg, nil)
		require.ErrorContains(t, err, "kubernetes client configuration")
	})
}
