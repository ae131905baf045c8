package app

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/version"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/agent"
)

// heartbeat is the last heartbeat of a watcher, or nil.
func (e *env) heartbeat(watcherID string) *accountsv1.WatcherHeartbeat {
	hbs := read[*accountsv1.WatcherHeartbeat](e, e.subj.WatcherPresence(tenant, zone, watcherID))
	if len(hbs) == 0 {
		return nil
	}
	return hbs[len(hbs)-1]
}

// holds reports whether a heartbeat lists the account and generation.
func holds(hb *accountsv1.WatcherHeartbeat, account string, gen uint64) bool {
	for _, a := range hb.GetAccounts() {
		if a.GetAccount() == account && a.GetGeneration() == gen {
			return true
		}
	}
	return false
}

func TestDeactivate(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	e.start(t, cfg)
	ns := e.kc.CreateNamespace(t)
	e.activated(t, e.spec("leaving", ns), 3)
	require.Eventually(t, func() bool { return holds(e.heartbeat(cfg.WatcherID), "leaving", 3) }, waitFor, poll)
	require.Equal(t, version.Get(), e.heartbeat(cfg.WatcherID).GetVersion(), "heartbeats carry the binary's version")
	require.Equal(t, 1, e.leaseBacklog())

	// Another generation's command is not for this holder.
	e.control(t, &accountsv1.AccountControl{Account: "leaving", Generation: 2, Command: &accountsv1.AccountControl_Deactivate{Deactivate: &accountsv1.Deactivate{Reason: "stale"}}})
	e.control(t, &accountsv1.AccountControl{Account: "leaving", Generation: 3, Command: &accountsv1.AccountControl_Deactivate{Deactivate: &accountsv1.Deactivate{Reason: "test"}}})
	st := e.waitStatus(t, "leaving", 3, accountsv1.AccountStatus_TYPE_RELEASED)
	require.Equal(t, cfg.WatcherID, st.GetWatcherId())
	require.Eventually(t, func() bool { return e.leaseBacklog() == 0 }, waitFor, poll, "the lease is acked")
	require.Eventually(t, func() bool {
		hb := e.heartbeat(cfg.WatcherID)
		return hb != nil && len(hb.GetAccounts()) == 0
	}, waitFor, poll)

	// The inventory is left for the migrator to purge, and no longer follows the cluster.
	_, err := e.kc.Client().CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	require.Never(t, func() bool { _, _, ok := e.last("leaving", "configmaps", ns, "after"); return ok }, time.Second, poll)
}

func TestNewerGenerationRestartsTheWatch(t *testing.T) {
	e := newEnv(t)
	cfg := e.config(t)
	e.start(t, cfg)
	ns := e.kc.CreateNamespace(t)
	e.activated(t, e.spec("moving", ns), 1)
	e.activated(t, e.spec("moving", ns), 2)
	require.Eventually(t, func() bool {
		hb := e.heartbeat(cfg.WatcherID)
		return holds(hb, "moving", 2) && !holds(hb, "moving", 1)
	}, waitFor, poll)
	require.Eventually(t, func() bool { return e.leaseBacklog() == 1 }, waitFor, poll, "the older lease is acked")
	_, err := e.kc.Client().CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "new"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	e.waitDelta(t, "moving", "configmaps", ns, "new", func(d *watchv1.ObjectDelta, _ map[string]string) bool { return d.GetGeneration() == 2 })
}

// TestStopHandsLeasesOver stops one of two watchers of the zone: it says
// it is stopping and gives its leases back, and the other takes them at
// once, well before the ack wait would have let them lapse.
func TestStopHandsLeasesOver(t *testing.T) {
	e := newEnv(t)
	ns := e.kc.CreateNamespace(t)
	cfgA := e.config(t)
	cfgA.LeaseAckWait = time.Minute
	stopA := e.start(t, cfgA)
	for _, name := range []string{"one", "two"} {
		st := e.activated(t, e.spec(name, ns), 1)
		require.Equal(t, cfgA.WatcherID, st.GetWatcherId())
	}
	cfgB := e.config(t)
	cfgB.LeaseAckWait = time.Minute
	e.start(t, cfgB)
	require.Eventually(t, func() bool { return e.heartbeat(cfgB.WatcherID) != nil }, waitFor, poll)

	began := time.Now()
	stopA()
	hb := e.heartbeat(cfgA.WatcherID)
	require.True(t, hb.GetStopping(), "the last heartbeat says stopping")
	for _, name := range []string{"one", "two"} {
		require.Eventually(t, func() bool {
			for _, s := range read[*accountsv1.AccountStatus](e, e.subj.AccountStatus(tenant)) {
				if s.GetAccount() == name && s.GetType() == accountsv1.AccountStatus_TYPE_ACTIVATED && s.GetWatcherId() == cfgB.WatcherID {
					return true
				}
			}
			return false
		}, waitFor, poll)
	}
	require.Less(t, time.Since(began), cfgB.LeaseAckWait/2)
}

// TestKilledWatcherLeaseComesBack: a watcher that dies without giving its
// lease back (played by a consumer that takes the lease and never settles
// it) loses it after the ack wait, to the next replica.
func TestKilledWatcherLeaseComesBack(t *testing.T) {
	e := newEnv(t)
	ns := e.kc.CreateNamespace(t)
	cfg := e.config(t)
	taken := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dead, err := e.conn.Consume(ctx, queue.ConsumerConfig{
		Name: agent.ConsumerName, Subject: e.subj.Leases(tenant, zone), AckWait: cfg.LeaseAckWait, MaxDeliveries: -1,
	}, func(ctx context.Context, _ queue.Delivery) {
		close(taken)
		<-ctx.Done()
	})
	require.NoError(t, err)
	e.lease(t, e.spec("orphan", ns), 1)
	select {
	case <-taken:
	case <-time.After(waitFor):
		t.Fatal("the lease was not delivered")
	}
	// The dead replica stops pulling; its handler never settles.
	stopCtx, stopCancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer stopCancel()
	require.Error(t, dead.Stop(stopCtx))

	began := time.Now()
	e.start(t, cfg)
	st := e.waitStatus(t, "orphan", 1, accountsv1.AccountStatus_TYPE_ACTIVATED)
	require.Equal(t, cfg.WatcherID, st.GetWatcherId())
	require.GreaterOrEqual(t, time.Since(began), cfg.LeaseAckWait/2)
}

// TestResyncTombstones: objects the stream holds and the cluster does not
// (deleted while nothing watched the account) are tombstoned on
// activation and on a Resync command.
func TestResyncTombstones(t *testing.T) {
	e := newEnv(t)
	ns := e.kc.CreateNamespace(t)
	stale := func(name string) {
		subject := inventory.ObjectSubject(e.subj, tenant, "resync", "configmaps", ns, name)
		msg, err := events.Encode(subject, &watchv1.ObjectDelta{
			Account: "resync", Type: watchv1.ObjectDelta_TYPE_ADDED, Version: "v1", Kind: "ConfigMap", Resource: "configmaps",
			Namespace: ns, Name: name, ResourceVersion: "1", Object: []byte(`{"metadata":{"name":"` + name + `"}}`),
		}, "")
		require.NoError(t, err)
		msg.Header[inventory.HeaderResourceVersion] = "1"
		require.NoError(t, e.conn.Publish(context.Background(), msg))
	}
	tombstoned := func(name string) {
		d := e.waitDelta(t, "resync", "configmaps", ns, name, func(d *watchv1.ObjectDelta, h map[string]string) bool {
			return d.GetType() == watchv1.ObjectDelta_TYPE_DELETED && h[inventory.HeaderDeleted] == "true"
		})
		require.Equal(t, name, d.GetName())
		require.JSONEq(t, `{"metadata":{"name":"`+name+`"}}`, string(d.GetObject()), "the tombstone keeps the last known state")
	}
	_, err := e.kc.Client().CoreV1().ConfigMaps(ns).Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "live"}}, metav1.CreateOptions{})
	require.NoError(t, err)
	stale("deleted-while-away")

	e.start(t, e.config(t))
	e.activated(t, e.spec("resync", ns), 1)
	tombstoned("deleted-while-away")
	live := e.waitDelta(t, "resync", "configmaps", ns, "live", func(d *watchv1.ObjectDelta, _ map[string]string) bool {
		return d.GetType() == watchv1.ObjectDelta_TYPE_ADDED
	})

	stale("drifted")
	e.control(t, &accountsv1.AccountControl{Account: "resync", Command: &accountsv1.AccountControl_Resync{Resync: &accountsv1.Resync{KindToken: "configmaps", Reason: "checksum mismatch"}}})
	tombstoned("drifted")
	e.waitDelta(t, "resync", "configmaps", ns, "live", func(d *watchv1.ObjectDelta, _ map[string]string) bool {
		return d.GetEnvelope().GetEventId() != live.GetEnvelope().GetEventId()
	})
}
