package accounts

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHistory: a lifecycle's transitions are recorded in order, with
// their reasons and errors, without touching the record they came from.
func TestHistory(t *testing.T) {
	liveA := view{live: map[string]bool{"a": true}}
	r := rec(Inactive)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

	require.NoError(t, r.Migrate(at(1), false))
	r, _, _ = Tick(r, at(2), liveA, policy)
	before := r
	r, _, _ = ApplyStatus(r, Status{Type: StatusActivated, Generation: 2, Zone: "a", Watcher: "w1"}, at(3))
	require.Len(t, before.History, 2, "a transition changes the clone only")
	r, _, _ = Tick(r, at(4), view{}, policy)
	r, _, _ = Tick(r, at(5), view{live: map[string]bool{"a": true}, held: map[string]string{"a/acc/2": "w2"}}, policy)
	r, _, _ = ApplyStatus(r, Status{Type: StatusFailed, Generation: 2, Zone: "a", Error: "forbidden: pods"}, at(6))
	r, _, _ = Tick(r, at(20), liveA, policy)
	require.NoError(t, r.Deactivate(at(21)))

	want := []Transition{
		{From: Inactive, To: ToMigrate, At: at(1), Reason: "migration requested"},
		{From: ToMigrate, To: Activating, At: at(2), Reason: "lease of generation 2 sent to a"},
		{From: Activating, To: Active, At: at(3), Reason: "activated by watcher w1 in zone a"},
		{From: Active, To: Orphaned, At: at(4), Reason: "zone lost its watcher", Error: "no live watcher in zone a"},
		{From: Orphaned, To: Active, At: at(5), Reason: "watcher w2 holds it again"},
		{From: Active, To: Failed, At: at(6), Reason: "failed", Error: "forbidden: pods"},
		{From: Failed, To: ToMigrate, At: at(20), Reason: "automatic retry 1 of 3"},
		{From: ToMigrate, To: ToDeactivate, At: at(21), Reason: "deactivation requested"},
	}
	require.Equal(t, want, r.History)
}

// TestHistoryBounded: only the latest MaxHistory transitions are kept.
func TestHistoryBounded(t *testing.T) {
	r := rec(Inactive, func(r *Record) { r.ZoneID = "" })
	const n = MaxHistory + 13
	for i := range n {
		now := t0.Add(time.Duration(i) * time.Second)
		if r.State == Inactive {
			require.NoError(t, r.Migrate(now, false))
		} else {
			require.NoError(t, r.Deactivate(now))
		}
	}
	require.Len(t, r.History, MaxHistory)
	for i, tr := range r.History {
		require.Equal(t, t0.Add(time.Duration(n-MaxHistory+i)*time.Second), tr.At, "entry %d", i)
	}
	last := r.History[MaxHistory-1]
	require.Equal(t, r.State, last.To, "the latest transition is last")
	require.Equal(t, ToMigrate, last.To)
}

// TestHistoryOldRecord: a record stored before the history was kept
// reads as one without history, and records from then on.
func TestHistoryOldRecord(t *testing.T) {
	r, err := Decode([]byte(`{"name":"old","state":"ACTIVE","zoneId":"a","generation":1,"failedCount":0,"spec":{},"stateSince":"2026-01-02T03:04:05Z","createdAt":"2026-01-02T03:04:05Z","updatedAt":"2026-01-02T03:04:05Z"}`))
	require.NoError(t, err)
	require.Empty(t, r.History)
	require.NoError(t, r.Deactivate(t0))
	require.Equal(t, []Transition{{From: Active, To: ToDeactivate, At: t0, Reason: "deactivation requested"}}, r.History)
}
