package kubetest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"

	"github.com/outposthq/outpost/libs/kubetest"
)

func TestMain(m *testing.M) { kubetest.Main(m) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestClientGoNamespaceAndConfigMap(t *testing.T) {
	c := kubetest.Shared(t)
	ns := c.CreateNamespace(t)

	_, err := c.Client().CoreV1().ConfigMaps(ns).Create(ctx(t), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "settings"},
		Data:       map[string]string{"zone": "eu-1"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	got, err := c.Client().CoreV1().ConfigMaps(ns).Get(ctx(t), "settings", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "eu-1", got.Data["zone"])
	require.Equal(t, "eu-1", c.Kubectl(t, "-n", ns, "get", "configmap", "settings", "-o", "jsonpath={.data.zone}"))

	// The dynamic client sees the same object.
	u, err := c.Dynamic().Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).
		Namespace(ns).Get(ctx(t), "settings", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, got.ResourceVersion, u.GetResourceVersion())
}

func TestKubectlApplySecret(t *testing.T) {
	c := kubetest.Shared(t)
	ns := c.CreateNamespace(t)
	const secret = `apiVersion: v1
kind: Secret
metadata:
  name: db
type: Opaque
data:
  password: aHVudGVyMg== # hunter2
`
	manifest := filepath.Join(t.TempDir(), "secret.yaml")
	require.NoError(t, os.WriteFile(manifest, []byte(secret), 0o600))

	out := c.Kubectl(t, "-n", ns, "apply", "-f", manifest)
	require.Contains(t, out, "secret/db created")

	s, err := c.Client().CoreV1().Secrets(ns).Get(ctx(t), "db", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "hunter2", string(s.Data["password"]))
	last, ok := s.Annotations[corev1.LastAppliedConfigAnnotation]
	require.True(t, ok, "kubectl apply writes %s", corev1.LastAppliedConfigAnnotation)
	require.Contains(t, last, "aHVudGVyMg==", "the last-applied annotation holds the secret value, which is why the watcher strips it")

	// Applying again is a no-op; the command reads from stdin too.
	cmd := c.KubectlCommand(ctx(t), "-n", ns, "apply", "-f", "-")
	cmd.Stdin = strings.NewReader(secret)
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", b)
	require.Contains(t, string(b), "secret/db unchanged")
}

func TestDiscoveryAndVersion(t *testing.T) {
	c := kubetest.Shared(t)
	v, err := c.Client().Discovery().ServerVersion()
	require.NoError(t, err)
	require.Equal(t, kubetest.Version, v.GitVersion)

	lists, err := c.Client().Discovery().ServerPreferredResources()
	require.NoError(t, err)
	listWatch := map[string]bool{}
	for _, l := range lists {
		for _, r := range l.APIResources {
			verbs := strings.Join(r.Verbs, ",")
			if strings.Contains(verbs, "list") && strings.Contains(verbs, "watch") {
				listWatch[l.GroupVersion+"/"+r.Name] = true
			}
		}
	}
	for _, want := range []string{"v1/configmaps", "v1/secrets", "v1/namespaces", "v1/serviceaccounts",
		"apps/v1/deployments", "rbac.authorization.k8s.io/v1/roles"} {
		require.True(t, listWatch[want], "%s is listable and watchable", want)
	}
	require.Contains(t, c.Kubectl(t, "api-resources", "-o", "name"), "deployments.apps")
}

func TestServiceAccountWithNamespaceRole(t *testing.T) {
	c := kubetest.Shared(t)
	own, other := c.CreateNamespace(t), c.CreateNamespace(t)
	_, err := c.Client().RbacV1().Roles(own).Create(ctx(t), &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "read-configmaps"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"},
		}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = c.Client().RbacV1().RoleBindings(own).Create(ctx(t), &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "watcher-reads-configmaps"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: own, Name: "watcher"}},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "read-configmaps"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	kubeconfig := c.ServiceAccountKubeconfig(t, own, "watcher")
	sa := kubetest.ClientFor(t, kubeconfig)

	review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx(t), &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Equal(t, "system:serviceaccount:"+own+":watcher", review.Status.UserInfo.Username)

	_, err = sa.CoreV1().ConfigMaps(own).List(ctx(t), metav1.ListOptions{})
	require.NoError(t, err, "the Role allows listing configmaps in its namespace")
	_, err = sa.CoreV1().ConfigMaps(other).List(ctx(t), metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "other namespace: want 403, got %v", err)
	_, err = sa.CoreV1().ConfigMaps("").List(ctx(t), metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "all namespaces: want 403, got %v", err)
	_, err = sa.CoreV1().Secrets(own).List(ctx(t), metav1.ListOptions{})
	require.True(t, apierrors.IsForbidden(err), "secrets: want 403, got %v", err)

	require.Equal(t, "yes\n", c.Kubectl(t, "--kubeconfig="+kubeconfig, "auth", "can-i", "list", "configmaps", "-n", own))
	cmd := c.KubectlCommand(ctx(t), "--kubeconfig="+kubeconfig, "-n", other, "get", "configmaps")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "forbidden")
}

func TestBadTokenIsUnauthorized(t *testing.T) {
	c := kubetest.Shared(t)
	bad := kubetest.ClientFor(t, c.TokenKubeconfig(t, "expired", "not-a-valid-token"))
	_, err := bad.CoreV1().Namespaces().List(ctx(t), metav1.ListOptions{})
	require.True(t, apierrors.IsUnauthorized(err), "want 401, got %v", err)
}

// TestPrivateClusterRestart starts a cluster of its own, restarts its API
// server and finds the data still there.
func TestPrivateClusterRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a second cluster")
	}
	c := kubetest.Start(t)
	ns := c.CreateNamespace(t)
	_, err := c.Client().CoreV1().ConfigMaps(ns).Create(ctx(t), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "kept"},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	c.StopAPIServer(t)
	_, err = c.Client().CoreV1().ConfigMaps(ns).Get(ctx(t), "kept", metav1.GetOptions{})
	require.Error(t, err, "the API server is down")

	c.StartAPIServer(t)
	_, err = c.Client().CoreV1().ConfigMaps(ns).Get(ctx(t), "kept", metav1.GetOptions{})
	require.NoError(t, err)
	require.NoError(t, c.Stop())
	_, err = os.Stat(c.Kubeconfig)
	require.True(t, os.IsNotExist(err), "Stop removes the cluster folder")
}

// TestDynamicInformer watches ConfigMaps the way the k8s-watcher does: a
// dynamic informer sees the initial list and later changes.
func TestDynamicInformer(t *testing.T) {
	c := kubetest.Shared(t)
	ns := c.CreateNamespace(t)
	cms := c.Client().CoreV1().ConfigMaps(ns)
	_, err := cms.Create(ctx(t), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{})
	require.NoError(t, err)

	factory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(c.Dynamic(), 0, ns, nil)
	informer := factory.ForResource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Informer()
	var mu sync.Mutex
	seen := map[string]string{}
	_, err = informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { mu.Lock(); seen[obj.(metav1.Object).GetName()] = "added"; mu.Unlock() },
		UpdateFunc: func(_, obj any) { mu.Lock(); seen[obj.(metav1.Object).GetName()] = "updated"; mu.Unlock() },
		DeleteFunc: func(obj any) {
			if m, ok := obj.(metav1.Object); ok {
				mu.Lock()
				seen[m.GetName()] = "deleted"
				mu.Unlock()
			}
		},
	})
	require.NoError(t, err)
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop); factory.Shutdown() })
	factory.Start(stop)
	for gvr, ok := range factory.WaitForCacheSync(stop) {
		require.True(t, ok, "cache of %s synced", gvr)
	}
	state := func(name string) string { mu.Lock(); defer mu.Unlock(); return seen[name] }
	require.Equal(t, "added", state("before"))

	_, err = cms.Create(ctx(t), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return state("after") == "added" }, 10*time.Second, 20*time.Millisecond)
	_, err = cms.Update(ctx(t), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}, Data: map[string]string{"k": "v"}}, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return state("after") == "updated" }, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, cms.Delete(ctx(t), "before", metav1.DeleteOptions{}))
	require.Eventually(t, func() bool { return state("before") == "deleted" }, 10*time.Second, 20*time.Millisecond)
}
