package presence

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// TestCollector: watchers are counted live, stopped or lost by zone, and a
// watcher's last-seen series goes away SeriesBound after its heartbeat.
func TestCollector(t *testing.T) {
	tr := NewTracker()
	tr.Observe(hb("a", "w1", 1000, false), t0)
	tr.Observe(hb("a", "w2", 1000, false), t0.Add(-10*time.Second))
	tr.Observe(hb("b", "w3", 1000, true), t0)
	tr.Observe(hb("b", "w4", 1000, false), t0.Add(-2*time.Hour))
	c := NewCollector(func() map[string]*Tracker { return map[string]*Tracker{"acme": tr} })
	c.now = func() time.Time { return t0.Add(time.Second) }

	want := `
# HELP outpost_watchers Watcher replicas heard from in the last day, by tenant, zone and state: live (a heartbeat within 3 of its intervals), stopped (its last heartbeat said it was stopping) or lost (silent for longer).
# TYPE outpost_watchers gauge
outpost_watchers{state="live",tenant="acme",zone="a"} 1
outpost_watchers{state="lost",tenant="acme",zone="a"} 1
outpost_watchers{state="stopped",tenant="acme",zone="a"} 0
outpost_watchers{state="live",tenant="acme",zone="b"} 0
outpost_watchers{state="lost",tenant="acme",zone="b"} 1
outpost_watchers{state="stopped",tenant="acme",zone="b"} 1
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want), "outpost_watchers"))
	require.Equal(t, 3, testutil.CollectAndCount(c, "outpost_watcher_last_seen_timestamp_seconds"), "w4 is past the series bound")
}
