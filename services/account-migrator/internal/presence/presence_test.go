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

// TestWatcherState: a watcher is live up to LiveIntervals of its own
// heartbeat intervals after its last heartbeat and lost right after, never
// live once its last heartbeat said it stops, and live again when a new
// heartbeat comes; its version and held accounts are what the heartbeat
// said.
func TestWatcherState(t *testing.T) {
	beat := func(id string, stopping bool) *accountsv1.WatcherHeartbeat {
		h := hb("z", id, 500, stopping, &accountsv1.HeldAccount{Account: "acc", Generation: 3})
		h.Version = "v1.4.2"
		return h
	}
	tests := []struct {
		name     string
		stopping bool
		after    time.Duration
		want     string
	}{
		{"just seen", false, 0, StateLive},
		{"one interval late", false, 500 * time.Millisecond, StateLive},
		{"at 3 intervals", false, 1500 * time.Millisecond, StateLive},
		{"past 3 intervals", false, 1500*time.Millisecond + time.Millisecond, StateLost},
		{"an hour silent", false, time.Hour, StateLost},
		{"said it stops", true, 0, StateStopped},
		{"stopped long ago", true, time.Hour, StateStopped},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := NewTracker()
			tr.Observe(beat("w1", tt.stopping), t0)
			ws := tr.Watchers(t0.Add(tt.after))["z"]
			require.Len(t, ws, 1)
			w := ws[0]
			require.Equal(t, tt.want, w.State)
			require.Equal(t, tt.want == StateLive, w.Live, "live only in the live state")
			require.Equal(t, "v1.4.2", w.Version)
			require.Equal(t, []Held{{Account: "acc", Generation: 3}}, w.Accounts)
			require.Equal(t, t0, w.LastSeen)
		})
	}

	t.Run("back after lost", func(t *testing.T) {
		tr := NewTracker()
		tr.Observe(beat("w1", false), t0)
		require.Equal(t, StateLost, tr.Watchers(t0.Add(time.Minute))["z"][0].State)
		tr.Observe(beat("w1", false), t0.Add(time.Minute))
		require.Equal(t, StateLive, tr.Watchers(t0.Add(time.Minute))["z"][0].State)
	})
}
