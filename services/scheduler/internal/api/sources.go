package api

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/httpjson"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/sources"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// sourceRequest is the body of POST /api/v1/sources and of PATCH
// /api/v1/sources/{id}, where every field is optional and only those given
// change (a schedule with an empty cron removes the schedule).
type sourceRequest struct {
	ID       string            `json:"id"`
	Pool     *string           `json:"pool"`
	Task     *taskRequest      `json:"task"`
	Timeout  *string           `json:"timeout"`
	Labels   map[string]string `json:"labels"`
	Project  *string           `json:"project"`
	Schedule *sources.Cron     `json:"schedule"`
	Enabled  *bool             `json:"enabled"`
}

// apply merges the request into s (a new source or a copy of the stored
// one) and checks the result. It reports whether the schedule or the
// enabled flag changed, after which missed fires are not owed.
func (a *API) applySource(req *sourceRequest, s *sources.Source) (bool, error) {
	rearm := false
	if req.Pool != nil {
		s.Pool = *req.Pool
	}
	if req.Task != nil {
		task, err := req.Task.proto()
		if err != nil {
			return false, err
		}
		s.Task = jobs.TaskFromProto(task)
	}
	if req.Timeout != nil {
		d, err := duration(*req.Timeout, "timeout")
		if err != nil {
			return false, err
		}
		s.Timeout = jobs.Duration(d.AsDuration())
	}
	if req.Labels != nil {
		s.Labels = req.Labels
	}
	if req.Project != nil {
		s.Project = *req.Project
	}
	if req.Schedule != nil {
		next := req.Schedule
		if next.Cron == "" {
			next = nil
		}
		rearm = !equalCron(s.Schedule, next)
		s.Schedule = next
	}
	if req.Enabled != nil {
		rearm = rearm || *req.Enabled != s.Enabled
		s.Enabled = *req.Enabled
	}
	if s.Schedule != nil {
		if _, err := sources.ParseSchedule(s.Schedule.Cron, s.Schedule.TimeZone); err != nil {
			field := "schedule.cron"
			if s.Schedule.TimeZone != "" {
				if _, zerr := time.LoadLocation(s.Schedule.TimeZone); zerr != nil {
					field = "schedule.time_zone"
				}
			}
			return false, &jobs.FieldError{Field: field, Message: err.Error()}
		}
	}
	// The job a run creates must be valid now, not fail at each fire.
	spec := &jobsv1.JobSpec{Pool: s.Pool, Task: s.Task.Proto()}
	if s.Timeout > 0 {
		spec.Timeout, _ = duration(time.Duration(s.Timeout).String(), "timeout")
	}
	spec.Labels = s.Labels
	spec.Project = s.Project
	norm, err := jobs.NormalizeSpec(spec, a.opts.Policy)
	if err != nil {
		return false, err
	}
	s.Pool = norm.Pool
	s.Task = jobs.TaskFromProto(norm.Task)
	return rearm, nil
}

func equalCron(a, b *sources.Cron) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func (a *API) createSource(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	var req sourceRequest
	if !a.decode(w, r, &req, false) {
		return
	}
	now := a.now()
	s := &sources.Source{ID: req.ID, Tenant: t.Name, Enabled: true, CreatedAt: now, UpdatedAt: now, LastFire: now}
	if s.ID == "" {
		s.ID = "src-" + jobs.NewID(now)
	} else if !sources.ValidID(s.ID) {
		httpjson.WriteError(w, http.StatusBadRequest, "must be 1 to "+strconv.Itoa(sources.MaxIDLen)+" characters of [A-Za-z0-9_-]", "id")
		return
	}
	if req.Task == nil {
		httpjson.WriteError(w, http.StatusBadRequest, "is required", "task")
		return
	}
	if _, err := a.applySource(&req, s); err != nil {
		writeFieldError(w, err)
		return
	}
	s.User = directory.UserOf(auth.PrincipalFrom(r.Context()))
	s.Refresh()
	err := t.Sources.Create(r.Context(), s)
	switch {
	case errors.Is(err, sources.ErrExists):
		httpjson.WriteError(w, http.StatusConflict, "source \""+s.ID+"\" exists: change it with PATCH", "id")
	case err != nil:
		a.internal(w, r, "create source", err)
	default:
		w.Header().Set("Location", "/api/v1/sources/"+s.ID)
		httpjson.WriteJSON(w, http.StatusCreated, s)
	}
}

func (a *API) source(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) (*sources.Source, bool) {
	id := r.PathValue("id")
	s, err := t.Sources.Get(r.Context(), id)
	if err == nil {
		s.Refresh()
		return s, true
	}
	a.sourceError(w, r, id, t, err)
	return nil, false
}

func (a *API) sourceError(w http.ResponseWriter, r *http.Request, id string, t *tenants.Tenant, err error) {
	switch {
	case errors.Is(err, sources.ErrNotFound):
		httpjson.WriteError(w, http.StatusNotFound, "source \""+id+"\" not found in tenant \""+t.Name+"\"", "id")
	case errors.Is(err, jobs.ErrInvalidSpec):
		writeFieldError(w, err)
	default:
		a.internal(w, r, "source", err)
	}
}

func (a *API) getSource(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	if s, ok := a.source(w, r, t); ok {
		httpjson.WriteJSON(w, http.StatusOK, s)
	}
}

func (a *API) listSources(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	out := []*sources.Source{}
	err := t.Sources.List(r.Context(), func(s *sources.Source) bool {
		s.Refresh()
		out = append(out, s)
		return true
	})
	if err != nil {
		a.internal(w, r, "list sources", err)
		return
	}
	slices.SortFunc(out, func(x, y *sources.Source) int { return cmp.Compare(x.ID, y.ID) })
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"sources": out})
}

func (a *API) patchSource(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	var req sourceRequest
	if !a.decode(w, r, &req, false) {
		return
	}
	id := r.PathValue("id")
	if req.ID != "" && req.ID != id {
		httpjson.WriteError(w, http.StatusBadRequest, "a source's id cannot change", "id")
		return
	}
	s, err := t.Sources.Update(r.Context(), id, func(s *sources.Source) (bool, error) {
		rearm, err := a.applySource(&req, s)
		if err != nil {
			return false, err
		}
		// Whoever changes a source owns its runs from then on: a change
		// by another user must not run as the source's previous user.
		if u := directory.UserOf(auth.PrincipalFrom(r.Context())); u != "" {
			s.User = u
		}
		now := a.now()
		if rearm {
			s.LastFire = now // fires missed while disabled are not owed
		}
		s.UpdatedAt = now
		return true, nil
	})
	if err != nil {
		a.sourceError(w, r, id, t, err)
		return
	}
	s.Refresh()
	httpjson.WriteJSON(w, http.StatusOK, s)
}

func (a *API) deleteSource(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	id := r.PathValue("id")
	_, err := t.Sources.Update(r.Context(), id, func(s *sources.Source) (bool, error) {
		s.Deleted, s.Enabled, s.UpdatedAt = true, false, a.now()
		return true, nil
	})
	if err != nil {
		a.sourceError(w, r, id, t, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// runSource answers POST /api/v1/sources/{id}/run like a job submit: 201
// with the record, or 503 with the id when it is not recorded in time.
func (a *API) runSource(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	s, ok := a.source(w, r, t)
	if !ok {
		return
	}
	id, err := a.engine.RunSource(r.Context(), t, s)
	if err != nil {
		a.log.Error("run source failed", "tenant", t.Name, "source", s.ID, "error", err)
		httpjson.WriteUnavailable(w, retryAfter, "run source: the broker did not take the job; retry later")
		return
	}
	w.Header().Set("Location", "/api/v1/jobs/"+id)
	if rec := a.awaitRecord(r.Context(), t, id); rec != nil {
		httpjson.WriteJSON(w, http.StatusCreated, rec.Public())
		return
	}
	a.writePending(w, t, id)
}

// runBody is one run of a source.
type runBody struct {
	JobID       string     `json:"job_id"`
	State       jobs.State `json:"state"`
	Trigger     string     `json:"trigger"`
	ScheduledAt string     `json:"scheduled_at,omitempty"`
	Attempt     int        `json:"attempt"`
	Reason      string     `json:"reason,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	FinishedAt  *time.Time `json:"finished_at,omitempty"`
}

// listRuns answers GET /api/v1/sources/{id}/runs?limit=, newest first: the
// jobs labelled with the source. It reads every job of the tenant, as the
// job listing does.
func (a *API) listRuns(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	s, ok := a.source(w, r, t)
	if !ok {
		return
	}
	limit, ok := a.limit(w, r.URL.Query().Get("limit"))
	if !ok {
		return
	}
	var out []runBody
	err := t.Jobs.List(r.Context(), func(rec *jobs.Record) bool {
		if rec.Labels[sources.LabelSource] == s.ID {
			out = append(out, runBody{JobID: rec.ID, State: rec.State, Trigger: rec.Labels[sources.LabelTrigger],
				ScheduledAt: rec.Labels[sources.LabelScheduledAt], Attempt: rec.Attempt, Reason: rec.Reason,
				CreatedAt: rec.CreatedAt, FinishedAt: rec.FinishedAt})
		}
		return true
	})
	if err != nil {
		a.internal(w, r, "list runs", err)
		return
	}
	slices.SortFunc(out, func(x, y runBody) int {
		return cmp.Or(cmp.Compare(y.ScheduledAt, x.ScheduledAt), y.CreatedAt.Compare(x.CreatedAt), cmp.Compare(y.JobID, x.JobID))
	})
	if out == nil {
		out = []runBody{}
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"source": s.ID, "runs": out[:min(limit, len(out))], "total": len(out)})
}
