package app_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/signing"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/app"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/config"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/runner"
)

const tenant = "acme"

// discard drops the runners' logs; OUTPOST_TEST_LOG=1 shows them.
var discard = func() *slog.Logger {
	if os.Getenv("OUTPOST_TEST_LOG") != "" {
		return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewJSONHandler(io.Discard, nil))
}()

type env struct {
	url    string
	layout queue.Layout
	conn   queue.Broker // the control plane's side: publishes jobs, reads events
	subj   queue.Subjects
	// One collector per event subject family. They consume with durable
	// consumers rather than Read, which keeps the test independent of
	// history replay.
	status, logs, dlq *collector
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return newEnvLayout(t, queue.LayoutPerTenant)
}

// newEnvLayout is newEnv on a stack of the given layout.
func newEnvLayout(t *testing.T, layout queue.Layout) *env {
	t.Helper()
	srv := natstest.RunServer(t)
	e := &env{url: srv.ClientURL(), layout: layout, subj: queue.NewSubjects("")}
	s := backend.DefaultSettings("control-plane")
	s.Broker.Layout = layout
	e.conn = e.connect(t, s)
	require.NoError(t, e.conn.EnsureTenant(context.Background(), tenant, queue.TenantLimits{}))
	e.status = e.collect(t, "test-status", e.subj.AllJobStatus(tenant))
	e.logs = e.collect(t, "test-logs", "outpost."+tenant+".job-events.*.logs")
	e.dlq = e.collect(t, "test-dlq", e.subj.All(tenant, queue.RoleDeadLetter))
	return e
}

// collector keeps the messages of a subject filter in arrival order.
type collector struct {
	mu   sync.Mutex
	msgs []queue.StreamMessage
}

func (e *env) collect(t *testing.T, name, subject string) *collector {
	t.Helper()
	c := &collector{}
	cons, err := e.conn.Consume(context.Background(), queue.ConsumerConfig{Name: name, Subject: subject, Concurrency: 1, MaxDeliveries: -1},
		func(ctx context.Context, d queue.Delivery) {
			c.mu.Lock()
			c.msgs = append(c.msgs, queue.StreamMessage{Subject: d.Subject(), Data: d.Data(), Header: d.Header()})
			c.mu.Unlock()
			_ = d.Ack(ctx)
		})
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		// Not fatal: natsjs can hang in Stop when a message arrives during
		// it (reported), which is no fault of the runner.
		if err := cons.Stop(ctx); err != nil {
			t.Logf("stop collector %s: %v", name, err)
		}
	})
	return c
}

// on returns the messages received on subject so far.
func (c *collector) on(subject string) []queue.StreamMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []queue.StreamMessage
	for _, m := range c.msgs {
		if subject == "" || m.Subject == subject {
			out = append(out, m)
		}
	}
	return out
}

// connect opens the broker of s (on the env's server) as the services do.
func (e *env) connect(t *testing.T, s backend.Settings) queue.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Broker.URL = e.url
	b, err := backend.Open(ctx, s, backend.Options{Logger: discard})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	return b.Broker
}

func runnerConfig(t *testing.T, id string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Tenant, cfg.RunnerID = tenant, id
	cfg.AckWait = 2 * time.Second
	cfg.Command.Allowlist = []string{"sh"}
	cfg.Command.CancelGrace = time.Second
	cfg.Logs.Interval = 20 * time.Millisecond
	cfg.DrainGrace = 200 * time.Millisecond
	cfg.Signing.TrustedKeys = []string{testKey.Public().String()}
	cfg.Policy.Secrets = []string{"default=DB_*", "default=API_*"}
	return cfg
}

// testKey is the control plane's signing key in these tests; runnerConfig
// trusts it.
var testKey = newSigner("test-1")

func newSigner(kid string) *signing.Signer {
	key, err := signing.GenerateKey()
	if err != nil {
		panic(err)
	}
	s, err := signing.NewSigner(kid, key, time.Hour)
	if err != nil {
		panic(err)
	}
	return s
}

// sign signs job with s as the scheduler does, for the default pool.
func sign(t *testing.T, s *signing.Signer, job *jobsv1.JobDispatched) *jobsv1.JobDispatched {
	t.Helper()
	require.NoError(t, s.Sign(job, signing.Binding{
		Tenant: job.GetEnvelope().GetTenant(), Scope: signing.PoolScope("default"),
		Subject: job.GetJobId(), Attempt: job.GetEnvelope().GetAttempt(),
	}))
	return job
}

type testRunner struct {
	metrics *runner.Metrics
	cancel  context.CancelFunc
	done    chan error
}

// startRunner runs a runner on its own connection, opened from its
// broker settings, as a separate process would.
func (e *env) startRunner(t *testing.T, cfg config.Config) *testRunner {
	t.Helper()
	conn := e.connect(t, cfg.Settings)
	m := runner.NewMetrics(nil)
	r, err := app.New(cfg, conn, queue.NewSubjects(cfg.Broker.Stack), discard, m)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	tr := &testRunner{metrics: m, cancel: cancel, done: make(chan error, 1)}
	go func() { tr.done <- r.Run(ctx) }()
	require.Eventually(t, func() bool { return r.Ready() == nil }, 10*time.Second, 5*time.Millisecond)
	t.Cleanup(func() { tr.stop(t) })
	return tr
}

func (tr *testRunner) stop(t *testing.T) {
	t.Helper()
	tr.cancel()
	select {
	case err := <-tr.done:
		require.NoError(t, err)
		tr.done <- nil
	case <-time.After(30 * time.Second):
		t.Fatal("runner did not stop")
	}
}

func (e *env) dispatch(t *testing.T, jobID string, spec *jobsv1.JobSpec) {
	t.Helper()
	job := sign(t, testKey, &jobsv1.JobDispatched{Envelope: events.NewEnvelope(tenant, 1, jobID, ""), JobId: jobID, Spec: spec, AttemptToken: "token-" + jobID})
	msg, err := events.Encode(e.subj.Jobs(tenant, "default"), job, jobID)
	require.NoError(t, err)
	require.NoError(t, e.conn.Publish(context.Background(), msg))
}

func (e *env) statuses(t *testing.T, jobID string) []*jobsv1.JobStatus {
	t.Helper()
	out, err := e.tryStatuses(jobID)
	require.NoError(t, err)
	return out
}

// tryStatuses is statuses returning its error, for Eventually conditions
// (they run on a goroutine of their own and must not fail the test).
func (e *env) tryStatuses(jobID string) ([]*jobsv1.JobStatus, error) {
	var out []*jobsv1.JobStatus
	for _, m := range e.status.on(e.subj.JobStatus(tenant, jobID)) {
		st, err := events.DecodeAs[*jobsv1.JobStatus](m.Header, m.Data)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}

// states renders statuses as "STATE@attempt/runner" for compact asserts.
func states(sts []*jobsv1.JobStatus) []string {
	out := make([]string, len(sts))
	for i, st := range sts {
		out[i] = fmt.Sprintf("%s@%d/%s", strings.TrimPrefix(st.GetState().String(), "JOB_STATE_"), st.GetEnvelope().GetAttempt(), st.GetRunnerId())
	}
	return out
}

func (e *env) waitStates(t *testing.T, jobID string, want ...string) []*jobsv1.JobStatus {
	t.Helper()
	var sts []*jobsv1.JobStatus
	require.Eventually(t, func() bool {
		got, err := e.tryStatuses(jobID)
		if err != nil {
			return false
		}
		sts = got
		return len(got) >= len(want)
	}, 20*time.Second, 20*time.Millisecond, "statuses of %s", jobID)
	sts = e.statuses(t, jobID)
	require.Equal(t, want, states(sts))
	return sts
}

func (e *env) logLines(t *testing.T, jobID string) []*jobsv1.LogLine {
	t.Helper()
	var out []*jobsv1.LogLine
	next := uint64(1)
	for _, m := range e.logs.on(e.subj.JobLogs(tenant, jobID)) {
		c, err := events.DecodeAs[*jobsv1.LogChunk](m.Header, m.Data)
		require.NoError(t, err)
		if c.GetEnvelope().GetAttempt() != 1 {
			continue
		}
		require.Equal(t, next, c.GetFirstSeq(), "chunks in order without gaps")
		next += uint64(len(c.GetLines()))
		out = append(out, c.GetLines()...)
	}
	return out
}

func command(script string, mod ...func(*jobsv1.JobSpec)) *jobsv1.JobSpec {
	spec := &jobsv1.JobSpec{Pool: "default", Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{
		Command: "sh", Args: []string{"-c", script},
	}}}}
	for _, m := range mod {
		m(spec)
	}
	return spec
}

func TestRunsJobWithStatusAndLogs(t *testing.T) {
	e := newEnv(t)
	secrets := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(secrets, "DB_PASSWORD"), []byte("pa55w0rd\n"), 0o600))
	cfg := runnerConfig(t, "r1")
	cfg.Secrets.Dir = secrets
	e.startRunner(t, cfg)

	e.dispatch(t, "job-ok", command(`echo "connecting with $DB_PASSWORD"; echo warn >&2; echo done`, func(s *jobsv1.JobSpec) {
		s.GetTask().GetCommand().Env = map[string]string{"DB_PASSWORD": "${DB_PASSWORD}"}
	}))
	sts := e.waitStates(t, "job-ok", "RUNNING@1/r1", "SUCCEEDED@1/r1")
	require.Equal(t, "job-ok-1-SUCCEEDED", sts[1].GetEnvelope().GetIdempotencyKey())
	require.Zero(t, sts[1].GetResult().GetExitCode())
	require.Positive(t, sts[1].GetResult().GetDuration().AsDuration())

	var texts []string
	for _, l := range e.logLines(t, "job-ok") {
		texts = append(texts, l.GetStream()+": "+l.GetText())
	}
	all := strings.Join(texts, "\n")
	require.NotContains(t, all, "pa55w0rd")
	require.Contains(t, texts, "stdout: connecting with ****")
	require.Contains(t, texts, "stderr: warn")
	require.Contains(t, texts, "stdout: done")
	require.Contains(t, texts, "runner: attempt ended: SUCCEEDED")
}

// TestSharedLayout: a runner configured with the control plane's shared
// layout consumes its pool's jobs from the shared streams (the stack has
// no per-tenant streams) and reports on them.
func TestSharedLayout(t *testing.T) {
	e := newEnvLayout(t, queue.LayoutShared)
	cfg := runnerConfig(t, "r1")
	cfg.Broker.Layout = queue.LayoutShared
	e.startRunner(t, cfg)
	e.dispatch(t, "job-shared", command("echo shared"))
	e.waitStates(t, "job-shared", "RUNNING@1/r1", "SUCCEEDED@1/r1")
}

func TestFailingCommandIsRetried(t *testing.T) {
	e := newEnv(t)
	tr := e.startRunner(t, runnerConfig(t, "r1"))

	e.dispatch(t, "job-fail", command("echo failing; exit 3", func(s *jobsv1.JobSpec) {
		s.Retry = &jobsv1.RetryPolicy{MaxAttempts: 2, InitialBackoff: durationpb.New(300 * time.Millisecond)}
	}))
	sts := e.waitStates(t, "job-fail", "RUNNING@1/r1", "QUEUED@1/r1", "RUNNING@2/r1", "FAILED@2/r1")
	require.Equal(t, "command exited with code 3", sts[1].GetReason())
	retryAt := sts[1].GetRetryAt().AsTime()
	require.WithinDuration(t, sts[1].GetEnvelope().GetOccurredAt().AsTime().Add(300*time.Millisecond), retryAt, 100*time.Millisecond)
	// The queue held the job back for the backoff (less the ±10% jitter).
	require.GreaterOrEqual(t, sts[2].GetEnvelope().GetOccurredAt().AsTime().Sub(sts[1].GetEnvelope().GetOccurredAt().AsTime()), 250*time.Millisecond)
	require.Equal(t, "command exited with code 3 (attempt 2 of 2)", sts[3].GetReason())
	require.Equal(t, int32(3), sts[3].GetResult().GetExitCode())
	require.Equal(t, 1.0, testutil.ToFloat64(tr.metrics.Redeliveries))
}

func TestMalformedJobIsDeadLettered(t *testing.T) {
	e := newEnv(t)
	tr := e.startRunner(t, runnerConfig(t, "r1"))

	require.NoError(t, e.conn.Publish(context.Background(), queue.Message{
		Subject: e.subj.Jobs(tenant, "default"),
		Data:    []byte("not a protobuf"),
		Header:  map[string]string{queue.HeaderType: events.TypeName(&jobsv1.JobDispatched{})},
	}))
	var dead []queue.StreamMessage
	require.Eventually(t, func() bool {
		dead = e.dlq.on(e.subj.DeadLetter(tenant, queue.RoleJobs))
		return len(dead) == 1
	}, 10*time.Second, 20*time.Millisecond)
	require.Contains(t, dead[0].Header[queue.HeaderDeadLetterReason], "malformed event")
	require.Equal(t, e.subj.Jobs(tenant, "default"), dead[0].Header[queue.HeaderDeadLetterSubject])
	require.Equal(t, "1", dead[0].Header[queue.HeaderDeadLetterAttempts])

	// Never redelivered: beyond the ack wait the runner has seen it once.
	require.Never(t, func() bool {
		return testutil.ToFloat64(tr.metrics.MalformedMessages.WithLabelValues("jobs")) != 1
	}, 3*time.Second, 50*time.Millisecond)
	require.Len(t, e.dlq.on(""), 1)
}

func TestCancelStopsRunningCommand(t *testing.T) {
	e := newEnv(t)
	e.startRunner(t, runnerConfig(t, "r1"))

	e.dispatch(t, "job-cancel", command("echo started; sleep 30"))
	e.waitStates(t, "job-cancel", "RUNNING@1/r1")
	start := time.Now()
	cancel := &jobsv1.CancelJob{Envelope: events.NewEnvelope(tenant, 0, "", ""), JobId: "job-cancel", Reason: "requested by test"}
	msg, err := events.Encode(e.subj.RunnerControl(tenant, "default", "r1"), cancel, "")
	require.NoError(t, err)
	require.NoError(t, e.conn.Publish(context.Background(), msg))

	sts := e.waitStates(t, "job-cancel", "RUNNING@1/r1", "CANCELLED@1/r1")
	require.Less(t, time.Since(start), 10*time.Second)
	require.Equal(t, "cancelled: requested by test", sts[1].GetReason())
}

func TestShutdownHandsRunningJobToAnotherRunner(t *testing.T) {
	e := newEnv(t)
	marker := filepath.Join(t.TempDir(), "first-attempt")
	a := e.startRunner(t, runnerConfig(t, "runner-a"))

	// The first attempt blocks; the second one finds the marker and ends.
	e.dispatch(t, "job-handoff", command(fmt.Sprintf(`if [ -f %[1]s ]; then echo second; exit 0; fi; touch %[1]s; sleep 30`, marker)))
	e.waitStates(t, "job-handoff", "RUNNING@1/runner-a")
	require.Eventually(t, func() bool { _, err := os.Stat(marker); return err == nil }, 10*time.Second, 10*time.Millisecond)

	a.stop(t)
	e.startRunner(t, runnerConfig(t, "runner-b"))
	sts := e.waitStates(t, "job-handoff", "RUNNING@1/runner-a", "QUEUED@1/runner-a", "RUNNING@2/runner-b", "SUCCEEDED@2/runner-b")
	require.Equal(t, "runner shutting down", sts[1].GetReason())
}

func TestHeartbeats(t *testing.T) {
	e := newEnv(t)
	beats := e.collect(t, "test-runners", e.subj.Runners(tenant, "default"))
	cfg := runnerConfig(t, "r1")
	cfg.HeartbeatInterval = 50 * time.Millisecond
	tr := e.startRunner(t, cfg)
	decode := func() []*jobsv1.RunnerHeartbeat {
		var hbs []*jobsv1.RunnerHeartbeat
		for _, m := range beats.on("") {
			hb, err := events.DecodeAs[*jobsv1.RunnerHeartbeat](m.Header, m.Data)
			require.NoError(t, err)
			hbs = append(hbs, hb)
		}
		return hbs
	}
	require.Eventually(t, func() bool { return len(decode()) >= 3 }, 10*time.Second, 20*time.Millisecond)
	hb := decode()[0]
	require.Equal(t, "r1", hb.GetRunnerId())
	require.Equal(t, "default", hb.GetPool())
	require.Equal(t, uint32(4), hb.GetCapacity())
	require.False(t, hb.GetDraining())

	tr.stop(t)
	require.Eventually(t, func() bool {
		hbs := decode()
		return hbs[len(hbs)-1].GetDraining()
	}, 10*time.Second, 20*time.Millisecond, "a stopping runner says it drains")
}
