package console

import (
	"cmp"
	"net/http"
	"slices"
	"time"

	"github.com/outposthq/outpost/libs/auth"
)

// registerMore adds the sections beyond jobs.
func (c *Console) registerMore(r *auth.Router) {
	const v, o = auth.RoleViewer, auth.RoleOperator
	r.HandleFunc("GET /fleet", v, c.fleetPage)
	r.HandleFunc("GET /sources", v, c.sourcesPage)
	r.HandleFunc("GET /sources/new", o, c.newSourcePage)
	r.HandleFunc("POST /sources", o, c.createSource)
	r.HandleFunc("GET /sources/{id}", v, c.sourcePage)
	r.HandleFunc("POST /sources/{id}/run", o, c.runSource)
	r.HandleFunc("GET /deadletters", v, c.deadLettersPage)
	r.HandleFunc("POST /deadletters/{id}/replay", o, c.replayDeadLetter)
	r.HandleFunc("GET /accounts", v, c.accountsPage)
	r.HandleFunc("GET /accounts/{name}", v, c.accountPage)
	r.HandleFunc("GET /accounts/{name}/objects", v, c.objectsPage)
	r.HandleFunc("GET /accounts/{name}/objects/{kind}/{namespace}/{object}", v, c.objectPage)
	// Migrate, retry and deactivate change the account's state, which the
	// accounts API asks an admin for.
	r.HandleFunc("POST /accounts/{name}/state", auth.RoleAdmin, c.setAccountState)
}

type runner struct {
	ID            string    `json:"id"`
	Pool          string    `json:"pool"`
	Version       string    `json:"version"`
	State         string    `json:"state"`
	Running       int       `json:"running"`
	Capacity      int       `json:"capacity"`
	Draining      bool      `json:"draining"`
	LastSeen      time.Time `json:"last_seen"`
	SilentSeconds float64   `json:"silent_seconds"`
}

type poolView struct {
	Pool        string
	Paused      bool
	Live        int
	Lost        int
	Backlog     int
	OldestQueue *time.Time
	Runners     []runner
}

type fleetData struct {
	Pools  []*poolView
	Window float64
	Zones  []map[string]any
	Error  string
	// ZonesError says why the watcher zones are not shown.
	ZonesError string
}

// fleetPage shows the pools (backlog, oldest queued job, paused) and
// their runners (version, last heartbeat; lost ones marked), and the
// watchers' zones from the account-migrator.
func (c *Console) fleetPage(w http.ResponseWriter, r *http.Request) {
	d := c.fleetData(r)
	if r.Header.Get("HX-Request") != "" {
		c.fragment(w, "fleet", "fleet-body", d)
		return
	}
	c.render(w, r, http.StatusOK, "fleet", &page{Title: "Fleet", Nav: "fleet", Data: d})
}

func (c *Console) fleetData(r *http.Request) fleetData {
	var d fleetData
	var rs struct {
		Runners []runner `json:"runners"`
		Window  float64  `json:"window_seconds"`
	}
	if err := c.get(r, "/api/v1/runners", &rs); err != nil {
		d.Error = err.Error()
		return d
	}
	d.Window = rs.Window
	byPool := map[string]*poolView{}
	pool := func(name string) *poolView {
		if byPool[name] == nil {
			byPool[name] = &poolView{Pool: name}
		}
		return byPool[name]
	}
	for _, rn := range rs.Runners {
		p := pool(rn.Pool)
		p.Runners = append(p.Runners, rn)
		if rn.State == "lost" {
			p.Lost++
		} else {
			p.Live++
		}
	}
	// The pools' backlog and oldest queued job come from the fleet view
	// the API serves (every QUEUED record of the tenant counted).
	var ps struct {
		Pools []struct {
			Pool           string     `json:"pool"`
			Paused         bool       `json:"paused"`
			Backlog        int        `json:"backlog"`
			OldestQueuedAt *time.Time `json:"oldest_queued_at"`
		} `json:"pools"`
	}
	if err := c.get(r, "/api/v1/pools", &ps); err != nil {
		d.Error = err.Error()
	}
	for _, p := range ps.Pools {
		v := pool(p.Pool)
		v.Paused, v.Backlog, v.OldestQueue = p.Paused, p.Backlog, p.OldestQueuedAt
	}
	for _, p := range byPool {
		d.Pools = append(d.Pools, p)
	}
	slices.SortFunc(d.Pools, func(x, y *poolView) int { return cmp.Compare(x.Pool, y.Pool) })
	if c.cfg.AccountsURL == "" {
		d.ZonesError = "The accounts API is not configured (console.accounts_url)."
		return d
	}
	var zs struct {
		Zones []map[string]any `json:"zones"`
	}
	if err := c.accountsGet(r, "/api/v1/zones", &zs); err != nil {
		d.ZonesError = err.Error()
		return d
	}
	d.Zones = zs.Zones
	return d
}
