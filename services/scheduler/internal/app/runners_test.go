package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

type runnersView struct {
	Runners []struct {
		ID       string    `json:"id"`
		Pool     string    `json:"pool"`
		Version  string    `json:"version"`
		State    string    `json:"state"`
		Running  int       `json:"running"`
		Capacity int       `json:"capacity"`
		Draining bool      `json:"draining"`
		LastSeen time.Time `json:"last_seen"`
	} `json:"runners"`
	WindowSeconds float64 `json:"window_seconds"`
}

// TestRunnersFleetView: GET /api/v1/runners lists each runner with its
// version, load and last heartbeat; one that stops heartbeating is shown
// lost once the presence window has passed, never live.
func TestRunnersFleetView(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Runners.PresenceWindow = 3 * time.Second })
	e.publish(e.subjects.Runners("default", "etl"), &jobsv1.RunnerHeartbeat{
		Envelope: events.NewEnvelope("default", 0, "", ""), RunnerId: "r-etl", Pool: "etl",
		Running: 1, Capacity: 4, Version: "v1.2.3",
	}, "")
	e.heartbeat("default", "remote", "r-remote", 0, 2, true)

	runners := func(query string) runnersView {
		code, out := e.do(http.MethodGet, "/api/v1/runners"+query, "", nil)
		require.Equal(t, http.StatusOK, code, string(out))
		return decode[runnersView](t, out)
	}
	var v runnersView
	require.Eventually(t, func() bool { v = runners(""); return len(v.Runners) == 2 }, waitFor, tick)
	require.InDelta(t, 3.0, v.WindowSeconds, 0.001)
	etl, remote := v.Runners[0], v.Runners[1]
	require.Equal(t, "r-etl", etl.ID)
	require.Equal(t, []string{"live", "live"}, []string{etl.State, remote.State})
	require.Equal(t, "v1.2.3", etl.Version)
	require.Equal(t, []int{1, 4}, []int{etl.Running, etl.Capacity})
	require.Equal(t, "r-remote", remote.ID)
	require.True(t, remote.Draining)

	only := runners("?pool=remote")
	require.Len(t, only.Runners, 1)
	require.Equal(t, "r-remote", only.Runners[0].ID)

	// No more heartbeats: both are lost once the window has passed, and
	// stay listed.
	require.Eventually(t, func() bool {
		v = runners("")
		return len(v.Runners) == 2 && v.Runners[0].State == "lost" && v.Runners[1].State == "lost"
	}, waitFor, tick)
	require.Equal(t, etl.LastSeen, v.Runners[0].LastSeen)

	code, _ := e.do(http.MethodGet, "/api/v1/runners?pool=a.b", "", nil)
	require.Equal(t, http.StatusBadRequest, code)
}
