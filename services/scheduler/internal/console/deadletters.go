package console

import (
	"net/http"
	"net/url"
	"strings"
	"time"
)

type deadLetter struct {
	ID          string    `json:"id"`
	Role        string    `json:"role"`
	Subject     string    `json:"subject"`
	Type        string    `json:"type"`
	Reason      string    `json:"reason"`
	ReasonClass string    `json:"reason_class"`
	Attempts    int       `json:"attempts"`
	FirstTime   time.Time `json:"first_time"`
	LastTime    time.Time `json:"last_time"`
	Direct      bool      `json:"published_directly"`
	Replays     int       `json:"replays"`
}

// Replayable mirrors the API's refusals: a dead letter published straight
// to the subject, or a job dispatch (its job already failed), answers 409.
func (d deadLetter) Replayable() bool { return !d.Direct && d.Role != "jobs" && d.Subject != "" }

// deadLettersPage lists the tenant's dead letters with their reasons, a
// page at a time (?after=).
func (c *Console) deadLettersPage(w http.ResponseWriter, r *http.Request) {
	q := url.Values{"limit": {"100"}}
	if a := r.URL.Query().Get("after"); a != "" {
		q.Set("after", a)
	}
	if role := strings.TrimSpace(r.URL.Query().Get("role")); role != "" {
		q.Set("role", role)
	}
	var out struct {
		DeadLetters []deadLetter `json:"deadletters"`
		Next        string       `json:"next"`
	}
	d := map[string]any{"Role": r.URL.Query().Get("role"), "Notice": r.URL.Query().Get("replayed")}
	if err := c.get(r, "/api/v1/deadletters?"+q.Encode(), &out); err != nil {
		d["Error"] = err.Error()
	}
	d["Items"], d["Next"] = out.DeadLetters, out.Next
	c.render(w, r, http.StatusOK, "deadletters", &page{Title: "Dead letters", Nav: "deadletters", Data: d})
}

// replayDeadLetter replays one through the API.
func (c *Console) replayDeadLetter(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := c.do(r, http.MethodPost, "/api/v1/deadletters/"+url.PathEscape(id)+"/replay", nil, nil); err != nil {
		c.failure(w, r, err)
		return
	}
	http.Redirect(w, r, "/deadletters?replayed="+url.QueryEscape(id), http.StatusSeeOther)
}
