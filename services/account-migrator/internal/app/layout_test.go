package app

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

// TestLayouts: the migrator opens the broker in its configured layout
// (broker.layout), the control plane's: leases, statuses and the watch
// inventory flow through the per-tenant or the shared streams alike.
func TestLayouts(t *testing.T) {
	for _, layout := range []queue.Layout{queue.LayoutPerTenant, queue.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) {
			e := newEnv(t, 1, func(c *config.Config) { c.Broker.Layout = layout })
			l := e.leases("z1")
			w := e.startWatcher("z1", "w1")
			e.activate(w, l, "inv")
			e.putObject("inv", "", "v1", "ConfigMap", "configmaps", "ns1", "cm1", "11", false)
			require.Equal(t, []string{"ns1/cm1"}, names(e.listObjects("inv", "")))
		})
	}
}
