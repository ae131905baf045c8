package ship

import (
	"context"
	"encoding/base64"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/kubetest"
)

// The scheduler's replicas share the console's session key: the chart
// mounts the Secret it is given, or makes one whose key an upgrade keeps,
// and makes none when the console is off.
func TestHelmConsoleSessionKey(t *testing.T) {
	helm := helmBinary(t)
	cluster := kubetest.Shared(t)
	client := cluster.Client()
	ctx := context.Background()
	vendor := filepath.Join(chartDir(t), "values-vendor.yaml")
	install := func(t *testing.T, verb, ns, release string, set ...string) {
		t.Helper()
		args := []string{verb, release, chartDir(t), "--kubeconfig", cluster.Kubeconfig, "--namespace", ns, "-f", vendor}
		for _, s := range set {
			args = append(args, "--set", s)
		}
		require.Contains(t, mustRun(t, nil, helm, args...), "STATUS: deployed")
	}
	sessionEnv := func(t *testing.T, ns, release string) (string, []corev1.Volume) {
		t.Helper()
		d, err := client.AppsV1().Deployments(ns).Get(ctx, release+"-scheduler", metav1.GetOptions{})
		require.NoError(t, err)
		return envOf(d)["OUTPOST_CONSOLE_SESSION_KEY_FILE"], d.Spec.Template.Spec.Volumes
	}
	secretOf := func(t *testing.T, vols []corev1.Volume) string {
		t.Helper()
		for _, v := range vols {
			if v.Name == "cred-console-session-key" {
				return v.Secret.SecretName
			}
		}
		t.Fatalf("no session key volume in %v", vols)
		return ""
	}

	t.Run("made by the chart and kept across upgrades", func(t *testing.T) {
		ns := cluster.CreateNamespace(t)
		install(t, "install", ns, "o")
		path, vols := sessionEnv(t, ns, "o")
		require.Equal(t, "/var/run/secrets/outpost/consoleSessionKey/key", path)
		require.Equal(t, "o-scheduler-console-session", secretOf(t, vols))
		s, err := client.CoreV1().Secrets(ns).Get(ctx, "o-scheduler-console-session", metav1.GetOptions{})
		require.NoError(t, err)
		key, err := base64.StdEncoding.DecodeString(string(s.Data["key"]))
		require.NoError(t, err, "the file holds the key in base64, as console.session_key_file reads it")
		require.Len(t, key, 32)

		install(t, "upgrade", ns, "o", "scheduler.replicas=3")
		again, err := client.CoreV1().Secrets(ns).Get(ctx, "o-scheduler-console-session", metav1.GetOptions{})
		require.NoError(t, err)
		require.Equal(t, s.Data["key"], again.Data["key"], "an upgrade keeps the key: nobody is signed out")
	})

	t.Run("given by the operator", func(t *testing.T) {
		ns := cluster.CreateNamespace(t)
		install(t, "install", ns, "o", "scheduler.credentials.consoleSessionKey.existingSecret=mine")
		path, vols := sessionEnv(t, ns, "o")
		require.Equal(t, "/var/run/secrets/outpost/consoleSessionKey/key", path)
		require.Equal(t, "mine", secretOf(t, vols))
		_, err := client.CoreV1().Secrets(ns).Get(ctx, "o-scheduler-console-session", metav1.GetOptions{})
		require.Error(t, err, "no Secret of the chart's own")
	})

	t.Run("none when the console is off", func(t *testing.T) {
		ns := cluster.CreateNamespace(t)
		install(t, "install", ns, "o", "scheduler.config.console.disabled=true")
		path, _ := sessionEnv(t, ns, "o")
		require.Empty(t, path)
		_, err := client.CoreV1().Secrets(ns).Get(ctx, "o-scheduler-console-session", metav1.GetOptions{})
		require.Error(t, err)
	})
}
