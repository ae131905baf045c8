package api

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// Runner states of the fleet view.
const (
	runnerLive = "live"
	// runnerLost is a runner whose last heartbeat is older than the
	// presence window (three heartbeat intervals by default): it is never
	// shown as live once it has stopped heartbeating.
	runnerLost = "lost"
)

// runnerBody is one runner of GET /api/v1/runners.
type runnerBody struct {
	ID       string    `json:"id"`
	Pool     string    `json:"pool"`
	Version  string    `json:"version,omitempty"`
	State    string    `json:"state"`
	Running  int       `json:"running"`
	Capacity int       `json:"capacity"`
	Draining bool      `json:"draining"`
	LastSeen time.Time `json:"last_seen"`
	// SilentSeconds is how long ago its last heartbeat was.
	SilentSeconds float64 `json:"silent_seconds"`
}

// listRunners answers GET /api/v1/runners?pool=: every runner of the
// tenant heard from in the last day, per pool, newest heartbeat first,
// live or lost by the age of its last heartbeat.
func (a *API) listRunners(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	pool := r.URL.Query().Get("pool")
	if pool != "" && !queue.ValidToken(pool) {
		httpjson.WriteError(w, http.StatusBadRequest, "must be 1 to 64 characters of [A-Za-z0-9_-]", "pool")
		return
	}
	now := a.now()
	window := t.Presence.Window()
	out := []runnerBody{}
	for p := range t.Presence.Counts(now) {
		if pool != "" && p != pool {
			continue
		}
		for _, rn := range t.Presence.Pool(p, now) {
			silent := now.Sub(rn.LastSeen)
			state := runnerLive
			if silent > window {
				state = runnerLost
			}
			out = append(out, runnerBody{ID: rn.ID, Pool: p, Version: rn.Version, State: state, Running: rn.Running,
				Capacity: rn.Capacity, Draining: rn.Draining, LastSeen: rn.LastSeen.UTC(), SilentSeconds: max(silent.Seconds(), 0)})
		}
	}
	slices.SortFunc(out, func(x, y runnerBody) int {
		return cmp.Or(cmp.Compare(x.Pool, y.Pool), y.LastSeen.Compare(x.LastSeen), cmp.Compare(x.ID, y.ID))
	})
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"runners": out, "window_seconds": window.Seconds()})
}
