package api

import (
	"cmp"
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/fleet"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// pendingBody answers a submit whose record was not created in time: an
// error that names the job's id, so that the client can send the same
// request again with that id (a submit of an id that has a record answers
// 200 with it) or look the job up.
type pendingBody struct {
	Error  string `json:"error"`
	ID     string `json:"id"`
	Tenant string `json:"tenant"`
}

// submit creates the job: 201 with the record, 200 with the existing
// record for an id already used.
//
// Where the engine allows it, the record is created and the job
// dispatched in the request (dispatch/direct.go). Otherwise submit
// publishes a SubmitJob and waits (bounded) for the submit consumer to
// create the record.
//
// The API never answers that a job is queued before its record exists:
// only the record makes a job. A SubmitJob still on the queue is processed
// later, but one that is dead-lettered never makes a record, and a client
// told "queued" would wait for a job that does not exist. So when the
// record is not there within SubmitWait the answer is 503 with Retry-After
// and the id (writePending); submitting the same id again is idempotent.
func (a *API) submit(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	var req submitRequest
	if !a.decode(w, r, &req, false) {
		return
	}
	spec, err := req.spec()
	if err != nil {
		writeFieldError(w, err)
		return
	}
	if spec, err = jobs.NormalizeSpec(spec, a.opts.Policy); err != nil {
		writeFieldError(w, err)
		return
	}
	if wait := a.engine.AdmitSubmit(t); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		httpjson.WriteError(w, http.StatusTooManyRequests, "the tenant's submission rate limit is reached: retry later", "")
		return
	}
	id := req.ID
	if id == "" {
		id = jobs.NewID(a.now())
	}
	if a.engine.DirectSubmit() {
		// Create answers an id that exists with its record: no read first.
		a.submitDirect(w, r, t, id, spec)
		return
	}
	if req.ID != "" {
		if rec, err := t.Jobs.Get(r.Context(), id); err == nil {
			httpjson.WriteJSON(w, http.StatusOK, rec.Public())
			return
		} else if !errors.Is(err, jobs.ErrNotFound) {
			a.internal(w, r, "get job", err)
			return
		}
	}
	sctx, cancel := context.WithTimeout(r.Context(), submitPublishWait)
	err = a.engine.Submit(sctx, t, id, spec)
	cancel()
	if err != nil {
		switch {
		case errors.Is(err, queue.ErrLimitExceeded):
			httpjson.WriteError(w, http.StatusTooManyRequests, "the tenant's queue is full: "+err.Error(), "")
		case errors.Is(err, queue.ErrPayloadTooLarge):
			httpjson.WriteError(w, http.StatusRequestEntityTooLarge, err.Error(), "")
		default:
			a.log.Warn("submit failed", "tenant", t.Name, "job_id", id, "error", err)
			httpjson.WriteUnavailable(w, retryAfter, "submit job: the broker did not take the job; retry later")
		}
		return
	}
	w.Header().Set("Location", "/api/v1/jobs/"+id)
	if rec := a.awaitRecord(r.Context(), t, id); rec != nil {
		httpjson.WriteJSON(w, http.StatusCreated, rec.Public())
		return
	}
	a.writePending(w, t, id)
}

// submitDirect creates the job's record and dispatches it. A dispatch
// that fails does not fail the request: the record is the job, and the
// engine's sweep dispatches it.
func (a *API) submitDirect(w http.ResponseWriter, r *http.Request, t *tenants.Tenant, id string, spec *jobsv1.JobSpec) {
	ctx, cancel := context.WithTimeout(r.Context(), submitPublishWait)
	rec, created, err := a.engine.Create(ctx, t, id, spec)
	cancel()
	if errors.Is(err, queue.ErrLimitExceeded) {
		httpjson.WriteError(w, http.StatusTooManyRequests, "the tenant's queue is full: retry later", "")
		return
	}
	if err != nil {
		a.log.Warn("submit failed", "tenant", t.Name, "job_id", id, "error", err)
		httpjson.WriteUnavailable(w, retryAfter, "submit job: the job store did not take the job; retry later")
		return
	}
	w.Header().Set("Location", "/api/v1/jobs/"+id)
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	httpjson.WriteJSON(w, code, rec.Public())
}

// submitPublishWait bounds how long a submit waits for the broker to store
// the job: long enough to ride out a stream leader election, and short of
// a client's patience when the broker has no quorum (the answer is then
// 503 with Retry-After).
const submitPublishWait = 10 * time.Second

// writePending answers 503 for a submitted job that has no record yet.
func (a *API) writePending(w http.ResponseWriter, t *tenants.Tenant, id string) {
	a.log.Warn("job not recorded in time", "tenant", t.Name, "job_id", id, "wait", a.opts.SubmitWait)
	w.Header().Set("Retry-After", "1")
	httpjson.WriteJSON(w, http.StatusServiceUnavailable, pendingBody{
		Error:  "job \"" + id + "\" was submitted but is not recorded yet; submit it again with this id, or GET its Location",
		ID:     id,
		Tenant: t.Name,
	})
}

// awaitRecord polls for the record of id for up to SubmitWait.
func (a *API) awaitRecord(ctx context.Context, t *tenants.Tenant, id string) *jobs.Record {
	ctx, cancel := context.WithTimeout(ctx, a.opts.SubmitWait)
	defer cancel()
	for wait := 2 * time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
		if rec, err := t.Jobs.Get(ctx, id); err == nil {
			return rec
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

func (a *API) get(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	rec, ok := a.job(w, r, t)
	if ok {
		httpjson.WriteJSON(w, http.StatusOK, rec.Public())
	}
}

// job loads the job named by the {id} path value or writes the error.
func (a *API) job(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) (*jobs.Record, bool) {
	id := r.PathValue("id")
	if !queue.ValidToken(id) {
		httpjson.WriteError(w, http.StatusNotFound, "job \""+id+"\" not found", "id")
		return nil, false
	}
	rec, err := t.Jobs.Get(r.Context(), id)
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		httpjson.WriteError(w, http.StatusNotFound, "job \""+id+"\" not found in tenant \""+t.Name+"\"", "id")
		return nil, false
	case err != nil:
		a.internal(w, r, "get job", err)
		return nil, false
	}
	return rec, true
}

// list answers GET /api/v1/jobs?state=&pool=&label=&since=&until=&limit=,
// newest first. state may list several states separated by commas; label
// is a selector (key=value or key, several separated by commas, the
// parameter repeatable), all of whose terms a job's labels must match;
// since and until bound the creation time (RFC 3339, since inclusive,
// until exclusive). total counts every match, limit bounds the list.
func (a *API) list(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	q := r.URL.Query()
	sel, err := parseLabelSelector(q["label"])
	if err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "label")
		return
	}
	var since, until time.Time
	for _, b := range []struct {
		name string
		to   *time.Time
	}{{"since", &since}, {"until", &until}} {
		if v := q.Get(b.name); v != "" {
			if *b.to, err = time.Parse(time.RFC3339Nano, v); err != nil {
				httpjson.WriteError(w, http.StatusBadRequest, "must be an RFC 3339 time such as 2026-01-02T15:04:05Z", b.name)
				return
			}
		}
	}
	if !since.IsZero() && !until.IsZero() && !until.After(since) {
		httpjson.WriteError(w, http.StatusBadRequest, "must be after since", "until")
		return
	}
	var states []jobs.State
	if s := q.Get("state"); s != "" {
		for part := range strings.SplitSeq(s, ",") {
			st, err := jobs.ParseState(part)
			if err != nil {
				httpjson.WriteError(w, http.StatusBadRequest, "unknown state \""+part+"\"; states are QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED, TIMED_OUT", "state")
				return
			}
			states = append(states, st)
		}
	}
	pool := q.Get("pool")
	limit := a.opts.ListLimit
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > a.opts.MaxListLimit {
			httpjson.WriteError(w, http.StatusBadRequest, "must be an integer between 1 and "+strconv.Itoa(a.opts.MaxListLimit), "limit")
			return
		}
		limit = n
	}
	var out []*jobs.Record
	err = t.Jobs.List(r.Context(), func(rec *jobs.Record) bool {
		switch {
		case pool != "" && rec.Pool != pool,
			len(states) > 0 && !slices.Contains(states, rec.State),
			!since.IsZero() && rec.CreatedAt.Before(since),
			!until.IsZero() && !rec.CreatedAt.Before(until),
			!sel.matches(rec.Labels):
			return true
		}
		out = append(out, rec.Public())
		return true
	})
	if err != nil {
		a.internal(w, r, "list jobs", err)
		return
	}
	slices.SortFunc(out, func(x, y *jobs.Record) int {
		return cmp.Or(y.CreatedAt.Compare(x.CreatedAt), cmp.Compare(y.ID, x.ID))
	})
	if out == nil {
		out = []*jobs.Record{}
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"jobs": out[:min(limit, len(out))], "total": len(out)})
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	var req cancelRequest
	if !a.decode(w, r, &req, true) {
		return
	}
	if _, ok := a.job(w, r, t); !ok {
		return
	}
	rec, err := a.engine.Cancel(r.Context(), t, r.PathValue("id"), req.Reason)
	switch {
	case errors.Is(err, jobs.ErrTerminal):
		httpjson.WriteError(w, http.StatusConflict, err.Error(), "")
	case errors.Is(err, jobs.ErrNotFound):
		httpjson.WriteError(w, http.StatusNotFound, err.Error(), "id")
	case err != nil && rec != nil:
		// The record is CANCELLED; only telling the runners failed.
		a.log.Error("cancel not sent to runners", "tenant", t.Name, "job_id", rec.ID, "error", err)
		w.Header().Set("Warning", `199 outpost "the cancel was not delivered to the runners: `+strings.ReplaceAll(err.Error(), `"`, `'`)+`"`)
		httpjson.WriteJSON(w, http.StatusOK, rec.Public())
	case err != nil:
		a.internal(w, r, "cancel job", err)
	default:
		httpjson.WriteJSON(w, http.StatusOK, rec.Public())
	}
}

func (a *API) explain(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	if _, ok := a.job(w, r, t); !ok {
		return
	}
	x, err := a.engine.Explain(r.Context(), t, r.PathValue("id"))
	if err != nil {
		a.internal(w, r, "explain job", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, x)
}

// poolBody answers pause, resume and list of pools.
type poolBody struct {
	Tenant    string     `json:"tenant"`
	Pool      string     `json:"pool"`
	Paused    bool       `json:"paused"`
	PausedAt  *time.Time `json:"paused_at,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	// Dispatched counts the held jobs a resume dispatched.
	Dispatched *int `json:"dispatched,omitempty"`
}

func (a *API) setPaused(paused bool) tenantHandler {
	return func(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
		pool := r.PathValue("pool")
		if !queue.ValidToken(pool) {
			httpjson.WriteError(w, http.StatusBadRequest, "must be 1 to 64 characters of [A-Za-z0-9_-]", "pool")
			return
		}
		st, n, err := a.engine.SetPaused(r.Context(), t, pool, paused)
		if err != nil && st.Pool == "" {
			a.internal(w, r, "set pool state", err)
			return
		}
		body := poolBody{Tenant: t.Name, Pool: pool, Paused: st.Paused, PausedAt: st.PausedAt, UpdatedAt: &st.UpdatedAt}
		if !paused {
			body.Dispatched = &n
		}
		if err != nil {
			a.internal(w, r, "dispatch held jobs", err)
			return
		}
		httpjson.WriteJSON(w, http.StatusOK, body)
	}
}

// listPools answers GET /api/v1/pools: every pool paused once, with
// runners seen in the last day, queued jobs or recent dispatches, with its
// backlog, oldest queued job, dispatch lag and live and lost runners.
func (a *API) listPools(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	out, err := a.opts.Fleet.Pools(r.Context(), t, a.now())
	if err != nil {
		a.internal(w, r, "list pools", err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"pools": out, "lag_window_seconds": fleet.LagWindow.Seconds()})
}
