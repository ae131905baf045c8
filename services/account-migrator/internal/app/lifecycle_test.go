package app

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

// The request bodies of the Dynamic Accounts documentation, verbatim.
const (
	seedPOST = `[
 {
 "name": "account-01"
 },
 {
 "name": "account-02",
 "zoneId": "agent-1_namespace1",
 "kubeconfigFile": "encryptedFile:k8s!n:kubeconfig!k:config!ns:spinnaker"
 }
 ]`
	seedPATCH = `[
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

func TestSeedMigration(t *testing.T) {
	e := newEnv(t, 1)
	const zone = "agent-1_namespace1"
	l := e.leases(zone)
	w := e.startWatcher(zone, "w1")

	code, b := e.do(http.MethodPost, "/armory/accounts", seedPOST)
	require.Equal(t, http.StatusOK, code, string(b))
	require.Equal(t, []result{{Name: "account-01", OK: true, State: "INACTIVE"}, {Name: "account-02", OK: true, State: "INACTIVE"}}, decode[[]result](t, b))
	require.Empty(t, l.all(), "POST alone migrates nothing")

	code, b = e.do(http.MethodPatch, "/armory/accounts", seedPATCH)
	require.Equal(t, http.StatusOK, code, string(b))
	for _, r := range decode[[]result](t, b) {
		require.True(t, r.OK, r.Error)
		require.Equal(t, "TO_MIGRATE", r.State)
	}

	lease2 := e.waitLease(l, "account-02", 1)
	require.Equal(t, uint64(1), lease2.GetGeneration())
	require.Equal(t, zone, lease2.GetZone())
	require.False(t, lease2.GetOffer())
	require.Equal(t, "encryptedFile:k8s!n:kubeconfig!k:config!ns:spinnaker", lease2.GetSpec().GetKubeconfigFile())
	// account-01 has no zone: it is offered to every zone with a live
	// watcher, here only this one.
	lease1 := e.waitLease(l, "account-01", 1)
	require.True(t, lease1.GetOffer())
	require.True(t, lease1.GetSpec().GetServiceAccount(), "an account with no credentials is watched with the watcher's own")
	require.False(t, lease2.GetSpec().GetServiceAccount())
	require.Equal(t, "ACTIVATING", e.get("account-02").State)

	w.report("account-01", 1, accountsv1.AccountStatus_TYPE_ACTIVATED, "")
	w.report("account-02", 1, accountsv1.AccountStatus_TYPE_ACTIVATED, "")
	a1 := e.waitState("account-01", "ACTIVE")
	require.Equal(t, zone, a1.ZoneID, "the zone that activated an offer becomes the account's")
	a2 := e.waitState("account-02", "ACTIVE")
	require.Equal(t, "w1", a2.Agent)
	require.NotNil(t, a2.Cluster)
	require.Equal(t, "https://"+zone+".example:6443", a2.Cluster.Host)
	require.Eventually(t, func() bool {
		a, err := e.lookup("account-02")
		return err == nil && a.LastSeen != nil
	}, wait, tick, "lastSeen comes from the holder's heartbeats")

	code, b = e.do(http.MethodGet, "/agents/kubernetes/accounts/account-02", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "ACTIVE", decode[account](t, b).State)

	code, b = e.do(http.MethodGet, "/armory/accounts", nil)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, decode[[]account](t, b), 2)
	code, b = e.do(http.MethodGet, "/api/v1/zones", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(b), `"zoneId":"agent-1_namespace1"`)
}

func TestOfferFirstZoneWins(t *testing.T) {
	e := newEnv(t, 1)
	la, lb := e.leases("zone-a"), e.leases("zone-b")
	wa, wb := e.startWatcher("zone-a", "wa"), e.startWatcher("zone-b", "wb")

	code, b := e.do(http.MethodPost, "/api/v1/accounts", `[{"name":"shared","state":"ACTIVE","serviceAccount":true}]`)
	require.Equal(t, http.StatusOK, code, string(b))
	offerA, offerB := e.waitLease(la, "shared", 1), e.waitLease(lb, "shared", 1)
	require.True(t, offerA.GetOffer())
	require.True(t, offerB.GetOffer())
	require.Equal(t, offerA.GetGeneration(), offerB.GetGeneration())

	wb.report("shared", offerB.GetGeneration(), accountsv1.AccountStatus_TYPE_ACTIVATED, "")
	acc := e.waitState("shared", "ACTIVE")
	require.Equal(t, "zone-b", acc.ZoneID)

	wa.report("shared", offerA.GetGeneration(), accountsv1.AccountStatus_TYPE_ACTIVATED, "")
	c := e.waitControl("zone-a", "shared", isDeactivate)
	require.Equal(t, offerA.GetGeneration(), c.GetGeneration())
	require.Equal(t, "zone-b", e.get("shared").ZoneID, "the later activation does not take the account")
	for _, c := range e.controls("zone-b") {
		require.NotEqual(t, "shared", c.GetAccount(), "the winner is not told to stop")
	}
}

func TestOfferFailedEverywhere(t *testing.T) {
	e := newEnv(t, 1)
	la, lb := e.leases("zone-a"), e.leases("zone-b")
	wa, wb := e.startWatcher("zone-a", "wa"), e.startWatcher("zone-b", "wb")
	code, b := e.do(http.MethodPost, "/api/v1/accounts", `[{"name":"nowhere","state":"ACTIVE","kubeconfigFile":"/x"}]`)
	require.Equal(t, http.StatusOK, code, string(b))
	gen := e.waitLease(la, "nowhere", 1).GetGeneration()
	e.waitLease(lb, "nowhere", 1)
	wa.report("nowhere", gen, accountsv1.AccountStatus_TYPE_FAILED, "forbidden")
	require.Never(t, func() bool { return e.stateOf("nowhere") == "FAILED" }, 300*time.Millisecond, tick, "one zone failing is not enough")
	wb.report("nowhere", gen, accountsv1.AccountStatus_TYPE_FAILED, "unreachable")
	acc := e.waitState("nowhere", "FAILED")
	require.Equal(t, "zone zone-a: forbidden; zone zone-b: unreachable", acc.ErrorMessage)
}

func TestNoWatcherConnected(t *testing.T) {
	e := newEnv(t, 1, func(c *config.Config) { c.MaxRetries = 0 })
	code, _ := e.do(http.MethodPost, "/api/v1/accounts", `[{"name":"lonely","state":"ACTIVE","kubeconfigFile":"/x"}]`)
	require.Equal(t, http.StatusOK, code)
	acc := e.waitState("lonely", "FAILED")
	require.Equal(t, "no watcher connected", acc.ErrorMessage)
}

func TestFailedRetries(t *testing.T) {
	e := newEnv(t, 1)
	const zone = "z1"
	l := e.leases(zone)
	w := e.startWatcher(zone, "w1")
	code, b := e.do(http.MethodPost, "/api/v1/accounts", `[{"name":"broken","state":"ACTIVE","zoneId":"z1","kubeconfigFile":"/nope"}]`)
	require.Equal(t, http.StatusOK, code, string(b))

	// 1 attempt + max_retries (3) retries, each failing.
	var failedAt []time.Time
	for n := 1; n <= 1+e.cfg.MaxRetries; n++ {
		lease := e.waitLease(l, "broken", n)
		require.Equal(t, uint64(n), lease.GetGeneration(), "every attempt is a new generation")
		failedAt = append(failedAt, time.Now())
		w.report("broken", lease.GetGeneration(), accountsv1.AccountStatus_TYPE_FAILED, "cannot read /nope")
		acc := e.waitState("broken", "FAILED")
		require.Equal(t, n, acc.FailedCount)
		require.Equal(t, "cannot read /nope", acc.ErrorMessage)
	}
	times := l.times()
	for i := 1; i < len(times); i++ {
		require.GreaterOrEqual(t, times[i].Sub(failedAt[i-1]), e.cfg.RetryFrequency, "retry %d came before retry_frequency", i)
	}
	require.Never(t, func() bool { return len(l.forAccount("broken")) > 1+e.cfg.MaxRetries }, 5*e.cfg.RetryFrequency, tick, "retried past max_retries")
	require.Equal(t, 4, e.get("broken").FailedCount)
	require.Equal(t, float64(e.cfg.MaxRetries), e.metric("outpost_account_retries_total", map[string]string{"tenant": tenant}))
	require.Eventually(t, func() bool {
		return e.metric("outpost_accounts", map[string]string{"tenant": tenant, "state": "FAILED"}) == 1
	}, wait, tick)

	// PATCH ACTIVE starts over with failedCount reset.
	code, b = e.do(http.MethodPatch, "/api/v1/accounts", `[{"name":"broken","state":"ACTIVE"}]`)
	require.Equal(t, http.StatusOK, code, string(b))
	lease := e.waitLease(l, "broken", 5)
	require.Equal(t, 0, e.get("broken").FailedCount)
	w.report("broken", lease.GetGeneration(), accountsv1.AccountStatus_TYPE_ACTIVATED, "")
	e.waitState("broken", "ACTIVE")
}

func TestStaleGenerationIgnored(t *testing.T) {
	e := newEnv(t, 1)
	l := e.leases("z1")
	w := e.startWatcher("z1", "w1")
	gen := e.activate(w, l, "fenced")
	// Reports of another generation changes nothing.
	w.report("fenced", gen+5, accountsv1.AccountStatus_TYPE_FAILED, "from the future")
	w.report("fenced", gen+5, accountsv1.AccountStatus_TYPE_RELEASED, "")
	require.Never(t, func() bool { return e.stateOf("fenced") != "ACTIVE" }, 300*time.Millisecond, tick)
}

func TestOrphanedAndBack(t *testing.T) {
	e := newEnv(t, 1)
	l := e.leases("z1")
	w := e.startWatcher("z1", "w1")
	gen := e.activate(w, l, "orphan")

	w.stop()
	acc := e.waitState("orphan", "ORPHANED")
	require.Equal(t, "no live watcher in zone z1", acc.ErrorMessage)
	require.Equal(t, 1.0, e.metric("outpost_account_orphans_total", nil))

	w2 := e.startWatcher("z1", "w2")
	w2.report("orphan", gen, accountsv1.AccountStatus_TYPE_ACTIVATED, "")
	acc = e.waitState("orphan", "ACTIVE")
	require.Equal(t, "w2", acc.Agent)

	// A killed watcher (no stopping heartbeat) is orphaned once its
	// heartbeats are 3 intervals old; its heartbeats alone bring the
	// account back when another replica holds the lease.
	w2.kill()
	e.waitState("orphan", "ORPHANED")
	w3 := e.startWatcher("z1", "w3")
	w3.hold("orphan", gen)
	acc = e.waitState("orphan", "ACTIVE")
	require.Equal(t, "w3", acc.Agent)

	// The GET shows the lifecycle, oldest first.
	var steps []string
	for _, h := range acc.History {
		steps = append(steps, h.From+">"+h.To)
	}
	require.Equal(t, []string{"INACTIVE>TO_MIGRATE", "TO_MIGRATE>ACTIVATING", "ACTIVATING>ACTIVE",
		"ACTIVE>ORPHANED", "ORPHANED>ACTIVE", "ACTIVE>ORPHANED", "ORPHANED>ACTIVE"}, steps)
	require.Equal(t, "no live watcher in zone z1", acc.History[3].Error)
	require.Equal(t, "watcher w3 holds it again", acc.History[6].Reason)
}

func TestDeactivateAndDelete(t *testing.T) {
	e := newEnv(t, 1)
	l := e.leases("z1")
	w := e.startWatcher("z1", "w1")
	gen := e.activate(w, l, "going")
	e.putObject("going", "", "v1", "ConfigMap", "configmaps", "ns1", "cm1", "10", false)
	require.Len(t, e.listObjects("going", ""), 1)

	code, b := e.do(http.MethodPatch, "/api/v1/accounts", `[{"name":"going","state":"INACTIVE"}]`)
	require.Equal(t, http.StatusOK, code, string(b))
	require.Equal(t, "TO_DEACTIVATE", decode[[]result](t, b)[0].State)
	c := e.waitControl("z1", "going", isDeactivate)
	require.Equal(t, gen, c.GetGeneration())
	e.waitState("going", "DEACTIVATING")

	// Migrating while deactivating is refused, and changes nothing.
	code, b = e.do(http.MethodPatch, "/api/v1/accounts", `[{"name":"going","state":"ACTIVE"}]`)
	require.Equal(t, http.StatusBadRequest, code, string(b))
	require.Contains(t, decode[[]result](t, b)[0].Error, "illegal state transition")

	w.report("going", gen, accountsv1.AccountStatus_TYPE_RELEASED, "")
	e.waitState("going", "INACTIVE")
	require.Eventually(t, func() bool { return e.countObjects("going") == 0 }, wait, tick, "inventory purged")

	code, b = e.do(http.MethodDelete, "/api/v1/accounts/going", nil)
	require.Equal(t, http.StatusOK, code, string(b))
	require.Equal(t, "DELETED", decode[result](t, b).State)
	code, _ = e.do(http.MethodGet, "/api/v1/accounts/going", nil)
	require.Equal(t, http.StatusNotFound, code)

	// DELETE of a watched account deactivates it first and removes it on
	// RELEASED, with its inventory.
	gen = e.activate(w, l, "held")
	e.putObject("held", "", "v1", "ConfigMap", "configmaps", "ns1", "cm1", "1", false)
	code, b = e.do(http.MethodDelete, "/armory/accounts", `[{"name":"held"},{"name":"ghost"}]`)
	require.Equal(t, http.StatusMultiStatus, code, string(b))
	res := decode[[]result](t, b)
	require.True(t, res[0].OK)
	require.Equal(t, "TO_DEACTIVATE", res[0].State)
	require.False(t, res[1].OK)
	e.waitControl("z1", "held", isDeactivate)
	w.report("held", gen, accountsv1.AccountStatus_TYPE_RELEASED, "")
	e.waitState("held", "")
	require.Eventually(t, func() bool { return e.countObjects("held") == 0 }, wait, tick, "inventory purged")
}

func TestDeactivateTimeoutWithoutHolder(t *testing.T) {
	e := newEnv(t, 1, func(c *config.Config) { c.DeactivateTimeout = 300 * time.Millisecond })
	l := e.leases("z1")
	w := e.startWatcher("z1", "w1")
	gen := e.activate(w, l, "quiet")
	code, _ := e.do(http.MethodPatch, "/api/v1/accounts", `[{"name":"quiet","state":"INACTIVE"}]`)
	require.Equal(t, http.StatusOK, code)
	e.waitState("quiet", "DEACTIVATING")
	// The watcher still holds it: the migrator asks again rather than
	// declaring it INACTIVE.
	require.Never(t, func() bool { return e.stateOf("quiet") == "INACTIVE" }, 800*time.Millisecond, tick)
	w.hold("quiet", 0) // lets go without saying so
	e.waitState("quiet", "INACTIVE")
	require.GreaterOrEqual(t, countDeactivates(e.controls("z1"), "quiet", gen), 2)
}

func countDeactivates(cs []*accountsv1.AccountControl, account string, gen uint64) int {
	n := 0
	for _, c := range cs {
		if c.GetAccount() == account && c.GetGeneration() == gen && c.GetDeactivate() != nil {
			n++
		}
	}
	return n
}

func TestRespecReMigrates(t *testing.T) {
	e := newEnv(t, 1)
	l := e.leases("z1")
	w := e.startWatcher("z1", "w1")
	gen := e.activate(w, l, "moving")
	code, b := e.do(http.MethodPatch, "/api/v1/accounts", `[{"name":"moving","namespaces":["team-a"]}]`)
	require.Equal(t, http.StatusOK, code, string(b))
	lease := e.waitLease(l, "moving", 2)
	require.Equal(t, gen+1, lease.GetGeneration())
	require.Equal(t, []string{"team-a"}, lease.GetSpec().GetNamespaces())
	c := e.waitControl("z1", "moving", isDeactivate)
	require.Equal(t, gen, c.GetGeneration(), "the old generation's holder is released")
	// The old generation's word no longer counts.
	w.report("moving", gen, accountsv1.AccountStatus_TYPE_FAILED, "old")
	w.report("moving", gen+1, accountsv1.AccountStatus_TYPE_ACTIVATED, "")
	acc := e.waitState("moving", "ACTIVE")
	require.Equal(t, gen+1, acc.Generation)
}

func TestMalformedStatusTerminated(t *testing.T) {
	e := newEnv(t, 1)
	e.publish(e.subj.AccountStatus(tenant), &accountsv1.AccountStatus{Account: "bad.name", Generation: 1, Type: accountsv1.AccountStatus_TYPE_ACTIVATED, Zone: "z"})
	require.NoError(t, e.conn.Publish(e.ctx, queue.Message{Subject: e.subj.AccountStatus(tenant), Data: []byte("garbage"), Header: map[string]string{queue.HeaderType: "outpost.accounts.v1.AccountStatus"}}))
	require.Eventually(t, func() bool {
		n := 0
		_ = e.conn.Read(e.ctx, e.subj.DeadLetter(tenant, queue.RoleAccounts), queue.ReadOptions{}, func(queue.StreamMessage) bool { n++; return true })
		return n == 2
	}, wait, tick, "malformed status events are dead-lettered, not retried")
}
