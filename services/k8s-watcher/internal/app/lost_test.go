package app

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kubetest"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
)

// TestLostCluster stops the API server of an active account: once it has
// not answered for the sync timeout, the watcher reports FAILED with the
// cause and acks the lease (the migrator retries the account), while its
// other accounts are unaffected.
func TestLostCluster(t *testing.T) {
	e := newEnv(t)
	private := kubetest.Start(t)
	cfg := e.config(t)
	cfg.SyncTimeout = 2 * time.Second
	cfg.ClusterTimeout = time.Second
	e.start(t, cfg)
	ns := e.kc.CreateNamespace(t)
	e.activated(t, e.spec("stays", ns), 1)
	e.activated(t, &accountsv1.AccountSpec{Name: "goes", KubeconfigFile: private.Kubeconfig, Kinds: []string{"namespaces"}}, 1)

	private.StopAPIServer(t)
	st := e.waitStatus(t, "goes", 1, accountsv1.AccountStatus_TYPE_FAILED)
	require.Contains(t, st.GetErrorMessage(), "lost the cluster")
	require.Contains(t, st.GetErrorMessage(), "cluster unreachable")
	require.Eventually(t, func() bool {
		hb := e.heartbeat(cfg.WatcherID)
		return holds(hb, "stays", 1) && !holds(hb, "goes", 1)
	}, waitFor, poll)
	require.Eventually(t, func() bool { return e.leaseBacklog() == 1 }, waitFor, poll, "the lost account's lease is acked")
}
