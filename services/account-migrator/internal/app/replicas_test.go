package app

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
)

// Two migrators share the KV bucket and compete for the status consumer:
// every transition is a compare-and-set, so each account is leased once
// per generation and ends in one consistent state.
func TestTwoReplicasNeverCorrupt(t *testing.T) {
	e := newEnv(t, 2)
	l := e.leases("z1")
	w := e.startWatcher("z1", "w1")
	const n = 20
	var body []map[string]any
	for i := range n {
		body = append(body, map[string]any{"name": fmt.Sprintf("acc-%02d", i), "zoneId": "z1", "kubeconfigFile": "/k"})
	}
	code, b := e.doOn(1, http.MethodPost, "/api/v1/accounts", body, nil)
	require.Equal(t, http.StatusOK, code, string(b))

	// Both replicas are asked to migrate every account at once.
	var wg sync.WaitGroup
	for r := range 2 {
		for i := range n {
			wg.Go(func() {
				e.doOn(r, http.MethodPatch, "/api/v1/accounts", fmt.Sprintf(`[{"name":"acc-%02d","state":"ACTIVE"}]`, i), nil)
			})
		}
	}
	wg.Wait()
	require.Eventually(t, func() bool { return len(l.all()) >= n }, wait, tick)

	// Every watcher event is sent twice, concurrently: the replicas
	// handle them side by side.
	for i := range n {
		name := fmt.Sprintf("acc-%02d", i)
		lease := e.waitLease(l, name, 1)
		wg.Go(func() { w.report(name, lease.GetGeneration(), accountsv1.AccountStatus_TYPE_ACTIVATED, "") })
		wg.Go(func() { w.report(name, lease.GetGeneration(), accountsv1.AccountStatus_TYPE_ACTIVATED, "") })
	}
	wg.Wait()
	for i := range n {
		acc := e.waitState(fmt.Sprintf("acc-%02d", i), "ACTIVE")
		require.Equal(t, uint64(1), acc.Generation, "migrated once")
	}
	require.Never(t, func() bool { return len(l.all()) > n }, 300*time.Millisecond, tick, "one lease per account")
	for _, lease := range l.all() {
		require.Equal(t, uint64(1), lease.GetGeneration())
	}

	// Concurrent deactivations from both replicas and the RELEASED that
	// follows settle every account INACTIVE exactly once.
	for r := range 2 {
		for i := range n {
			wg.Go(func() {
				e.doOn(r, http.MethodPatch, "/api/v1/accounts", fmt.Sprintf(`[{"name":"acc-%02d","state":"INACTIVE"}]`, i), nil)
			})
		}
	}
	wg.Wait()
	for i := range n {
		name := fmt.Sprintf("acc-%02d", i)
		e.waitControl("z1", name, isDeactivate)
		w.report(name, 1, accountsv1.AccountStatus_TYPE_RELEASED, "")
	}
	for i := range n {
		acc := e.waitState(fmt.Sprintf("acc-%02d", i), "INACTIVE")
		require.Equal(t, uint64(1), acc.Generation)
	}
}
