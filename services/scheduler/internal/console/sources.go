package console

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/sources"
)

// nextFires is how many upcoming fires a source's page lists.
const nextFires = 5

type sourceForm struct {
	ID       string
	Pool     string
	Recipe   string
	Cron     string
	TimeZone string
	Timeout  string
	Error    string
	Field    string
}

type sourceData struct {
	Source *sources.Source
	Next   []time.Time
	Runs   []map[string]any
	Total  int
	Recipe string
	Error  string
}

func (c *Console) sourcesPage(w http.ResponseWriter, r *http.Request) {
	var out struct {
		Sources []*sources.Source `json:"sources"`
	}
	d := map[string]any{}
	if err := c.get(r, "/api/v1/sources", &out); err != nil {
		d["Error"] = err.Error()
	}
	d["Sources"] = out.Sources
	c.render(w, r, http.StatusOK, "sources", &page{Title: "Sources", Nav: "sources", Data: d})
}

func (c *Console) newSourcePage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "source_new", &page{Title: "New source", Nav: "sources", Data: sourceForm{Pool: "default", TimeZone: "UTC"}})
}

// createSource creates a source from a pasted DataHub recipe through the
// API; a validation error is shown with its path in the recipe.
func (c *Console) createSource(w http.ResponseWriter, r *http.Request) {
	f := sourceForm{
		ID: strings.TrimSpace(r.PostForm.Get("id")), Pool: strings.TrimSpace(r.PostForm.Get("pool")),
		Recipe: r.PostForm.Get("recipe"), Cron: strings.TrimSpace(r.PostForm.Get("cron")),
		TimeZone: strings.TrimSpace(r.PostForm.Get("time_zone")), Timeout: strings.TrimSpace(r.PostForm.Get("timeout")),
	}
	body := map[string]any{"pool": f.Pool, "task": map[string]any{"ingest": map[string]any{"recipe": f.Recipe}}}
	if f.ID != "" {
		body["id"] = f.ID
	}
	if f.Timeout != "" {
		body["timeout"] = f.Timeout
	}
	if f.Cron != "" {
		body["schedule"] = map[string]any{"cron": f.Cron, "time_zone": f.TimeZone}
	}
	var s sources.Source
	if err := c.do(r, http.MethodPost, "/api/v1/sources", body, &s); err != nil {
		if e, ok := inputError(err); ok {
			f.Error, f.Field = e.Message, e.Field
			c.render(w, r, e.Status, "source_new", &page{Title: "New source", Nav: "sources", Data: f})
			return
		}
		c.failure(w, r, err)
		return
	}
	http.Redirect(w, r, "/sources/"+url.PathEscape(s.ID), http.StatusSeeOther)
}

// sourcePage shows a source: its recipe, schedule with the next fires in
// its time zone, and its runs.
func (c *Console) sourcePage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var s sources.Source
	if err := c.get(r, "/api/v1/sources/"+url.PathEscape(id), &s); err != nil {
		c.failure(w, r, err)
		return
	}
	d := sourceData{Source: &s}
	if s.Task.Ingest != nil {
		d.Recipe = s.Task.Ingest.Recipe
	}
	if s.Schedule != nil && s.Enabled {
		if sched, err := sources.ParseSchedule(s.Schedule.Cron, s.Schedule.TimeZone); err == nil {
			t := c.now()
			for range nextFires {
				t = sched.Next(t)
				d.Next = append(d.Next, t)
			}
		}
	}
	var runs struct {
		Runs  []map[string]any `json:"runs"`
		Total int              `json:"total"`
	}
	if err := c.get(r, "/api/v1/sources/"+url.PathEscape(id)+"/runs?limit=50", &runs); err != nil {
		d.Error = err.Error()
	}
	d.Runs, d.Total = runs.Runs, runs.Total
	c.render(w, r, http.StatusOK, "source", &page{Title: "Source " + s.ID, Nav: "sources", Data: d})
}

// runSource runs a source now and opens the job.
func (c *Console) runSource(w http.ResponseWriter, r *http.Request) {
	var rec jobs.Record
	if err := c.do(r, http.MethodPost, "/api/v1/sources/"+url.PathEscape(r.PathValue("id"))+"/run", nil, &rec); err != nil {
		c.failure(w, r, err)
		return
	}
	http.Redirect(w, r, "/jobs/"+url.PathEscape(rec.ID), http.StatusSeeOther)
}
