package presence

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func TestTracker(t *testing.T) {
	tr := NewTracker(15*time.Second, t0)
	tr.Observe(Runner{ID: "r1", Pool: "a", LastSeen: t0})
	tr.Observe(Runner{ID: "r2", Pool: "a", LastSeen: t0.Add(10 * time.Second)})
	tr.Observe(Runner{ID: "r1", Pool: "a", LastSeen: t0.Add(-time.Second), Running: 9}) // older: ignored
	tr.Observe(Runner{ID: "r3", Pool: "b", LastSeen: t0.Add(-25 * time.Hour)})

	now := t0.Add(20 * time.Second)
	require.Equal(t, []string{"r2", "r1"}, ids(tr.Pool("a", now)), "newest first")
	require.Equal(t, 0, tr.Pool("a", now)[1].Running)
	require.Equal(t, []string{"r2"}, ids(tr.Live("a", now)))
	require.Empty(t, tr.Pool("b", now), "runners silent for a day are forgotten")
	require.Equal(t, map[string]int{"a": 1, "b": 0}, tr.Counts(now))

	c := NewCollector(func() map[string]*Tracker { return map[string]*Tracker{"acme": tr} })
	c.now = func() time.Time { return now }
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	require.Equal(t, 2, testutil.CollectAndCount(c, "outpost_runners"))
}

func ids(rs []Runner) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.ID)
	}
	return out
}
