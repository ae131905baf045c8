package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/tests/harness"
)

// The seed's two curl bodies, verbatim: add two accounts, then migrate them.
const (
	seedPost = `[
 {
 "name": "account-01"
 },
 {
 "name": "account-02",
 "zoneId": "agent-1_namespace1",
 "kubeconfigFile": "encryptedFile:k8s!n:kubeconfig!k:config!ns:spinnaker"
 }
 ]`
	seedPatch = `[
 {
 "name": "account-01",
 "state": "ACTIVE"
 },
 {
 "name": "account-02",
 "state": "ACTIVE",
 "zoneId": "agent-1_namespace1",
 "kubeconfigFile": "encryptedFile:k8s!n:kubeconfig!k:config!ns:spinnaker"
 }
]`
)

// TestAccountsSeedFlow runs the Dynamic Accounts walk-through end to end:
// the seed's POST then PATCH bring both accounts to ACTIVE through a real
// watcher; objects made with kubectl appear in, change in and leave the
// inventory API; a Secret applied with kubectl shows its keys and no value
// anywhere on the broker.
func TestAccountsSeedFlow(t *testing.T) {
	kc := kubetest.Shared(t)
	ctx := context.Background()
	// account-02's kubeconfig lives in a Secret of the watcher's own
	// cluster, where the seed puts it.
	ensureNamespace(t, kc, "spinnaker")
	admin, err := os.ReadFile(kc.Kubeconfig)
	require.NoError(t, err)
	_, err = kc.Client().CoreV1().Secrets("spinnaker").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "kubeconfig"},
		Data:       map[string][]byte{"config": admin},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	p := harness.StartPlane(t, harness.PlaneOptions{})
	p.StartWatcher("agent-1", "agent-1_namespace1", kc.Kubeconfig, nil)
	c := p.Client()

	code, body := c.Do(http.MethodPost, "/armory/accounts", json.RawMessage(seedPost))
	require.Equal(t, http.StatusOK, code, "%s", body)
	for _, name := range []string{"account-01", "account-02"} {
		require.Equal(t, "INACTIVE", c.Account(name).State)
	}
	code, body = c.Do(http.MethodPatch, "/armory/accounts", json.RawMessage(seedPatch))
	require.Equal(t, http.StatusOK, code, "%s", body)

	for _, name := range []string{"account-01", "account-02"} {
		a := c.WaitAccountState(name, "ACTIVE", 60*time.Second)
		require.Equal(t, "agent-1_namespace1", a.ZoneID, "%s: an account without a zone takes the zone of the watcher that could reach it", name)
		require.Equal(t, "agent-1", a.Agent)
		require.Equal(t, kc.Server, a.Cluster.Host)
		require.Len(t, a.Cluster.CAFingerprintSHA256, 64)
		require.NotEmpty(t, a.Cluster.ServerVersion)
		require.Zero(t, a.FailedCount)
	}

	ns := kc.CreateNamespace(t)
	manifest := filepath.Join(t.TempDir(), "cm.yaml")
	writeConfigMap(t, manifest, ns, "app-config", "v1")
	kc.Kubectl(t, "apply", "-f", manifest)
	waitObject(t, c, "account-02", "kind=configmaps&namespace="+ns, "app-config", func(o harness.InventoryObject) bool {
		return dataField(o, "mode") == "v1"
	})
	writeConfigMap(t, manifest, ns, "app-config", "v2")
	kc.Kubectl(t, "apply", "-f", manifest)
	waitObject(t, c, "account-02", "kind=ConfigMap&namespace="+ns, "app-config", func(o harness.InventoryObject) bool {
		return dataField(o, "mode") == "v2"
	})
	code, body = c.Do(http.MethodGet, "/api/v1/accounts/account-02/objects/configmaps/"+ns+"/app-config", nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	kc.Kubectl(t, "delete", "configmap", "app-config", "-n", ns)
	require.Eventually(t, func() bool {
		code, _, err := c.Try(http.MethodGet, "/api/v1/accounts/account-02/objects/configmaps/"+ns+"/app-config", nil)
		return err == nil && code == http.StatusNotFound
	}, 20*time.Second, 50*time.Millisecond, "a deleted ConfigMap leaves the inventory")

	// kubectl apply keeps the whole object, values included, in the
	// last-applied annotation: the watcher must drop that too.
	secretValue := "s3cr3t-" + strings.ReplaceAll(ns, "-", "")
	secretFile := filepath.Join(t.TempDir(), "secret.yaml")
	require.NoError(t, os.WriteFile(secretFile, []byte(`apiVersion: v1
kind: Secret
metadata:
  name: db-credentials
  namespace: `+ns+`
stringData:
  username: admin
  password: `+secretValue+`
`), 0o600))
	kc.Kubectl(t, "apply", "-f", secretFile)
	sec := waitObject(t, c, "account-02", "kind=secrets&namespace="+ns, "db-credentials", func(harness.InventoryObject) bool { return true })
	data, _ := sec.Object["data"].(map[string]any)
	require.ElementsMatch(t, []string{"password", "username"}, slices.Collect(maps.Keys(data)), "the Secret's keys stay visible")
	for k, v := range data {
		require.Empty(t, v, "value of key %s", k)
	}
	annotations, _ := sec.Object["metadata"].(map[string]any)["annotations"].(map[string]any)
	require.NotContains(t, annotations, "kubectl.kubernetes.io/last-applied-configuration")
	noSecretOnBroker(t, p.NATS, secretValue, base64.StdEncoding.EncodeToString([]byte(secretValue)))
	require.NotContains(t, p.Migrator.Logs(), secretValue)
}

// TestAccountsKindsAndNamespacedRole checks kinds / omitKinds, and a
// watcher whose own ServiceAccount is bound to a Role in one namespace: the
// kinds it may not list are reported and skipped, the rest is watched.
func TestAccountsKindsAndNamespacedRole(t *testing.T) {
	kc := kubetest.Shared(t)
	ctx := context.Background()
	ns := kc.CreateNamespace(t)
	_, err := kc.Client().CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "watcher"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kc.Client().RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "watcher"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"configmaps", "services"},
			Verbs: []string{"get", "list", "watch"},
		}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kc.Client().RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "watcher"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "watcher"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "watcher", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	for _, name := range []string{"one", "two"} {
		_, err = kc.Client().CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		require.NoError(t, err)
	}
	_, err = kc.Client().CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)

	p := harness.StartPlane(t, harness.PlaneOptions{})
	p.StartWatcher("admin-watcher", "admin", kc.Kubeconfig, nil)
	p.StartWatcher("scoped-watcher", "scoped", kc.ServiceAccountKubeconfig(t, ns, "watcher"), nil)
	c := p.Client()
	code, body := c.Do(http.MethodPost, "/api/v1/accounts", []map[string]any{
		{"name": "only-configmaps", "state": "ACTIVE", "zoneId": "admin", "serviceAccount": true, "kinds": []string{"ConfigMap"}, "namespaces": []string{ns}},
		{"name": "no-configmaps", "state": "ACTIVE", "zoneId": "admin", "serviceAccount": true, "omitKinds": []string{"configmaps", "Secret"}, "namespaces": []string{ns}},
		{"name": "scoped", "state": "ACTIVE", "zoneId": "scoped", "serviceAccount": true, "namespaces": []string{ns}},
	})
	require.Equal(t, http.StatusOK, code, "%s", body)

	kindsOf := func(account string) []string {
		objs := waitObjects(t, c, account, "namespace="+ns, func(objs []harness.InventoryObject) bool { return len(objs) > 0 })
		var kinds []string
		for _, o := range objs {
			if !slices.Contains(kinds, o.Kind) {
				kinds = append(kinds, o.Kind)
			}
		}
		return kinds
	}
	a := c.WaitAccountState("only-configmaps", "ACTIVE", 60*time.Second)
	require.Len(t, a.Kinds, 1)
	require.Equal(t, "ConfigMap", a.Kinds[0].Kind)
	waitObjects(t, c, "only-configmaps", "namespace="+ns, func(objs []harness.InventoryObject) bool { return len(objs) >= 2 })
	require.Equal(t, []string{"ConfigMap"}, kindsOf("only-configmaps"))

	c.WaitAccountState("no-configmaps", "ACTIVE", 60*time.Second)
	waitObjects(t, c, "no-configmaps", "kind=services&namespace="+ns, func(objs []harness.InventoryObject) bool { return len(objs) == 1 })
	require.NotContains(t, kindsOf("no-configmaps"), "ConfigMap")
	require.NotContains(t, kindsOf("no-configmaps"), "Secret")

	a = c.WaitAccountState("scoped", "ACTIVE", 60*time.Second)
	require.NotEmpty(t, a.SkippedKinds, "kinds the Role does not allow are reported")
	for _, s := range a.SkippedKinds {
		require.NotEmpty(t, s.Reason, s.Kind)
	}
	watched := map[string]bool{}
	for _, k := range a.Kinds {
		watched[k.Kind] = true
	}
	require.True(t, watched["ConfigMap"] && watched["Service"], "kinds %+v", a.Kinds)
	require.False(t, watched["Secret"], "the Role does not allow Secrets")
	waitObjects(t, c, "scoped", "kind=configmaps&namespace="+ns, func(objs []harness.InventoryObject) bool { return len(objs) >= 2 })
}

// TestAccountsBrokenKubeconfigRetries: an inline kubeconfig that does not
// parse fails, is retried max_retries (3) times a second apart, and stops;
// PATCH to ACTIVE starts the retries over.
func TestAccountsBrokenKubeconfigRetries(t *testing.T) {
	p := harness.StartPlane(t, harness.PlaneOptions{})
	p.StartWatcher("w1", "zone-a", "", nil)
	c := p.Client()
	broken := "apiVersion: v1\nkind: Config\nclusters: [this is not a kubeconfig"
	code, body := c.Do(http.MethodPost, "/api/v1/accounts", []map[string]any{
		{"name": "broken", "state": "ACTIVE", "zoneId": "zone-a", "kubeconfigContents": broken},
	})
	require.Equal(t, http.StatusOK, code, "%s", body)

	start := time.Now()
	a := c.WaitAccount("broken", 60*time.Second, func(a harness.Account) bool { return a.State == "FAILED" && a.FailedCount == 4 })
	require.Contains(t, strings.ToLower(a.ErrorMessage), "kubeconfig")
	require.GreaterOrEqual(t, time.Since(start), 3*time.Second, "three retries, one second apart")
	require.Never(t, func() bool {
		code, body, err := c.Try(http.MethodGet, "/api/v1/accounts/broken", nil)
		var got harness.Account
		return err == nil && code == http.StatusOK && json.Unmarshal(body, &got) == nil && got.FailedCount > 4
	}, 3*time.Second, 100*time.Millisecond, "retries stop after max_retries")
	require.NotContains(t, p.Migrator.Logs(), "this is not a kubeconfig", "inline kubeconfigs are never logged")
	code, body = c.Do(http.MethodGet, "/api/v1/accounts/broken", nil)
	require.Equal(t, http.StatusOK, code)
	require.NotContains(t, string(body), "this is not a kubeconfig", "GET never returns an inline kubeconfig")

	code, body = c.Do(http.MethodPatch, "/api/v1/accounts", []map[string]any{{"name": "broken", "state": "ACTIVE"}})
	require.Equal(t, http.StatusOK, code, "%s", body)
	c.WaitAccount("broken", 30*time.Second, func(a harness.Account) bool { return a.FailedCount >= 1 && a.FailedCount < 4 })
	c.WaitAccount("broken", 60*time.Second, func(a harness.Account) bool { return a.State == "FAILED" && a.FailedCount == 4 })
}

// TestAccountsWatcherFailover: with two replicas in a zone, kill -9 of one
// moves its accounts to the other within the lease ack wait; with every
// replica stopped the accounts are ORPHANED; the first replica back brings
// them to ACTIVE.
func TestAccountsWatcherFailover(t *testing.T) {
	kc := kubetest.Shared(t)
	p := harness.StartPlane(t, harness.PlaneOptions{})
	w1 := p.StartWatcher("w1", "zone-a", kc.Kubeconfig, nil)
	c := p.Client()
	names := []string{"fo-1", "fo-2", "fo-3"}
	var accounts []map[string]any
	for _, n := range names {
		accounts = append(accounts, map[string]any{"name": n, "state": "ACTIVE", "zoneId": "zone-a", "serviceAccount": true, "kinds": []string{"Namespace"}})
	}
	code, body := c.Do(http.MethodPost, "/api/v1/accounts", accounts)
	require.Equal(t, http.StatusOK, code, "%s", body)
	for _, n := range names {
		require.Equal(t, "w1", c.WaitAccountState(n, "ACTIVE", 60*time.Second).Agent)
	}
	w2 := p.StartWatcher("w2", "zone-a", kc.Kubeconfig, nil)

	w1.Kill()
	for _, n := range names {
		c.WaitAccount(n, 30*time.Second, func(a harness.Account) bool { return a.State == "ACTIVE" && a.Agent == "w2" })
	}

	w2.Stop(30 * time.Second)
	for _, n := range names {
		c.WaitAccountState(n, "ORPHANED", 30*time.Second)
	}
	p.StartWatcher("w3", "zone-a", kc.Kubeconfig, nil)
	for _, n := range names {
		c.WaitAccount(n, 30*time.Second, func(a harness.Account) bool { return a.State == "ACTIVE" && a.Agent == "w3" })
	}
}

// TestAccountsOperations: an apply operation creates a Deployment, a scale
// changes it, and a bad manifest returns the Kubernetes error.
func TestAccountsOperations(t *testing.T) {
	kc := kubetest.Shared(t)
	ns := kc.CreateNamespace(t)
	p := harness.StartPlane(t, harness.PlaneOptions{})
	p.StartWatcher("w1", "zone-a", kc.Kubeconfig, nil)
	c := p.Client()
	code, body := c.Do(http.MethodPost, "/api/v1/accounts", []map[string]any{
		{"name": "deployer", "state": "ACTIVE", "zoneId": "zone-a", "serviceAccount": true, "kinds": []string{"Deployment"}, "namespaces": []string{ns}},
	})
	require.Equal(t, http.StatusOK, code, "%s", body)
	c.WaitAccountState("deployer", "ACTIVE", 60*time.Second)

	deployment := `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: ` + ns + `
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
`
	res := operation(t, c, "deployer", map[string]any{"type": "apply", "manifests": deployment})
	require.Equal(t, true, res["ok"], "%v", res)
	d, err := kc.Client().AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int32(1), *d.Spec.Replicas)
	waitObject(t, c, "deployer", "kind=deployments.apps&namespace="+ns, "web", func(harness.InventoryObject) bool { return true })

	res = operation(t, c, "deployer", map[string]any{"type": "scale", "apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": "web", "replicas": 3})
	require.Equal(t, true, res["ok"], "%v", res)
	d, err = kc.Client().AppsV1().Deployments(ns).Get(context.Background(), "web", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int32(3), *d.Spec.Replicas)

	bad := strings.Replace(deployment, "replicas: 1", "replicas: many", 1)
	res = operation(t, c, "deployer", map[string]any{"type": "apply", "manifests": bad})
	require.Equal(t, false, res["ok"], "%v", res)
	require.NotEmpty(t, res["error"])

	res = operation(t, c, "deployer", map[string]any{"type": "delete", "apiVersion": "apps/v1", "kind": "Deployment", "namespace": ns, "name": "web"})
	require.Equal(t, true, res["ok"], "%v", res)
}

// operation posts an operation, waits for its result and returns it.
func operation(t *testing.T, c *harness.Client, account string, op map[string]any) map[string]any {
	t.Helper()
	code, body := c.Do(http.MethodPost, "/api/v1/accounts/"+account+"/operations?wait=30s", op)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var res map[string]any
	require.NoError(t, json.Unmarshal(body, &res))
	if inner, ok := res["result"].(map[string]any); ok {
		return inner
	}
	return res
}

func ensureNamespace(t *testing.T, kc *kubetest.Cluster, name string) {
	t.Helper()
	_, err := kc.Client().CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		require.NoError(t, err)
	}
}

func writeConfigMap(t *testing.T, path, ns, name, mode string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: "+name+"\n  namespace: "+ns+"\ndata:\n  mode: "+mode+"\n"), 0o600))
}

// waitObjects polls an account's inventory until cond holds.
func waitObjects(t *testing.T, c *harness.Client, account, query string, cond func([]harness.InventoryObject) bool) []harness.InventoryObject {
	t.Helper()
	var last []harness.InventoryObject
	var lastErr error
	require.Eventually(t, func() bool {
		last, lastErr = c.Objects(account, query)
		return lastErr == nil && cond(last)
	}, 30*time.Second, 100*time.Millisecond, "inventory of %s (%s): %d objects, %v", account, query, len(last), lastErr)
	return last
}

// waitObject waits until the named object is in the inventory and cond
// holds for it.
func waitObject(t *testing.T, c *harness.Client, account, query, name string, cond func(harness.InventoryObject) bool) harness.InventoryObject {
	t.Helper()
	var found harness.InventoryObject
	waitObjects(t, c, account, query, func(objs []harness.InventoryObject) bool {
		for _, o := range objs {
			if o.Name == name && cond(o) {
				found = o
				return true
			}
		}
		return false
	})
	return found
}

func dataField(o harness.InventoryObject, key string) string {
	data, _ := o.Object["data"].(map[string]any)
	s, _ := data[key].(string)
	return s
}
