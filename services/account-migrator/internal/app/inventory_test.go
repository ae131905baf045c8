package app

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
)

type item struct {
	APIVersion      string         `json:"apiVersion"`
	Kind            string         `json:"kind"`
	Namespace       string         `json:"namespace"`
	Name            string         `json:"name"`
	UID             string         `json:"uid"`
	ResourceVersion string         `json:"resourceVersion"`
	Object          map[string]any `json:"object"`
}

func (e *env) listObjects(account, query string) []item {
	e.t.Helper()
	code, b := e.do(http.MethodGet, "/api/v1/accounts/"+account+"/objects"+query, nil)
	require.Equal(e.t, http.StatusOK, code, string(b))
	out := decode[struct {
		Items []item `json:"items"`
		Count int    `json:"count"`
	}](e.t, b)
	require.Len(e.t, out.Items, out.Count)
	return out.Items
}

// countObjects counts what the watch stream holds for account, tombstones
// included (-1 when it cannot be read): it is polled by conditions.
func (e *env) countObjects(account string) int {
	n := 0
	err := e.conn.Read(e.ctx, inventory.Filter(e.subj, tenant, account, "", "", false), queue.ReadOptions{}, func(queue.StreamMessage) bool { n++; return true })
	if err != nil {
		return -1
	}
	return n
}

func names(items []item) []string {
	var out []string
	for _, it := range items {
		out = append(out, it.Namespace+"/"+it.Name)
	}
	return out
}

func TestInventory(t *testing.T) {
	e := newEnv(t, 1)
	l := e.leases("z1")
	w := e.startWatcher("z1", "w1")
	e.activate(w, l, "inv")
	e.putObject("inv", "", "v1", "ConfigMap", "configmaps", "ns1", "cm1", "11", false)
	e.putObject("inv", "", "v1", "ConfigMap", "configmaps", "ns2", "cm2", "12", false)
	e.putObject("inv", "", "v1", "ConfigMap", "configmaps", "ns2", "gone", "13", true)
	e.putObject("inv", "apps", "v1", "Deployment", inventory.KindToken("apps", "deployments"), "ns1", "web.v2", "14", false)
	e.putObject("inv", "", "v1", "Namespace", "namespaces", "", "ns1", "15", false)
	e.putObject("other", "", "v1", "ConfigMap", "configmaps", "ns1", "cm1", "16", false)

	tests := []struct {
		name  string
		query string
		want  []string
	}{
		{"all live objects", "", []string{"ns1/cm1", "ns2/cm2", "ns1/web.v2", "/ns1"}},
		{"kind token", "?kind=configmaps", []string{"ns1/cm1", "ns2/cm2"}},
		{"Kind any case", "?kind=configMAP", []string{"ns1/cm1", "ns2/cm2"}},
		{"plural resource", "?kind=deployments", []string{"ns1/web.v2"}},
		{"resource.group", "?kind=deployments.apps", []string{"ns1/web.v2"}},
		{"escaped token", "?kind=deployments%252Eapps", []string{"ns1/web.v2"}},
		{"namespace", "?namespace=ns2", []string{"ns2/cm2"}},
		{"kind and namespace", "?kind=ConfigMap&namespace=ns1", []string{"ns1/cm1"}},
		{"cluster-scoped", "?kind=Namespace", []string{"/ns1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ElementsMatch(t, tt.want, names(e.listObjects("inv", tt.query)))
		})
	}

	got := e.listObjects("inv", "?kind=deployments")
	require.Equal(t, item{
		APIVersion: "apps/v1", Kind: "Deployment", Namespace: "ns1", Name: "web.v2", UID: "uid-web.v2", ResourceVersion: "14",
		Object: map[string]any{"kind": "Deployment", "metadata": map[string]any{"name": "web.v2", "namespace": "ns1", "resourceVersion": "14"}},
	}, got[0])

	code, b := e.do(http.MethodGet, "/api/v1/accounts/inv/objects?kind=pods", nil)
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, string(b), "known kinds are configmaps, deployments.apps, namespaces")

	for _, tt := range []struct {
		name string
		path string
		code int
	}{
		{"namespaced object", "/api/v1/accounts/inv/objects/ConfigMap/ns1/cm1", http.StatusOK},
		{"armory prefix", "/armory/accounts/inv/objects/deployments.apps/ns1/" + url.PathEscape("web.v2"), http.StatusOK},
		{"cluster-scoped object", "/api/v1/accounts/inv/objects/namespaces/_/ns1", http.StatusOK},
		{"tombstone", "/api/v1/accounts/inv/objects/configmaps/ns2/gone", http.StatusNotFound},
		{"absent", "/api/v1/accounts/inv/objects/configmaps/ns2/never", http.StatusNotFound},
		{"unknown kind", "/api/v1/accounts/inv/objects/pods/ns2/x", http.StatusBadRequest},
		{"unknown account", "/api/v1/accounts/nobody/objects", http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, b := e.do(http.MethodGet, tt.path, nil)
			require.Equal(t, tt.code, code, string(b))
		})
	}
}

func TestChecksumDriftResync(t *testing.T) {
	e := newEnv(t, 1)
	l := e.leases("z1")
	w := e.startWatcher("z1", "w1")
	gen := e.activate(w, l, "drift")
	e.putObject("drift", "", "v1", "ConfigMap", "configmaps", "ns1", "a", "1", false)
	e.putObject("drift", "", "v1", "ConfigMap", "configmaps", "ns1", "b", "2", false)
	e.putObject("drift", "", "v1", "ConfigMap", "configmaps", "ns1", "c", "3", true)

	good := inventory.Checksum([]inventory.Line{{Namespace: "ns1", Name: "a", ResourceVersion: "1"}, {Namespace: "ns1", Name: "b", ResourceVersion: "2"}})
	bad := inventory.Checksum([]inventory.Line{{Namespace: "ns1", Name: "a", ResourceVersion: "1"}})
	sum := func(kind, checksum string) {
		e.publish(e.subj.InventoryChecksums(tenant, "drift"), &accountsv1.InventoryChecksum{Account: "drift", Generation: gen, KindToken: kind, Count: 2, Checksum: checksum})
	}
	resyncs := func() int {
		n := 0
		cs, _ := e.tryControls("z1")
		for _, c := range cs {
			if c.GetAccount() == "drift" && c.GetResync() != nil {
				n++
			}
		}
		return n
	}

	sum("configmaps", good)
	sum("configmaps", bad)
	sum("configmaps", good) // a match resets the count
	sum("configmaps", bad)
	require.Never(t, func() bool { return resyncs() > 0 }, 300*time.Millisecond, tick, "no two mismatches in a row yet")
	sum("configmaps", bad)
	c := e.waitControl("z1", "drift", func(c *accountsv1.AccountControl) bool { return c.GetResync() != nil })
	require.Equal(t, "configmaps", c.GetResync().GetKindToken())
	require.Equal(t, gen, c.GetGeneration())
	require.Equal(t, 3.0, e.metric("outpost_inventory_drift_total", nil))
	require.Equal(t, 1.0, e.metric("outpost_inventory_resyncs_total", nil))
}
