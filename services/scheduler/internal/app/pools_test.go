package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

type poolsView struct {
	Pools []struct {
		Pool                string     `json:"pool"`
		Paused              bool       `json:"paused"`
		Backlog             int        `json:"backlog"`
		OldestQueuedAt      *time.Time `json:"oldest_queued_at"`
		OldestQueuedSeconds float64    `json:"oldest_queued_seconds"`
		DispatchLag         struct {
			Samples     int     `json:"samples"`
			P50Seconds  float64 `json:"p50_seconds"`
			MaxSeconds  float64 `json:"max_seconds"`
			LastSeconds float64 `json:"last_seconds"`
		} `json:"dispatch_lag"`
		Runners     int `json:"runners"`
		RunnersLost int `json:"runners_lost"`
	} `json:"pools"`
	LagWindowSeconds float64 `json:"lag_window_seconds"`
}

// TestPoolsFleetView: GET /api/v1/pools and the pool metrics show each
// pool's backlog, oldest queued job, dispatch lag, live and lost runners
// and paused state from the scheduler's own records; a runner that stops
// heartbeating is lost once the presence window has passed, in both.
func TestPoolsFleetView(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Runners.PresenceWindow = 3 * time.Second })
	e.heartbeat("default", "etl", "r-etl", 0, 2, false)
	first := e.submit("", noopJob(map[string]any{"pool": "etl"}))
	e.submit("", noopJob(map[string]any{"pool": "etl"}))
	e.submit("acme", noopJob(map[string]any{"pool": "other"})) // another tenant: not listed

	pools := func() poolsView {
		code, out := e.do(http.MethodGet, "/api/v1/pools", "", nil)
		require.Equal(t, http.StatusOK, code, string(out))
		return decode[poolsView](t, out)
	}
	var v poolsView
	require.Eventually(t, func() bool { v = pools(); return len(v.Pools) == 1 && v.Pools[0].Runners == 1 }, waitFor, tick)
	etl := v.Pools[0]
	require.Equal(t, "etl", etl.Pool)
	require.Equal(t, 2, etl.Backlog)
	require.NotNil(t, etl.OldestQueuedAt)
	require.Positive(t, etl.OldestQueuedSeconds)
	require.Zero(t, etl.DispatchLag.Samples)
	require.Zero(t, etl.RunnersLost)
	require.False(t, etl.Paused)
	require.InDelta(t, 900, v.LagWindowSeconds, 0.001)

	labels := map[string]string{"tenant": "default", "pool": "etl"}
	live := map[string]string{"tenant": "default", "pool": "etl", "state": "live"}
	lost := map[string]string{"tenant": "default", "pool": "etl", "state": "lost"}
	require.Equal(t, 2.0, e.metric("outpost_pool_backlog", labels))
	require.Positive(t, e.metric("outpost_pool_oldest_queued_seconds", labels))
	require.Equal(t, 1.0, e.metric("outpost_pool_runners", live))
	require.Equal(t, 1.0, e.metric("outpost_pool_backlog", map[string]string{"tenant": "acme", "pool": "other"}))
	seen := e.metric("outpost_runner_last_seen_timestamp_seconds", map[string]string{"tenant": "default", "pool": "etl", "runner": "r-etl"})
	require.InDelta(t, float64(time.Now().Unix()), seen, 30)

	// The first job starts: it leaves the backlog and gives a dispatch lag.
	e.status("default", first.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	e.waitState("default", first.ID, "RUNNING")
	v = pools()
	require.Equal(t, 1, v.Pools[0].Backlog)
	require.True(t, v.Pools[0].OldestQueuedAt.After(*etl.OldestQueuedAt), "the oldest queued is now the second job")
	require.Equal(t, 1, v.Pools[0].DispatchLag.Samples)
	require.Positive(t, v.Pools[0].DispatchLag.LastSeconds)
	require.Equal(t, v.Pools[0].DispatchLag.LastSeconds, v.Pools[0].DispatchLag.MaxSeconds)
	require.Eventually(t, func() bool { return e.metric("outpost_pool_backlog", labels) == 1 }, waitFor, tick)

	// No more heartbeats: the runner is lost once the window has passed,
	// never live, in the view and the metrics.
	require.Eventually(t, func() bool {
		v = pools()
		return v.Pools[0].Runners == 0 && v.Pools[0].RunnersLost == 1
	}, waitFor, tick)
	require.Equal(t, 0.0, e.metric("outpost_pool_runners", live))
	require.Equal(t, 1.0, e.metric("outpost_pool_runners", lost))

	code, out := e.do(http.MethodPost, "/api/v1/pools/etl/pause", "", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	require.True(t, pools().Pools[0].Paused)
	require.Eventually(t, func() bool { return e.metric("outpost_pool_paused", labels) == 1 }, waitFor, tick)
}
