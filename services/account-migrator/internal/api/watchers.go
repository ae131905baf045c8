package api

import (
	"cmp"
	"net/http"
	"slices"

	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/services/account-migrator/internal/presence"
)

// watcherStates are the values ?state= accepts.
var watcherStates = []string{presence.StateLive, presence.StateStopped, presence.StateLost}

// watchers is the tenant's watcher fleet, one entry per watcher heard from
// in the last day: its version, the accounts it holds, when it was last
// seen and whether it is live, stopped or lost. It reads the same tracker
// the reconciler judges zones with, so the fleet view and the accounts'
// states cannot disagree. ?zone= and ?state= narrow the list.
func (a *API) watchers(w http.ResponseWriter, r *http.Request, tenant string) {
	q := r.URL.Query()
	zone, state := q.Get("zone"), q.Get("state")
	if state != "" && !slices.Contains(watcherStates, state) {
		httpjson.WriteError(w, http.StatusBadRequest, "state must be one of live, stopped, lost", "state")
		return
	}
	out := []presence.Watcher{}
	if tr := a.accounts.Presence(tenant); tr != nil {
		for z, ws := range tr.Watchers(a.opts.Now()) {
			if zone != "" && z != zone {
				continue
			}
			for _, wt := range ws {
				if state == "" || wt.State == state {
					out = append(out, wt)
				}
			}
		}
	}
	slices.SortFunc(out, func(x, y presence.Watcher) int {
		return cmp.Or(cmp.Compare(x.Zone, y.Zone), cmp.Compare(x.ID, y.ID))
	})
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"watchers": out, "count": len(out)})
}
