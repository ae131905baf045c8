package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
	"github.com/outposthq/outpost/services/scheduler/internal/explain"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/pools"
	"github.com/outposthq/outpost/services/scheduler/internal/presence"
	"github.com/outposthq/outpost/services/scheduler/internal/results"
	"github.com/outposthq/outpost/services/scheduler/internal/sources"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeEngine creates the record at once, as the submit consumer would;
// with direct, the API calls Create instead of Submit.
type fakeEngine struct {
	submitted []*jobsv1.JobSpec
	err       error
	direct    bool
}

func (f *fakeEngine) DirectSubmit() bool                        { return f.direct }
func (f *fakeEngine) AdmitSubmit(*tenants.Tenant) time.Duration { return 0 }

func (f *fakeEngine) Create(ctx context.Context, t *tenants.Tenant, id string, spec *jobsv1.JobSpec) (*jobs.Record, bool, error) {
	if f.err != nil {
		return nil, false, f.err
	}
	rec := jobs.NewRecord(id, t.Name, spec, t0, false)
	if err := t.Jobs.Create(ctx, rec); errors.Is(err, jobs.ErrExists) {
		rec, err = t.Jobs.Get(ctx, id)
		return rec, false, err
	} else if err != nil {
		return nil, false, err
	}
	f.submitted = append(f.submitted, spec)
	return rec, true, nil
}

func (f *fakeEngine) Submit(ctx context.Context, t *tenants.Tenant, id string, spec *jobsv1.JobSpec) error {
	if f.err != nil {
		return f.err
	}
	f.submitted = append(f.submitted, spec)
	return t.Jobs.Create(ctx, jobs.NewRecord(id, t.Name, spec, t0, false))
}

func (f *fakeEngine) Cancel(context.Context, *tenants.Tenant, string, string) (*jobs.Record, error) {
	return nil, jobs.ErrTerminal
}

func (f *fakeEngine) SetPaused(context.Context, *tenants.Tenant, string, bool) (pools.State, int, error) {
	return pools.State{}, 0, errors.New("not implemented")
}

func (f *fakeEngine) RunSource(ctx context.Context, t *tenants.Tenant, s *sources.Source) (string, error) {
	id := "run-1"
	return id, f.Submit(ctx, t, id, &jobsv1.JobSpec{Pool: s.Pool, Task: s.Task.Proto()})
}

func (f *fakeEngine) Explain(context.Context, *tenants.Tenant, string) (explain.Explanation, error) {
	return explain.Explanation{}, errors.New("not implemented")
}

type fakeTenants map[string]*tenants.Tenant

func (f fakeTenants) Lookup(_ context.Context, name string) (*tenants.Tenant, error) {
	if t := f[name]; t != nil {
		return t, nil
	}
	return nil, tenants.ErrUnknown
}

func (f fakeTenants) Add(context.Context, string, *config.Limits, time.Time) (tenants.Info, bool, error) {
	return tenants.Info{}, false, errors.New("not implemented")
}

func (f fakeTenants) List() []tenants.Info { return nil }

func newTestAPI(t *testing.T, eng *fakeEngine) http.Handler {
	t.Helper()
	h, _ := newTestAPIAndTenant(t, eng)
	return h
}

// newTestAPIAndTenant is newTestAPI with the default tenant, whose stores
// a test may fill directly.
func newTestAPIAndTenant(t *testing.T, eng *fakeEngine) (http.Handler, *tenants.Tenant) {
	t.Helper()
	tn := &tenants.Tenant{
		Name:     "default",
		Jobs:     jobs.NewStore(kv.NewMemory()),
		Pools:    pools.NewStore(kv.NewMemory()),
		Presence: presence.NewTracker(time.Second, t0),
		Results:  results.NewStore(kv.NewMemory(), kv.NewMemory()),
		Sources:  sources.NewStore(kv.NewMemory()),
	}
	a := New(eng, fakeTenants{"default": tn}, nil, Options{
		DefaultTenant:   "default",
		MaxRequestBytes: 512,
		SubmitWait:      time.Second,
		ListLimit:       10,
		MaxListLimit:    100,
		Policy: jobs.Policy{MaxAttempts: 3, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2,
			DefaultTimeout: time.Hour, MaxTimeout: 24 * time.Hour, AttemptsLimit: 10},
		Subjects: queue.NewSubjects(""),
		Now:      func() time.Time { return t0 },
		Logger:   slog.New(slog.DiscardHandler),
	})
	mux := http.NewServeMux()
	a.Register(auth.NewGuard(auth.GuardOptions{Verifier: staticVerifier{}, DefaultTenant: "default"}).Router(mux))
	// The tests of the API's own behaviour call it as a platform admin
	// with a JSON body; the guard has its own tests (guard_test.go).
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			r.Header.Set("Authorization", "Bearer admin")
		}
		if r.Header.Get("Content-Type") == "" {
			r.Header.Set("Content-Type", "application/json")
		}
		mux.ServeHTTP(w, r)
	}), tn
}

// staticVerifier knows one token, "admin", of a platform admin.
type staticVerifier struct{}

func (staticVerifier) Verify(_ context.Context, token string) (*auth.Principal, error) {
	if token != "admin" {
		return nil, auth.ErrUnauthenticated
	}
	return &auth.Principal{Subject: "test", Name: "test", Tenants: map[string]auth.Role{auth.AllTenants: auth.RoleAdmin}}, nil
}

func serve(h http.Handler, method, path, body string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestSubmitValidation(t *testing.T) {
	h := newTestAPI(t, &fakeEngine{})
	cases := []struct {
		name string
		body string
		code int
		want string // the whole JSON error body
	}{
		{"unknown field", `{"task":{"noop":{}},"priority":1}`, 400, `{"error":"unknown field","field":"priority"}`},
		{"unknown nested field", `{"task":{"noop":{"sleep":"1s","jitter":"1s"}}}`, 400, `{"error":"unknown field","field":"task.noop.jitter"}`},
		{"unknown field in retry", `{"task":{"noop":{}},"retry":{"max_attempts":2,"backoff":"1s"}}`, 400, `{"error":"unknown field","field":"retry.backoff"}`},
		{"wrong type", `{"task":{"command":{"command":"x","args":"-v"}}}`, 400, `{"error":"must be an array, not string","field":"task.command.args"}`},
		{"wrong type for labels", `{"task":{"noop":{}},"labels":{"a":1}}`, 400, `{"error":"must be a string, not number","field":"labels"}`},
		{"empty command", `{"task":{"command":{"command":""}}}`, 400, `{"error":"is required","field":"task.command.command"}`},
		{"bad env", `{"task":{"command":{"command":"x","env":{"A-B":"1"}}}}`, 400, `{"error":"is not a valid environment variable name","field":"task.command.env.A-B"}`},
		{"two kinds", `{"task":{"command":{"command":"x"},"noop":{}}}`, 400, `{"error":"exactly one of command, noop, ingest, assertion, kubernetes is allowed","field":"task"}`},
		{"no kind", `{"task":{}}`, 400, `{"error":"exactly one of command, noop, ingest, assertion, kubernetes is required","field":"task"}`},
		{"kubernetes without image", `{"task":{"kubernetes":{"args":["x"]}}}`, 400, `{"error":"is required","field":"task.kubernetes.image"}`},
		{"kubernetes image with a space", `{"task":{"kubernetes":{"image":"busybox latest"}}}`, 400, `{"error":"must not contain spaces or control characters","field":"task.kubernetes.image"}`},
		{"kubernetes unknown field", `{"task":{"kubernetes":{"image":"busybox","serviceAccountName":"admin"}}}`, 400, `{"error":"unknown field","field":"task.kubernetes.serviceAccountName"}`},
		{"kubernetes reserved env", `{"task":{"kubernetes":{"image":"busybox","env":{"OUTPOST_ARG_0":"x"}}}}`, 400, `{"error":"is not a valid environment variable name (OUTPOST_ is reserved)","field":"task.kubernetes.env.OUTPOST_ARG_0"}`},
		{"kubernetes bad quantity", `{"task":{"kubernetes":{"image":"busybox","resources":{"memory_limit":"1 GB"}}}}`, 400, `{"error":"must be a Kubernetes quantity such as \"500m\" or \"256Mi\"","field":"task.kubernetes.resources.memory_limit"}`},
		{"kubernetes bad timeout", `{"task":{"kubernetes":{"image":"busybox","timeout":"soon"}}}`, 400, `{"error":"must be a duration such as \"90s\" or \"1h30m\"","field":"task.kubernetes.timeout"}`},
		{"kubernetes and command", `{"task":{"kubernetes":{"image":"busybox"},"command":{"command":"x"}}}`, 400, `{"error":"exactly one of command, noop, ingest, assertion, kubernetes is allowed","field":"task"}`},
		{"bad sleep", `{"task":{"noop":{"sleep":"1 minute"}}}`, 400, `{"error":"must be a duration such as \"90s\" or \"1h30m\"","field":"task.noop.sleep"}`},
		{"negative timeout", `{"task":{"noop":{}},"timeout":"-1s"}`, 400, `{"error":"must not be negative","field":"timeout"}`},
		{"timeout over max", `{"task":{"noop":{}},"timeout":"25h"}`, 400, `{"error":"must be at most 24h0m0s","field":"timeout"}`},
		{"attempts over limit", `{"task":{"noop":{}},"retry":{"max_attempts":11}}`, 400, `{"error":"must be at most 10","field":"retry.max_attempts"}`},
		{"negative attempts", `{"task":{"noop":{}},"retry":{"max_attempts":-1}}`, 400, `{"error":"must be at least 1 (0 or absent means the default)","field":"retry.max_attempts"}`},
		{"multiplier", `{"task":{"noop":{}},"retry":{"multiplier":0.5}}`, 400, `{"error":"must be between 1 and 100","field":"retry.multiplier"}`},
		{"max backoff below initial", `{"task":{"noop":{}},"retry":{"initial_backoff":"1m","max_backoff":"1s"}}`, 400, `{"error":"must be at least retry.initial_backoff (1m0s)","field":"retry.max_backoff"}`},
		{"bad label key", `{"task":{"noop":{}},"labels":{"-a":"b"}}`, 400, `{"error":"key must be 1 to 63 characters of [A-Za-z0-9._/-], starting and ending alphanumeric","field":"labels.-a"}`},
		{"bad id", `{"id":"a b","task":{"noop":{}}}`, 400, `{"error":"must be 1 to 64 characters of [A-Za-z0-9_-]","field":"id"}`},
		{"empty body", ``, 400, `{"error":"the request body is empty: a JSON object is required"}`},
		{"not an object", `[1]`, 400, `{"error":"must be an object, not array"}`},
		{"trailing data", `{"task":{"noop":{}}} {}`, 400, `{"error":"unexpected data after the JSON object"}`},
		{"truncated", `{"task":{"noop":`, 400, `{"error":"truncated JSON"}`},
		{"too large", `{"task":{"command":{"command":"` + strings.Repeat("x", 600) + `"}}}`, 413, `{"error":"request body too large: the limit is 512 bytes"}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rec := serve(h, "POST", "/api/v1/jobs", c.body, nil)
			require.Equal(t, c.code, rec.Code, rec.Body.String())
			require.JSONEq(t, c.want, rec.Body.String())
			require.Equal(t, "application/json", rec.Header().Get("Content-Type"))
		})
	}
}

func TestSubmitAccepted(t *testing.T) {
	for _, direct := range []bool{false, true} {
		t.Run(map[bool]string{false: "queue", true: "direct"}[direct], func(t *testing.T) {
			testSubmitAccepted(t, &fakeEngine{direct: direct})
		})
	}
}

func testSubmitAccepted(t *testing.T, eng *fakeEngine) {
	h := newTestAPI(t, eng)
	rec := serve(h, "POST", "/api/v1/jobs", `{"id":"j1","pool":"p","task":{"command":{"command":"echo","args":["hi"]}},"retry":{"max_attempts":5},"timeout":"10m","labels":{"team":"a"}}`, nil)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Equal(t, "/api/v1/jobs/j1", rec.Header().Get("Location"))
	require.Contains(t, rec.Body.String(), `"retry":{"max_attempts":5,"initial_backoff":"1s","max_backoff":"1m0s","multiplier":2}`)
	require.Contains(t, rec.Body.String(), `"timeout":"10m0s"`)
	require.Len(t, eng.submitted, 1)
	require.Equal(t, uint32(5), eng.submitted[0].Retry.MaxAttempts)

	rec = serve(h, "POST", "/api/v1/jobs", `{"id":"k1","task":{"kubernetes":{"image":"busybox:1.36","command":["sh","-c"],"args":["echo $TOKEN"],"env":{"TOKEN":"${API_TOKEN}"},"resources":{"cpu_request":"100m","memory_limit":"64Mi"},"timeout":"2m"}}}`, nil)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	require.Len(t, eng.submitted, 2)
	k := eng.submitted[1].GetTask().GetKubernetes()
	require.Equal(t, "busybox:1.36", k.GetImage())
	require.Equal(t, []string{"sh", "-c"}, k.GetCommand())
	require.Equal(t, "${API_TOKEN}", k.GetEnv()["TOKEN"], "references are resolved on the runner, never by the scheduler")
	require.Equal(t, "64Mi", k.GetResources().GetMemoryLimit())
	require.Equal(t, 2*time.Minute, k.GetTimeout().AsDuration())
	rec = serve(h, "GET", "/api/v1/jobs/k1", "", nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), `"kubernetes":{"image":"busybox:1.36"`)

	rec = serve(h, "POST", "/api/v1/jobs", `{"id":"j1","task":{"noop":{}}}`, nil)
	require.Equal(t, http.StatusOK, rec.Code, "a repeated id returns the existing job")
	require.Len(t, eng.submitted, 2)

	rec = serve(h, "POST", "/api/v1/jobs", `{"task":{"noop":{}}}`, map[string]string{TenantHeader: "other"})
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Contains(t, rec.Body.String(), `"field":"X-Outpost-Tenant"`)
}

func TestSubmitBrokerErrors(t *testing.T) {
	for _, c := range []struct {
		name   string
		direct bool
		err    error
		code   int
	}{
		{"queue full", false, queue.ErrLimitExceeded, http.StatusTooManyRequests},
		{"too large", false, queue.ErrPayloadTooLarge, http.StatusRequestEntityTooLarge},
		{"broker down", false, errors.New("nats: timeout"), http.StatusServiceUnavailable},
		// Direct: only the record's store can fail the request (a
		// dispatch that fails is the engine's to retry).
		{"direct store down", true, errors.New("nats: timeout"), http.StatusServiceUnavailable},
		{"direct queue full", true, fmt.Errorf("%w: the tenant's queue is full", queue.ErrLimitExceeded), http.StatusTooManyRequests},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := newTestAPI(t, &fakeEngine{err: c.err, direct: c.direct})
			rec := serve(h, "POST", "/api/v1/jobs", `{"task":{"noop":{}}}`, nil)
			require.Equal(t, c.code, rec.Code, rec.Body.String())
			require.NotContains(t, rec.Body.String(), "nats", "the error does not leak internals")
		})
	}
}

func TestListAndGetErrors(t *testing.T) {
	h := newTestAPI(t, &fakeEngine{})
	for _, c := range []struct{ path, want string }{
		{"/api/v1/jobs?state=done", `"field":"state"`},
		{"/api/v1/jobs?limit=0", `"field":"limit"`},
		{"/api/v1/jobs?limit=101", `"field":"limit"`},
		{"/api/v1/jobs?label=", `"field":"label"`},
		{"/api/v1/jobs?label=team%3Da,%3Dx", `"field":"label"`},
		{"/api/v1/jobs?since=yesterday", `"field":"since"`},
		{"/api/v1/jobs?until=2025-03-01", `"field":"until"`},
		{"/api/v1/jobs?since=2025-03-01T12:00:00Z&until=2025-03-01T12:00:00Z", `"field":"until"`},
	} {
		rec := serve(h, "GET", c.path, "", nil)
		require.Equal(t, http.StatusBadRequest, rec.Code, c.path)
		require.Contains(t, rec.Body.String(), c.want)
	}
	rec := serve(h, "GET", "/api/v1/jobs/missing", "", nil)
	require.Equal(t, http.StatusNotFound, rec.Code)
	rec = serve(h, "GET", "/api/v1/nothing", "", nil)
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Contains(t, rec.Body.String(), "no such endpoint")
	rec = serve(h, "GET", "/api/v1/jobs?state=queued,running&limit=5", "", nil)
	require.Equal(t, http.StatusOK, rec.Code)
	require.JSONEq(t, `{"jobs":[],"total":0}`, rec.Body.String())
}

// Without a dead-letter store (the SQS backend) the dead-letter routes say
// so, whatever the operation.
func TestDeadLettersUnsupported(t *testing.T) {
	h := newTestAPI(t, &fakeEngine{})
	for _, r := range []struct{ method, path string }{
		{"GET", "/api/v1/deadletters"},
		{"GET", "/api/v1/deadletters/1"},
		{"POST", "/api/v1/deadletters/1/replay"},
		{"DELETE", "/api/v1/deadletters/1"},
	} {
		t.Run(r.method+" "+r.path, func(t *testing.T) {
			rec := serve(h, r.method, r.path, "", nil)
			require.Equal(t, http.StatusNotImplemented, rec.Code, rec.Body.String())
			require.Contains(t, rec.Body.String(), "queue.kind nats")
		})
	}
}

func TestListFilters(t *testing.T) {
	h, tn := newTestAPIAndTenant(t, &fakeEngine{})
	ctx := context.Background()
	for i, j := range []struct {
		id     string
		pool   string
		labels map[string]string
	}{
		{"a", "p1", map[string]string{"team": "data", "env": "prod"}},
		{"b", "p1", map[string]string{"team": "data"}},
		{"c", "p2", map[string]string{"team": "web", "env": "prod"}},
		{"d", "p2", nil},
	} {
		spec := &jobsv1.JobSpec{Pool: j.pool, Labels: j.labels, Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}
		require.NoError(t, tn.Jobs.Create(ctx, jobs.NewRecord(j.id, tn.Name, spec, t0.Add(time.Duration(i)*time.Hour), false)))
	}
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"", []string{"d", "c", "b", "a"}},
		{"label=team%3Ddata", []string{"b", "a"}},
		{"label=env", []string{"c", "a"}},
		{"label=team%3Ddata,env%3Dprod", []string{"a"}},
		{"label=team%3Ddata&label=env", []string{"a"}},
		{"label=team%3Dops", nil},
		{"label=env&pool=p2", []string{"c"}},
		{"since=2025-03-01T13:00:00Z", []string{"d", "c", "b"}},
		{"until=2025-03-01T13:00:00Z", []string{"a"}},
		{"since=2025-03-01T13:00:00Z&until=2025-03-01T15:00:00Z", []string{"c", "b"}},
		{"since=2025-03-01T13:00:00%2B01:00", []string{"d", "c", "b", "a"}},
		{"label=team&limit=1", []string{"c"}},
	} {
		t.Run(c.query, func(t *testing.T) {
			rec := serve(h, "GET", "/api/v1/jobs?"+c.query, "", nil)
			require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
			var out struct {
				Jobs []struct {
					ID string `json:"id"`
				} `json:"jobs"`
				Total int `json:"total"`
			}
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out))
			var ids []string
			for _, j := range out.Jobs {
				ids = append(ids, j.ID)
			}
			require.Equal(t, c.want, ids)
			if c.query == "label=team&limit=1" {
				require.Equal(t, 3, out.Total, "total counts every match")
			}
		})
	}
}
