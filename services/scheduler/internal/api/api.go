// Package api is the scheduler's REST API under /api/v1: jobs (submit, get,
// list, logs, cancel, explain, results), the metadata view, sources
// (schedules), pools (pause, resume), dead letters (list, replay, delete)
// and tenants.
//
// Every route is registered on an auth.Router with the role it needs; the
// request's tenant comes from the caller's credential (see libs/auth).
// Bodies are JSON objects decoded strictly; errors are
// {"error": "...", "field": "..."} with the JSON path of the wrong field.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/outposthq/outpost/libs/apispec"
	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
	"github.com/outposthq/outpost/services/scheduler/internal/deadletters"
	"github.com/outposthq/outpost/services/scheduler/internal/explain"
	"github.com/outposthq/outpost/services/scheduler/internal/fleet"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/openapi"
	"github.com/outposthq/outpost/services/scheduler/internal/pools"
	"github.com/outposthq/outpost/services/scheduler/internal/sources"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// TenantHeader names the tenant of a request made by a principal holding
// several tenants.
const TenantHeader = auth.TenantHeader

// Engine carries out the job operations.
type Engine interface {
	Submit(ctx context.Context, t *tenants.Tenant, id string, spec *jobsv1.JobSpec) error
	// DirectSubmit reports whether submit uses Create instead of Submit.
	DirectSubmit() bool
	// AdmitSubmit admits a submission of t now by its submission rate
	// (0), or says how long until it would.
	AdmitSubmit(t *tenants.Tenant) time.Duration
	Create(ctx context.Context, t *tenants.Tenant, id string, spec *jobsv1.JobSpec) (*jobs.Record, bool, error)
	Cancel(ctx context.Context, t *tenants.Tenant, id, reason string) (*jobs.Record, error)
	SetPaused(ctx context.Context, t *tenants.Tenant, pool string, paused bool) (pools.State, int, error)
	Explain(ctx context.Context, t *tenants.Tenant, id string) (explain.Explanation, error)
	RunSource(ctx context.Context, t *tenants.Tenant, s *sources.Source) (string, error)
}

// Tenants resolves and adds tenants.
type Tenants interface {
	Lookup(ctx context.Context, name string) (*tenants.Tenant, error)
	Add(ctx context.Context, name string, limits *config.Limits, now time.Time) (tenants.Info, bool, error)
	List() []tenants.Info
}

// LogReader reads a job's log events back (queue.Broker.Read).
type LogReader = queue.Reader

// Options configure the API.
type Options struct {
	DefaultTenant   string
	MaxRequestBytes int64
	// SubmitWait bounds how long a submit waits for the record (201)
	// before it answers 503 with the job's id.
	SubmitWait   time.Duration
	ListLimit    int
	MaxListLimit int
	Policy       jobs.Policy
	Subjects     queue.Subjects
	// LogPoll is how often a log follow checks whether the job has ended;
	// 0 means 500ms.
	LogPoll time.Duration
	// DeadLetters serves /api/v1/deadletters; nil answers 501.
	DeadLetters DeadLetters
	// Keys serves /api/v1/keys; nil answers 501.
	Keys *auth.Keys
	// Audit serves /api/v1/audit; nil answers 501.
	Audit *auth.Auditor
	// AuditReader, when set, reads the tenants' audit subjects (both
	// services' events, from every replica) for /api/v1/audit; without
	// it the answer is this replica's recent events.
	AuditReader LogReader
	// Fleet computes GET /api/v1/pools; nil makes one for this API (the
	// service shares one with the pool metrics).
	Fleet  *fleet.Tracker
	Logger *slog.Logger
	Now    func() time.Time
}

// API serves the REST API.
type API struct {
	engine  Engine
	tenants Tenants
	logs    LogReader
	opts    Options
	log     *slog.Logger
	now     func() time.Time

	// stopping is cancelled by Stop: log follows end.
	stopping context.Context
	stop     context.CancelFunc
}

// New returns the API.
func New(engine Engine, ts Tenants, logs LogReader, opts Options) *API {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LogPoll <= 0 {
		opts.LogPoll = 500 * time.Millisecond
	}
	if opts.DeadLetters == nil {
		opts.DeadLetters = deadletters.New(nil, nil, nil, "", nil, opts.Logger)
	}
	if opts.Fleet == nil {
		opts.Fleet = fleet.NewTracker()
	}
	stopping, stop := context.WithCancel(context.Background())
	return &API{engine: engine, tenants: ts, logs: logs, opts: opts, log: opts.Logger, now: opts.Now, stopping: stopping, stop: stop}
}

// Stop ends the log follows in progress (they drain and return), so that a
// graceful shutdown of the server does not wait for jobs to end. Register it
// with http.Server.RegisterOnShutdown.
func (a *API) Stop() { a.stop() }

// Register adds the API's routes to r, each with the role it needs in the
// request's tenant (the README's route table).
func (a *API) Register(r *auth.Router) {
	const v, o, ad = auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin
	r.HandleFunc("POST /api/v1/jobs", o, a.withTenant(a.submit))
	r.HandleFunc("GET /api/v1/jobs", v, a.withTenant(a.list))
	r.HandleFunc("GET /api/v1/jobs/{id}", v, a.withTenant(a.get))
	r.HandleFunc("GET /api/v1/jobs/{id}/logs", v, a.withTenant(a.logsHandler))
	r.HandleFunc("POST /api/v1/jobs/{id}/cancel", o, a.withTenant(a.cancel))
	r.HandleFunc("GET /api/v1/jobs/{id}/explain", v, a.withTenant(a.explain))
	r.HandleFunc("GET /api/v1/jobs/{id}/results", v, a.withTenant(a.results))
	r.HandleFunc("GET /api/v1/metadata/datasets", v, a.withTenant(a.datasets))
	r.HandleFunc("POST /api/v1/sources", o, a.withTenant(a.createSource))
	r.HandleFunc("GET /api/v1/sources", v, a.withTenant(a.listSources))
	r.HandleFunc("GET /api/v1/sources/{id}", v, a.withTenant(a.getSource))
	r.HandleFunc("PATCH /api/v1/sources/{id}", o, a.withTenant(a.patchSource))
	r.HandleFunc("DELETE /api/v1/sources/{id}", o, a.withTenant(a.deleteSource))
	r.HandleFunc("POST /api/v1/sources/{id}/run", o, a.withTenant(a.runSource))
	r.HandleFunc("GET /api/v1/sources/{id}/runs", v, a.withTenant(a.listRuns))
	r.HandleFunc("GET /api/v1/pools", v, a.withTenant(a.listPools))
	r.HandleFunc("GET /api/v1/runners", v, a.withTenant(a.listRunners))
	r.HandleFunc("POST /api/v1/pools/{pool}/pause", o, a.withTenant(a.setPaused(true)))
	r.HandleFunc("POST /api/v1/pools/{pool}/resume", o, a.withTenant(a.setPaused(false)))
	r.HandleFunc("GET /api/v1/deadletters", v, a.withTenant(a.listDeadLetters))
	r.HandleFunc("GET /api/v1/deadletters/{id}", v, a.withTenant(a.getDeadLetter))
	r.HandleFunc("POST /api/v1/deadletters/{id}/replay", o, a.withTenant(a.replayDeadLetter))
	r.HandleFunc("DELETE /api/v1/deadletters/{id}", o, a.withTenant(a.deleteDeadLetter))
	r.HandleFunc("GET /api/v1/tenants", v, a.listTenants)
	r.HandlePathTenant("PUT /api/v1/tenants/{tenant}", "tenant", ad, a.putTenant)
	r.HandleFunc("POST /api/v1/keys", ad, a.createKey)
	r.HandleFunc("GET /api/v1/keys", ad, a.listKeys)
	r.HandleFunc("DELETE /api/v1/keys/{id}", ad, a.revokeKey)
	r.HandleFunc("GET /api/v1/audit", ad, a.audit)
	// The API's OpenAPI document, for any credential: it says what the
	// API is, nothing of a tenant's data.
	r.Handle("GET "+apispec.Path, v, specHandler)
	r.HandleFunc("/api/", v, func(w http.ResponseWriter, r *http.Request) {
		httpjson.WriteError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path, "")
	})
}

// specHandler serves the committed document; a document that is not valid
// OpenAPI fails every test of the API, so it cannot ship.
var specHandler = func() http.Handler {
	h, err := apispec.Handler(openapi.Spec)
	if err != nil {
		panic(fmt.Sprintf("scheduler: OpenAPI document: %v", err))
	}
	return h
}()

type tenantHandler func(w http.ResponseWriter, r *http.Request, t *tenants.Tenant)

// Tenant resolves the request's tenant as every route of the API does, or
// writes the error response and returns false: the tenant resolution of
// the routes other packages serve (the directory's).
func (a *API) Tenant(w http.ResponseWriter, r *http.Request) (*tenants.Tenant, bool) {
	var out *tenants.Tenant
	a.withTenant(func(_ http.ResponseWriter, _ *http.Request, t *tenants.Tenant) { out = t })(w, r)
	return out, out != nil
}

// withTenant looks up the request's tenant, which the guard resolved from
// the credential.
func (a *API) withTenant(h tenantHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := auth.TenantFrom(r.Context())
		t, err := a.tenants.Lookup(r.Context(), name)
		switch {
		case err == nil:
			h(w, r, t)
		case errors.Is(err, tenants.ErrInvalidName):
			httpjson.WriteError(w, http.StatusBadRequest, err.Error(), TenantHeader)
		case errors.Is(err, tenants.ErrUnknown):
			httpjson.WriteError(w, http.StatusNotFound, "unknown tenant \""+name+"\": it is neither configured nor added with PUT /api/v1/tenants/"+name, TenantHeader)
		case errors.Is(err, tenants.ErrNotReady):
			httpjson.WriteUnavailable(w, retryAfter, "the scheduler is starting: tenants are not provisioned yet")
		default:
			a.internal(w, r, "look up tenant", err)
		}
	}
}

// listTenants lists the tenants the caller holds (all of them for a
// platform principal): the others are not the caller's business.
func (a *API) listTenants(w http.ResponseWriter, r *http.Request) {
	p := auth.PrincipalFrom(r.Context())
	out := []tenants.Info{}
	for _, t := range a.tenants.List() {
		if auth.RoleOf(p, t.Name) > auth.RoleNone {
			out = append(out, t)
		}
	}
	httpjson.WriteJSON(w, http.StatusOK, map[string]any{"tenants": out})
}

func (a *API) putTenant(w http.ResponseWriter, r *http.Request) {
	var req tenantRequest
	if !a.decode(w, r, &req, true) {
		return
	}
	if l := req.Limits; l != nil && (l.MaxBytes < 0 || l.MaxMessages < 0 || l.MaxRunningJobs < 0 || l.MaxSubmitsPerSecond < 0) {
		field := "limits.max_bytes"
		switch {
		case l.MaxMessages < 0:
			field = "limits.max_messages"
		case l.MaxRunningJobs < 0:
			field = "limits.max_running_jobs"
		case l.MaxSubmitsPerSecond < 0:
			field = "limits.max_submits_per_second"
		}
		httpjson.WriteError(w, http.StatusBadRequest, "must not be negative", field)
		return
	}
	info, created, err := a.tenants.Add(r.Context(), r.PathValue("tenant"), req.Limits, a.now())
	switch {
	case errors.Is(err, tenants.ErrInvalidName):
		httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "tenant")
	case errors.Is(err, tenants.ErrNotReady):
		httpjson.WriteUnavailable(w, retryAfter, err.Error())
	case err != nil:
		a.internal(w, r, "add tenant", err)
	case created:
		httpjson.WriteJSON(w, http.StatusCreated, info)
	default:
		httpjson.WriteJSON(w, http.StatusOK, info)
	}
}

// decode decodes the body, a JSON object, into dst or writes the error
// (httpjson.DecodeBody); it reports success. An empty body is allowed when
// optional is set and leaves dst as it is.
func (a *API) decode(w http.ResponseWriter, r *http.Request, dst any, optional bool) bool {
	return httpjson.DecodeBody(w, r, dst, a.opts.MaxRequestBytes, optional)
}

// writeFieldError writes a 400 for a *jobs.FieldError or an
// *httpjson.FieldError (or any error).
func writeFieldError(w http.ResponseWriter, err error) {
	if fe, ok := errors.AsType[*jobs.FieldError](err); ok {
		httpjson.WriteError(w, http.StatusBadRequest, fe.Message, fe.Field)
		return
	}
	if fe, ok := errors.AsType[*httpjson.FieldError](err); ok {
		httpjson.WriteError(w, http.StatusBadRequest, fe.Message, fe.Field)
		return
	}
	httpjson.WriteError(w, http.StatusBadRequest, err.Error(), "")
}

func (a *API) internal(w http.ResponseWriter, r *http.Request, op string, err error) {
	if r.Context().Err() != nil {
		return // the client is gone
	}
	if queue.IsUnavailable(err) {
		// The broker or its record store did not answer: it is
		// restarting or electing a leader. The client may retry.
		a.log.Warn("request failed, broker unavailable", "method", r.Method, "path", r.URL.Path, "op", op, "error", err)
		httpjson.WriteUnavailable(w, retryAfter, op+": the broker is unavailable for the moment; retry later")
		return
	}
	// The error stays in the log: the client gets the request id to
	// quote, never internals.
	rid := auth.RequestIDFrom(r.Context())
	a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "op", op, "request_id", rid, "error", err)
	httpjson.WriteInternal(w, rid)
}

// retryAfter is what a 503 asks the client to wait before trying again.
const retryAfter = 2 * time.Second
