package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/tests/harness"
)

// spinnakerKubeconfig makes a ServiceAccount that may read ConfigMaps and
// Services of ns and returns a self-contained kubeconfig of it: what a
// Spinnaker user's tooling would send as kubeconfigContents.
func spinnakerKubeconfig(t *testing.T, kc *kubetest.Cluster, ns string) string {
	t.Helper()
	ctx := context.Background()
	_, err := kc.Client().CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "spinnaker"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kc.Client().RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "spinnaker"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""}, Resources: []string{"configmaps", "services"}, Verbs: []string{"get", "list", "watch"},
		}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	_, err = kc.Client().RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "spinnaker"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "spinnaker"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "spinnaker", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	raw, err := os.ReadFile(kc.ServiceAccountKubeconfig(t, ns, "spinnaker"))
	require.NoError(t, err)
	return string(raw)
}

func createConfigMap(t *testing.T, kc *kubetest.Cluster, ns, name string) {
	t.Helper()
	_, err := kc.Client().CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	require.NoError(t, err)
}

func createService(t *testing.T, kc *kubetest.Cluster, ns, name string) {
	t.Helper()
	_, err := kc.Client().CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// heldBy lists the accounts the watchers of zone say they hold.
func heldBy(c *harness.Client, zone string) ([]string, error) {
	code, body, err := c.Try(http.MethodGet, "/api/v1/zones", nil)
	if err != nil || code != http.StatusOK {
		return nil, err
	}
	var out struct {
		Zones []struct {
			ZoneID   string `json:"zoneId"`
			Watchers []struct {
				Live     bool `json:"live"`
				Accounts []struct {
					Account string `json:"account"`
				} `json:"accounts"`
			} `json:"watchers"`
		} `json:"zones"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, err
	}
	var held []string
	for _, z := range out.Zones {
		for _, w := range z.Watchers {
			for _, a := range w.Accounts {
				if z.ZoneID == zone && w.Live {
					held = append(held, a.Account)
				}
			}
		}
	}
	return held, nil
}

// TestCredentialsSpinnakerFlow: a Spinnaker-shaped account definition
// POSTed to /credentials with a kubeconfig of the test cluster ends ACTIVE
// on a real watcher with its inventory streaming; a PUT that adds
// omitKinds changes what the watcher streams; DELETE removes the account
// and the watcher lets go; a name outside the migration pattern stays
// INACTIVE.
func TestCredentialsSpinnakerFlow(t *testing.T) {
	kc := kubetest.Shared(t)
	ns := kc.CreateNamespace(t)
	kubeconfig := spinnakerKubeconfig(t, kc, ns)
	createConfigMap(t, kc, ns, "before")
	createService(t, kc, ns, "web")

	p := harness.StartPlane(t, harness.PlaneOptions{MigratorEnv: map[string]string{
		"OUTPOST_AUTO_MIGRATION_ENABLED": "true",
		"OUTPOST_AUTO_MIGRATION_PATTERN": "^spin-",
	}})
	p.StartWatcher("agent-1", "zone-a", kc.Kubeconfig, nil)
	c := p.Client()

	code, body := c.Do(http.MethodPost, "/credentials", map[string]any{
		"@type": "kubernetes", "name": "spin-prod", "kubeconfigContents": kubeconfig,
		"namespaces": []string{ns}, "cacheThreads": 2, "onlySpinnakerManaged": true,
		"permissions": map[string][]string{"READ": {"dev"}, "WRITE": {"ops"}},
	})
	require.Equal(t, http.StatusOK, code, "%s", body)
	var def struct {
		IgnoredFields         []string `json:"ignoredFields"`
		HasKubeconfigContents bool     `json:"hasKubeconfigContents"`
	}
	require.NoError(t, json.Unmarshal(body, &def))
	require.Equal(t, []string{"cacheThreads", "onlySpinnakerManaged"}, def.IgnoredFields)
	require.True(t, def.HasKubeconfigContents)
	code, body = c.Do(http.MethodPost, "/credentials", map[string]any{"@type": "kubernetes", "name": "manual", "namespaces": []string{ns}})
	require.Equal(t, http.StatusOK, code, "%s", body)

	a := c.WaitAccountState("spin-prod", "ACTIVE", 60*time.Second)
	kinds := func(a harness.Account) []string {
		var out []string
		for _, k := range a.Kinds {
			out = append(out, k.Kind)
		}
		return out
	}
	require.ElementsMatch(t, []string{"ConfigMap", "Service"}, kinds(a))
	waitObject(t, c, "spin-prod", "kind=configmaps&namespace="+ns, "before", func(harness.InventoryObject) bool { return true })
	waitObject(t, c, "spin-prod", "kind=services&namespace="+ns, "web", func(harness.InventoryObject) bool { return true })

	// PUT the definition again with omitKinds: re-migrated, ConfigMaps no
	// longer streamed, the kubeconfig kept.
	code, body = c.Do(http.MethodPut, "/credentials", map[string]any{
		"@type": "kubernetes", "name": "spin-prod", "namespaces": []string{ns}, "omitKinds": []string{"configmaps"},
	})
	require.Equal(t, http.StatusOK, code, "%s", body)
	a = c.WaitAccount("spin-prod", 60*time.Second, func(n harness.Account) bool { return n.State == "ACTIVE" && n.Generation > a.Generation })
	require.Equal(t, []string{"Service"}, kinds(a))
	createConfigMap(t, kc, ns, "after")
	createService(t, kc, ns, "after")
	waitObject(t, c, "spin-prod", "kind=services&namespace="+ns, "after", func(harness.InventoryObject) bool { return true })
	objs, err := c.Objects("spin-prod", "namespace="+ns)
	require.NoError(t, err)
	for _, o := range objs {
		require.False(t, o.Kind == "ConfigMap" && o.Name == "after", "a ConfigMap made after omitKinds is not streamed")
	}

	// Spinnaker's reads show both accounts with their Dynamic Accounts
	// state, never the kubeconfig.
	code, body = c.Do(http.MethodGet, "/credentials", nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.NotContains(t, string(body), "token:")
	var list []struct {
		Name           string `json:"name"`
		Type           string `json:"type"`
		DynamicAccount struct {
			State string `json:"state"`
		} `json:"dynamicAccount"`
	}
	require.NoError(t, json.Unmarshal(body, &list))
	states := map[string]string{}
	for _, l := range list {
		require.Equal(t, "kubernetes", l.Type)
		states[l.Name] = l.DynamicAccount.State
	}
	require.Equal(t, map[string]string{"spin-prod": "ACTIVE", "manual": "INACTIVE"}, states)
	code, body = c.Do(http.MethodGet, "/credentials/type/kubernetes", nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	require.NotContains(t, string(body), "token:")

	// DELETE: deactivated, released by the watcher, then gone.
	code, body = c.Do(http.MethodDelete, "/credentials/spin-prod", nil)
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	require.Eventually(t, func() bool {
		code, _, err := c.Try(http.MethodGet, "/credentials/spin-prod", nil)
		return err == nil && code == http.StatusNotFound
	}, 60*time.Second, 100*time.Millisecond, "the account is deleted")
	require.Eventually(t, func() bool {
		held, err := heldBy(c, "zone-a")
		return err == nil && !slices.Contains(held, "spin-prod")
	}, 30*time.Second, 100*time.Millisecond, "the watcher lets go of the account")
	require.Equal(t, "INACTIVE", c.Account("manual").State, "a name outside the pattern is never migrated")
}

// TestInstancesEndToEnd: two account-migrator replicas and a scheduler
// heartbeat on the broker; either migrator lists all three with their
// address, readiness, role and version, and a killed replica drops out
// within 3 heartbeat intervals.
func TestInstancesEndToEnd(t *testing.T) {
	const interval = "300ms"
	p := harness.StartPlane(t, harness.PlaneOptions{MigratorEnv: map[string]string{
		"OUTPOST_INSTANCE_ID":                 "migrator-a",
		"OUTPOST_INSTANCE_BASE_URL":           "http://outpost-account-migrator:8081",
		"OUTPOST_INSTANCE_HEARTBEAT_INTERVAL": interval,
	}})
	killed, apiB := p.StartMigrator("migrator-b", map[string]string{"OUTPOST_INSTANCE_HEARTBEAT_INTERVAL": interval})
	p.StartScheduler("scheduler-a", map[string]string{"OUTPOST_INSTANCE_HEARTBEAT_INTERVAL": interval})

	type instance struct {
		BaseURL     string    `json:"baseUrl"`
		ID          string    `json:"id"`
		LastUpdated time.Time `json:"lastUpdated"`
		Ready       bool      `json:"ready"`
		Role        string    `json:"role"`
		Version     string    `json:"version"`
	}
	list := func(c *harness.Client, path string) (map[string]instance, error) {
		code, body, err := c.Try(http.MethodGet, path, nil)
		if err != nil || code != http.StatusOK {
			return nil, err
		}
		var in []instance
		if err := json.Unmarshal(body, &in); err != nil {
			return nil, err
		}
		out := map[string]instance{}
		for _, i := range in {
			out[i.ID] = i
		}
		return out, nil
	}
	ids := func(m map[string]instance) []string {
		var out []string
		for id := range m {
			out = append(out, id)
		}
		slices.Sort(out)
		return out
	}
	want := []string{"migrator-a", "migrator-b", "scheduler-a"}
	c := p.Client()
	cB := *c
	cB.Base = apiB
	var got map[string]instance
	for _, tc := range []struct {
		client *harness.Client
		path   string
	}{{c, "/armory/clouddrivers"}, {&cB, "/api/v1/instances"}} {
		require.Eventually(t, func() bool {
			var err error
			got, err = list(tc.client, tc.path)
			return err == nil && slices.Equal(want, ids(got)) && got["migrator-a"].Ready && got["migrator-b"].Ready && got["scheduler-a"].Ready
		}, 30*time.Second, 100*time.Millisecond, "%s lists %v", tc.path, ids(got))
	}
	require.Equal(t, "http://outpost-account-migrator:8081", got["migrator-a"].BaseURL)
	require.Equal(t, apiB, got["migrator-b"].BaseURL)
	require.Equal(t, "account-migrator", got["migrator-b"].Role)
	require.Equal(t, "scheduler", got["scheduler-a"].Role)
	require.NotEmpty(t, got["scheduler-a"].Version)
	require.WithinDuration(t, time.Now(), got["scheduler-a"].LastUpdated, 10*time.Second)

	killed.Kill()
	require.Eventually(t, func() bool {
		var err error
		got, err = list(c, "/armory/clouddrivers")
		return err == nil && slices.Equal([]string{"migrator-a", "scheduler-a"}, ids(got))
	}, 10*time.Second, 50*time.Millisecond, "a killed replica drops out: %v", ids(got))
}
