package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/apispec/apispectest"
	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/signing"
	"github.com/outposthq/outpost/libs/testenv"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/app"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
	"github.com/outposthq/outpost/services/scheduler/internal/openapi"
)

const (
	waitFor = 10 * time.Second
	tick    = 10 * time.Millisecond
)

// env is a scheduler on an in-process JetStream server, served by httptest.
type env struct {
	t        *testing.T
	ctx      context.Context
	conn     backend.JetStream
	subjects queue.Subjects
	reg      *prometheus.Registry
	url      string
	// brokerURL is the JetStream server's.
	brokerURL string
	// token is the bootstrap admin key (every tenant).
	token string
	sched *app.Scheduler
	// http checks every request of do and its answer against the
	// OpenAPI document.
	http *http.Client
}

// testSigner is the key the schedulers of these tests sign jobs with.
var testSigner = func() *signing.Signer {
	key, err := signing.GenerateKey()
	if err != nil {
		panic(err)
	}
	s, err := signing.NewSigner("scheduler-test", key, time.Hour)
	if err != nil {
		panic(err)
	}
	return s
}()

func testLogger() *slog.Logger {
	level := slog.LevelError
	if os.Getenv("SCHEDULER_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// openBroker opens the broker of settings s on the JetStream server at
// url, as the scheduler's Run does (the JetStream connection of
// backend.Open); it is closed when the test ends.
func openBroker(t *testing.T, ctx context.Context, url string, s backend.Settings) backend.JetStream {
	t.Helper()
	s.Broker.URL = url
	b, err := backend.Open(ctx, s, backend.Options{Logger: testLogger()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b.JetStream()
}

func newEnv(t *testing.T, edit ...func(*config.Config)) *env {
	t.Helper()
	return newEnvOn(t, natstest.RunServer(t).ClientURL(), edit...)
}

// newEnvOn starts a scheduler on the JetStream server at url; several
// may share one server, as replicas do.
func newEnvOn(t *testing.T, url string, edit ...func(*config.Config)) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cfg := config.Default()
	cfg.Tenants.Names = []string{"default", "acme"}
	cfg.Tenants.RefreshInterval = 100 * time.Millisecond
	cfg.Runners.PresenceWindow = 3 * time.Second
	cfg.ShutdownGrace = 5 * time.Second
	cfg.Auth.BootstrapKeyFile = filepath.Join(t.TempDir(), "admin.key")
	cfg.Auth.RateLimit = auth.RateLimit{} // the tests poll; TestRateLimit sets one
	for _, f := range edit {
		f(&cfg)
	}
	require.NoError(t, cfg.Validate())
	conn := openBroker(t, ctx, url, cfg.Settings)
	reg := prometheus.NewRegistry()
	s := app.New(cfg, testLogger(), conn, conn, reg, nil, app.WithSigner(testSigner))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return s.Ready() == nil }, waitFor, tick)
	return &env{t: t, ctx: ctx, conn: conn, brokerURL: url, subjects: queue.NewSubjects(cfg.Broker.Stack), reg: reg, url: serveTest(t, s),
		token: readKey(t, cfg.Auth.BootstrapKeyFile), sched: s, http: apispectest.New(t, openapi.Spec).Client()}
}

// readKey reads the API key a scheduler bootstrapped into path.
func readKey(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	return strings.TrimSpace(string(raw))
}

// serveTest serves h until the test ends and returns its URL.
func serveTest(t *testing.T, h http.Handler) string {
	hs := httptest.NewServer(h)
	t.Cleanup(hs.Close)
	return hs.URL
}

// do sends a request with an optional JSON body and tenant; it returns the
// status and the body.
func (e *env) do(method, path, tenant string, body any) (int, []byte) {
	e.t.Helper()
	code, _, out := e.doHeader(method, path, tenant, body)
	return code, out
}

// doHeader is do that returns the response's header too.
func (e *env) doHeader(method, path, tenant string, body any) (int, http.Header, []byte) {
	e.t.Helper()
	var header map[string]string
	if tenant != "" {
		header = map[string]string{"X-Outpost-Tenant": tenant}
	}
	api := testenv.Client{Base: e.url, Token: e.token, HTTP: e.http}
	code, h, out, err := api.SendHeader(e.ctx, method, path, body, header)
	require.NoError(e.t, err)
	return code, h, out
}

// jobView is the part of a job record the tests look at.
type jobView struct {
	ID       string            `json:"id"`
	Tenant   string            `json:"tenant"`
	Pool     string            `json:"pool"`
	State    string            `json:"state"`
	Attempt  int               `json:"attempt"`
	Reason   string            `json:"reason"`
	ExitCode *int32            `json:"exit_code"`
	RunnerID string            `json:"runner_id"`
	Held     bool              `json:"held"`
	Outputs  map[string]string `json:"outputs"`
	RetryAt  *time.Time        `json:"retry_at"`
	History  []struct {
		State   string `json:"state"`
		Attempt int    `json:"attempt"`
	} `json:"history"`
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	return testenv.DecodeJSON[T](t, b)
}

// submit posts a job and requires 201.
func (e *env) submit(tenant string, body any) jobView {
	e.t.Helper()
	code, out := e.do("POST", "/api/v1/jobs", tenant, body)
	require.Equal(e.t, http.StatusCreated, code, string(out))
	return decode[jobView](e.t, out)
}

func (e *env) job(tenant, id string) jobView {
	e.t.Helper()
	code, out := e.do("GET", "/api/v1/jobs/"+id, tenant, nil)
	require.Equal(e.t, http.StatusOK, code, string(out))
	return decode[jobView](e.t, out)
}

// waitState waits until the job is in state.
func (e *env) waitState(tenant, id, state string) jobView {
	e.t.Helper()
	var j jobView
	require.Eventually(e.t, func() bool {
		code, out := e.do("GET", "/api/v1/jobs/"+id, tenant, nil)
		if code != http.StatusOK {
			return false
		}
		j = decode[jobView](e.t, out)
		return j.State == state
	}, waitFor, tick, "job %s never reached %s", id, state)
	return j
}

func noopJob(extra map[string]any) map[string]any {
	j := map[string]any{"task": map[string]any{"noop": map[string]any{"sleep": "10ms"}}}
	for k, v := range extra {
		j[k] = v
	}
	return j
}

// runner is a fake runner consuming a pool's queue.
type runner struct {
	deliveries chan queue.Delivery
	consumer   queue.Consumer
}

func (e *env) runner(tenant, pool string) *runner {
	e.t.Helper()
	r := &runner{deliveries: make(chan queue.Delivery, 100)}
	c, err := e.conn.Consume(e.ctx, queue.ConsumerConfig{
		Name: "runners-" + pool, Subject: e.subjects.Jobs(tenant, pool), AckWait: time.Minute, Concurrency: 10,
	}, func(ctx context.Context, d queue.Delivery) {
		select {
		case r.deliveries <- d:
		case <-ctx.Done():
		}
	})
	require.NoError(e.t, err)
	r.consumer = c
	e.t.Cleanup(func() { _ = c.Stop(context.Background()) })
	return r
}

// next waits for the next work item and decodes it.
func (r *runner) next(t *testing.T) (queue.Delivery, *jobsv1.JobDispatched) {
	t.Helper()
	select {
	case d := <-r.deliveries:
		m, err := events.DecodeAs[*jobsv1.JobDispatched](d.Header(), d.Data())
		require.NoError(t, err)
		return d, m
	case <-time.After(waitFor):
		t.Fatal("no job dispatched")
		return nil, nil
	}
}

func (r *runner) requireEmpty(t *testing.T) {
	t.Helper()
	select {
	case d := <-r.deliveries:
		t.Fatalf("unexpected delivery on %s", d.Subject())
	default:
	}
}

type statusOpt func(*jobsv1.JobStatus)

func withReason(s string) statusOpt { return func(m *jobsv1.JobStatus) { m.Reason = s } }
func withRetryAt(at time.Time) statusOpt {
	return func(m *jobsv1.JobStatus) { m.RetryAt = timestamppb.New(at) }
}
func withExit(code int32) statusOpt {
	return func(m *jobsv1.JobStatus) { m.Result = &jobsv1.JobResult{ExitCode: code} }
}

// status publishes a JobStatus as a runner would.
func (e *env) status(tenant, id string, state jobsv1.JobState, attempt uint32, opts ...statusOpt) {
	e.t.Helper()
	m := &jobsv1.JobStatus{Envelope: events.NewEnvelope(tenant, attempt, "", ""), JobId: id, State: state, RunnerId: "runner-1", AttemptToken: e.attemptToken(tenant, id)}
	for _, o := range opts {
		o(m)
	}
	e.publish(e.subjects.JobStatus(tenant, id), m, "")
}

// attemptToken is the attempt token of the job's record, which a runner echoes
// from the dispatch ("" for a job without a record).
func (e *env) attemptToken(tenant, id string) string {
	e.t.Helper()
	store, err := e.conn.OpenStore(e.ctx, "jobs_"+tenant)
	require.NoError(e.t, err)
	en, err := store.Get(e.ctx, id)
	if errors.Is(err, kv.ErrNotFound) {
		return ""
	}
	require.NoError(e.t, err)
	var rec struct {
		Token string `json:"attempt_token"`
	}
	require.NoError(e.t, json.Unmarshal(en.Value, &rec))
	return rec.Token
}

func (e *env) publish(subject string, m proto.Message, dedupe string) {
	e.t.Helper()
	msg, err := events.Encode(subject, m, dedupe)
	require.NoError(e.t, err)
	require.NoError(e.t, e.conn.Publish(e.ctx, msg))
}

// heartbeat publishes a runner heartbeat.
func (e *env) heartbeat(tenant, pool, id string, running, capacity uint32, draining bool) {
	e.t.Helper()
	e.publish(e.subjects.Runners(tenant, pool), &jobsv1.RunnerHeartbeat{
		Envelope: events.NewEnvelope(tenant, 0, "", ""), RunnerId: id, Pool: pool,
		Running: running, Capacity: capacity, Draining: draining,
	}, "")
}

// read returns the messages stored on an event subject.
func (e *env) read(subject string) []queue.StreamMessage {
	e.t.Helper()
	var out []queue.StreamMessage
	require.NoError(e.t, e.conn.Read(e.ctx, subject, queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		out = append(out, m)
		return true
	}))
	return out
}

// metric returns the sum of the series of a metric with the given labels
// (0 if absent): the one series, or all those matching a subset of labels.
func (e *env) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	families, err := e.reg.Gather()
	require.NoError(e.t, err)
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if have[k] != v {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// followLogs opens GET /api/v1/jobs/{id}/logs?follow=true and returns a
// reader of its body, closed when the test ends.
func (e *env) followLogs(id string) *bufio.Reader {
	e.t.Helper()
	req, err := http.NewRequestWithContext(e.ctx, "GET", e.url+"/api/v1/jobs/"+id+"/logs?follow=true", nil)
	require.NoError(e.t, err)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(e.t, err)
	e.t.Cleanup(func() { _ = resp.Body.Close() })
	return bufio.NewReader(resp.Body)
}
