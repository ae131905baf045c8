package app

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	"github.com/outposthq/outpost/services/account-migrator/internal/config"
)

// A status event that decodes but cannot be applied (the account's record
// is corrupt) is retried max_deliveries times, then dead-lettered with the
// reason instead of being retried forever.
func TestFailingStatusDeadLetteredAfterMaxDeliveries(t *testing.T) {
	e := newEnv(t, 1, func(c *config.Config) { c.MaxDeliveries = 2 })
	store, err := e.conn.OpenStore(e.ctx, AccountsBucket)
	require.NoError(t, err)
	_, err = store.Create(e.ctx, tenant+".broken", []byte("{not json"))
	require.NoError(t, err)
	e.publish(e.subj.AccountStatus(tenant), &accountsv1.AccountStatus{Account: "broken", Generation: 1, Type: accountsv1.AccountStatus_TYPE_ACTIVATED, Zone: "z"})

	var dead []queue.StreamMessage
	require.Eventually(t, func() bool {
		dead = dead[:0]
		_ = e.conn.Read(e.ctx, e.subj.DeadLetter(tenant, queue.RoleAccounts), queue.ReadOptions{}, func(m queue.StreamMessage) bool {
			dead = append(dead, m)
			return true
		})
		return len(dead) == 1
	}, wait, tick)
	require.Equal(t, "max deliveries (2) exceeded", dead[0].Header[queue.HeaderDeadLetterReason])
	require.Equal(t, "2", dead[0].Header[queue.HeaderDeadLetterAttempts])
	require.Equal(t, e.subj.AccountStatus(tenant), dead[0].Header[queue.HeaderDeadLetterSubject])
}

// A watcher heartbeat that does not decode is counted and skipped; it is
// not dead-lettered (every replica reads it; it ages out of the stream).
func TestMalformedHeartbeatCounted(t *testing.T) {
	e := newEnv(t, 1)
	require.NoError(t, e.conn.Publish(e.ctx, queue.Message{Subject: e.subj.WatcherPresence(tenant, "z1", "w-bad"), Data: []byte("garbage")}))
	require.Eventually(t, func() bool {
		return e.metric("outpost_malformed_messages_total", map[string]string{"role": "accounts"}) == 1
	}, wait, tick)
	n := 0
	require.NoError(t, e.conn.Read(e.ctx, e.subj.All(tenant, queue.RoleDeadLetter), queue.ReadOptions{}, func(queue.StreamMessage) bool { n++; return true }))
	require.Zero(t, n)
}
