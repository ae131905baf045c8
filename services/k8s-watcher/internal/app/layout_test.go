package app

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/queue"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

// TestSharedLayout: a watcher configured with the control plane's shared
// layout takes its zone's leases from the shared streams and streams its
// objects there.
func TestSharedLayout(t *testing.T) {
	e := newEnvLayout(t, queue.LayoutShared)
	e.start(t, e.config(t))
	ns := e.kc.CreateNamespace(t)
	e.activated(t, e.spec("shared", ns), 1)
	_, err := e.kc.Client().CoreV1().ConfigMaps(ns).Create(context.Background(),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app"}, Data: map[string]string{"k": "v"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	d := e.waitDelta(t, "shared", "configmaps", ns, "app", func(*watchv1.ObjectDelta, map[string]string) bool { return true })
	require.Equal(t, "app", d.GetName())
}
