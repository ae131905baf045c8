package api

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/outposthq/outpost/libs/httpjson"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/results"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// recordBody is one metadata record in a results answer.
type recordBody struct {
	URN        string         `json:"urn"`
	EntityType string         `json:"entity_type"`
	Platform   string         `json:"platform"`
	Name       string         `json:"name"`
	Aspects    map[string]any `json:"aspects,omitempty"`
}

// checkBody is one check result in a results answer.
type checkBody struct {
	Name     string `json:"name"`
	Outcome  string `json:"outcome"`
	Observed string `json:"observed,omitempty"`
	Message  string `json:"message,omitempty"`
}

// resultsBody answers GET /api/v1/jobs/{id}/results.
type resultsBody struct {
	JobID        string       `json:"job_id"`
	Tenant       string       `json:"tenant"`
	State        jobs.State   `json:"state"`
	Attempt      int          `json:"attempt"`
	TotalRecords int          `json:"total_records"`
	TotalChecks  int          `json:"total_checks"`
	Truncated    bool         `json:"truncated,omitempty"`
	Records      []recordBody `json:"records"`
	Checks       []checkBody  `json:"checks"`
	// Next is the from= of the next page, absent on the last one.
	Next string `json:"next,omitempty"`
}

// results answers GET /api/v1/jobs/{id}/results?from=&limit=: the records
// and check results of the job's current attempt, a page of the runner's
// batches at a time (at least limit entries unless the last page, whole
// batches).
func (a *API) results(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	rec, ok := a.job(w, r, t)
	if !ok {
		return
	}
	q := r.URL.Query()
	limit, ok := a.limit(w, q.Get("limit"))
	if !ok {
		return
	}
	var from uint64
	if s := q.Get("from"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, "must be the next value of a previous page", "from")
			return
		}
		from = n
	}
	body := resultsBody{JobID: rec.ID, Tenant: t.Name, State: rec.State, Attempt: rec.Attempt, Records: []recordBody{}, Checks: []checkBody{}}
	idx, err := t.Results.Index(r.Context(), rec.ID)
	switch {
	case errors.Is(err, results.ErrNotFound):
		httpjson.WriteJSON(w, http.StatusOK, body)
		return
	case err != nil:
		a.internal(w, r, "get results", err)
		return
	case idx.Attempt < rec.Attempt:
		// A newer attempt runs and has sent nothing yet: the older
		// attempt's results are not the job's.
		httpjson.WriteJSON(w, http.StatusOK, body)
		return
	}
	body.Attempt, body.TotalRecords, body.TotalChecks, body.Truncated = idx.Attempt, idx.Records, idx.Checks, idx.Truncated
	n := 0
	err = t.Results.Batches(r.Context(), idx, from, func(jr *ingestv1.JobRecords) bool {
		if n >= limit {
			body.Next = strconv.FormatUint(jr.FirstSeq, 10)
			return false
		}
		for _, m := range jr.Records {
			rb := recordBody{URN: m.Urn, EntityType: m.EntityType, Platform: m.Platform, Name: m.Name}
			if len(m.Aspects) > 0 {
				rb.Aspects = make(map[string]any, len(m.Aspects))
				for k, v := range m.Aspects {
					rb.Aspects[k] = v.AsMap()
				}
			}
			body.Records = append(body.Records, rb)
		}
		for _, c := range jr.Checks {
			body.Checks = append(body.Checks, checkBody{Name: c.Name, Outcome: strings.TrimPrefix(c.Outcome.String(), "CHECK_OUTCOME_"), Observed: c.Observed, Message: c.Message})
		}
		n += len(jr.Records) + len(jr.Checks)
		return true
	})
	if err != nil {
		a.internal(w, r, "read results", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, body)
}

// datasets answers GET /api/v1/metadata/datasets?platform=&name=&limit=:
// the latest record of every dataset URN of the tenant, by URN. It reads
// the whole view and keeps only the first limit matches in memory.
func (a *API) datasets(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	q := r.URL.Query()
	limit, ok := a.limit(w, q.Get("limit"))
	if !ok {
		return
	}
	platform, name := q.Get("platform"), q.Get("name")
	var out []results.Dataset
	total := 0
	err := t.Results.Datasets(r.Context(), func(d results.Dataset) bool {
		if !strings.HasPrefix(d.URN, "urn:li:dataset:") || (platform != "" && d.Platform != platform) || (name != "" && d.Name != name) {
			return true
		}
		total++
		i, _ := slices.BinarySearchFunc(out, d.URN, func(x results.Dataset, urn string) int { return strings.Compare(x.URN, urn) })
		if i < limit {
			out = slices.Insert(out, i, d)
			if len(out) > limit {
				out = out[:limit]
			}
		}
		return true
	})
	if err != nil {
		a.internal(w, r, "list datasets", err)
		return
	}
	if out == nil {
		out = []results.Dataset{}
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"datasets": out, "total": total})
}

// limit reads a limit query parameter (the default when empty) or writes
// the error.
func (a *API) limit(w http.ResponseWriter, s string) (int, bool) {
	if s == "" {
		return a.opts.ListLimit, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > a.opts.MaxListLimit {
		httpjson.WriteError(w, http.StatusBadRequest, "must be an integer between 1 and "+strconv.Itoa(a.opts.MaxListLimit), "limit")
		return 0, false
	}
	return n, true
}
