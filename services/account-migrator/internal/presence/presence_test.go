package presence

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func hb(zone, id string, intervalMS uint32, stopping bool, held ...*accountsv1.HeldAccount) *accountsv1.WatcherHeartbeat {
	return &accountsv1.WatcherHeartbeat{Zone: zone, WatcherId: id, IntervalMs: intervalMS, Stopping: stopping, Accounts: held}
}

func TestTracker(t *testing.T) {
	tr := NewTracker()
	tr.Observe(hb("a", "w1", 1000, false, &accountsv1.HeldAccount{Account: "acc", Generation: 2}), t0)
	tr.Observe(hb("a", "w1", 1000, false), t0.Add(-time.Second)) // older: ignored
	tr.Observe(hb("b", "w2", 1000, true), t0)                    // stopping
	tr.Observe(hb("c", "w3", 0, false), t0.Add(-28*time.Second)) // no interval: 10s default

	tests := []struct {
		name   string
		at     time.Duration
		live   []string
		holder bool
	}{
		{"fresh", time.Second, []string{"a", "c"}, true},
		{"within 3 intervals", 3 * time.Second, []string{"a"}, true},
		{"past 3 intervals", 3*time.Second + time.Millisecond, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tr.Snapshot(t0.Add(tt.at))
			require.Equal(t, tt.live, v.LiveZones())
			w, ok := v.Holder("a", "acc", 2)
			require.Equal(t, tt.holder, ok)
			if ok {
				require.Equal(t, "w1", w)
			}
			_, ok = v.Holder("a", "acc", 1)
			require.False(t, ok, "another generation is not held")
			seen, ok := v.LastSeen("a", "acc")
			require.True(t, ok, "lastSeen stays known after the watcher is gone")
			require.Equal(t, t0, seen)
		})
	}
	require.False(t, tr.Synced())
	require.Empty(t, tr.Watchers(t0.Add(25*time.Hour)), "watchers silent for a day are forgotten")
}
