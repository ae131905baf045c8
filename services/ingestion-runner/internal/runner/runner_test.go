package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/logstream"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

const (
	running   = jobsv1.JobState_JOB_STATE_RUNNING
	queued    = jobsv1.JobState_JOB_STATE_QUEUED
	succeeded = jobsv1.JobState_JOB_STATE_SUCCEEDED
	failed    = jobsv1.JobState_JOB_STATE_FAILED
	cancelled = jobsv1.JobState_JOB_STATE_CANCELLED
	timedOut  = jobsv1.JobState_JOB_STATE_TIMED_OUT
)

func TestRetryDelay(t *testing.T) {
	custom := &jobsv1.RetryPolicy{InitialBackoff: durationpb.New(100 * time.Millisecond), MaxBackoff: durationpb.New(time.Second), Multiplier: 3}
	tests := []struct {
		name    string
		policy  *jobsv1.RetryPolicy
		attempt int
		want    time.Duration
	}{
		{name: "defaults attempt 1", attempt: 1, want: time.Second},
		{name: "defaults attempt 2", attempt: 2, want: 2 * time.Second},
		{name: "defaults attempt 3", attempt: 3, want: 4 * time.Second},
		{name: "defaults capped at a minute", attempt: 7, want: time.Minute},
		{name: "defaults far out", attempt: 1000, want: time.Minute},
		{name: "custom attempt 1", policy: custom, attempt: 1, want: 100 * time.Millisecond},
		{name: "custom attempt 2", policy: custom, attempt: 2, want: 300 * time.Millisecond},
		{name: "custom attempt 3", policy: custom, attempt: 3, want: 900 * time.Millisecond},
		{name: "custom capped", policy: custom, attempt: 4, want: time.Second},
		{name: "multiplier below 1 means the default", policy: &jobsv1.RetryPolicy{Multiplier: 0.5}, attempt: 2, want: 2 * time.Second},
		{name: "max below initial is raised", policy: &jobsv1.RetryPolicy{InitialBackoff: durationpb.New(5 * time.Second), MaxBackoff: durationpb.New(time.Second)}, attempt: 3, want: 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, RetryDelay(tt.policy, tt.attempt, 0))
			for range 20 {
				d := RetryDelay(tt.policy, tt.attempt, 0.1)
				require.InDelta(t, float64(tt.want), float64(d), float64(tt.want)/10+1)
			}
		})
	}
	require.Equal(t, 3, MaxAttempts(nil))
	require.Equal(t, 5, MaxAttempts(&jobsv1.RetryPolicy{MaxAttempts: 5}))
}

func TestCancelSetIsBounded(t *testing.T) {
	s := newCancelSet(3)
	for _, id := range []string{"a", "b", "c", "a", "d"} {
		s.add(id, "r-"+id)
	}
	_, ok := s.get("a")
	require.False(t, ok, "oldest forgotten")
	for _, id := range []string{"b", "c", "d"} {
		reason, ok := s.get(id)
		require.True(t, ok, id)
		require.Equal(t, "r-"+id, reason)
	}
	require.Len(t, s.ids, 3)
}

type harness struct {
	b       *fakeBroker
	r       *Runner
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	runErr  chan error
	metrics *Metrics
}

func startRunner(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	return startRunnerWith(t, mod, nil)
}

func startRunnerWith(t *testing.T, mod func(*Config), register func(*tasks.Registry)) *harness {
	t.Helper()
	return startRunnerOn(t, newFakeBroker(), mod, register)
}

func startRunnerOn(t *testing.T, b *fakeBroker, mod func(*Config), register func(*tasks.Registry)) *harness {
	t.Helper()
	cfg := Config{
		Tenant: "acme", Pool: "default", RunnerID: "r1", Version: "test",
		Concurrency: 4, AckWait: time.Minute, MaxDeliveries: 10,
		HeartbeatInterval: time.Hour, DrainGrace: 5 * time.Second, StopGrace: 5 * time.Second,
		Logs:         logstream.Limits{MaxLines: 100, MaxBytes: 64 << 10, Interval: 10 * time.Millisecond},
		MaxLineBytes: 1024,
	}
	if mod != nil {
		mod(&cfg)
	}
	reg := tasks.NewRegistry()
	reg.Register("noop", tasks.Noop{})
	if register != nil {
		register(reg)
	}
	preg := prometheus.NewRegistry()
	m := NewMetrics(preg)
	r := New(cfg, b, queue.NewSubjects(""), reg, slog.New(slog.NewJSONHandler(io.Discard, nil)), m)
	require.ErrorIs(t, r.Ready(), ErrNotReady)
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{b: b, r: r, reg: preg, cancel: cancel, runErr: make(chan error, 1), metrics: m}
	go func() { h.runErr <- r.Run(ctx) }()
	require.Eventually(t, func() bool { return r.Ready() == nil }, 5*time.Second, time.Millisecond)
	<-b.reading
	t.Cleanup(func() { require.NoError(t, h.stop(t), "Run ends cleanly when its context is cancelled") })
	return h
}

func (h *harness) stop(t *testing.T) error {
	t.Helper()
	h.cancel()
	select {
	case err := <-h.runErr:
		h.runErr <- err // for a second stop
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("runner did not stop")
		return nil
	}
}

func noopJob(id string, sleep time.Duration, fail string, mod ...func(*jobsv1.JobSpec)) *jobsv1.JobDispatched {
	spec := &jobsv1.JobSpec{Pool: "default", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{Sleep: durationpb.New(sleep), FailMessage: fail}}}}
	for _, m := range mod {
		m(spec)
	}
	return &jobsv1.JobDispatched{Envelope: events.NewEnvelope("acme", 0, id, "trace-1"), JobId: id, Spec: spec}
}

func TestConsumerConfig(t *testing.T) {
	tests := []struct {
		name    string
		ackWait time.Duration
		fenced  bool
	}{
		{name: "fenced", ackWait: time.Minute, fenced: true},
		{name: "ack wait too short to fence", ackWait: queue.MinFencedAckWait - time.Second, fenced: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startRunner(t, func(c *Config) { c.AckWait = tt.ackWait })
			require.Equal(t, queue.ConsumerConfig{
				Name: "runners-default", Subject: "outpost.acme.jobs.default",
				AckWait: tt.ackWait, MaxDeliveries: 10, Concurrency: 4, Fenced: tt.fenced,
			}, h.b.cfg)
		})
	}
}

func TestJobOutcomes(t *testing.T) {
	withRetry := func(max uint32) func(*jobsv1.JobSpec) {
		return func(s *jobsv1.JobSpec) {
			s.Retry = &jobsv1.RetryPolicy{MaxAttempts: max, InitialBackoff: durationpb.New(2 * time.Second)}
		}
	}
	tests := []outcomeCase{
		{
			name: "success", job: noopJob("ok", 0, ""), attempt: 1,
			wantOp: "ack", wantStates: []jobsv1.JobState{running, succeeded}, wantLog: "attempt ended: SUCCEEDED", wantLabel: outcomeSucceeded,
		},
		{
			name: "failure with attempts left is nak'd with backoff", job: noopJob("retry", 0, "boom", withRetry(3)), attempt: 2,
			wantOp: "nak", wantDelay: 4 * time.Second, wantStates: []jobsv1.JobState{running, queued}, wantReason: "boom",
			wantLog: "attempt ended: QUEUED: boom; retrying in 4s", wantLabel: outcomeRetrying,
		},
		{
			name: "failure on the last attempt", job: noopJob("last", 0, "boom", withRetry(3)), attempt: 3,
			wantOp: "ack", wantStates: []jobsv1.JobState{running, failed}, wantReason: "boom (attempt 3 of 3)", wantLabel: outcomeFailed,
		},
		{
			name: "permanent failure is not retried", attempt: 1,
			job:    &jobsv1.JobDispatched{JobId: "perm", Spec: &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{Command: "sh"}}}}},
			wantOp: "ack", wantStates: []jobsv1.JobState{running, failed},
			wantReason: `invalid task: task kind "command" is not supported by this runner`, wantLabel: outcomeFailed,
		},
		{
			name: "timeout", attempt: 1,
			job:    noopJob("slow", time.Hour, "", func(s *jobsv1.JobSpec) { s.Timeout = durationpb.New(50 * time.Millisecond) }),
			wantOp: "ack", wantStates: []jobsv1.JobState{running, timedOut}, wantReason: "timed out after 50ms", wantLabel: outcomeTimedOut,
			longerThanLogInterval: true,
		},
	}
	for _, tt := range tests {
		// A dispatch that allows inline logs has the attempt's lines ride
		// with its outcome; one that does not (an older scheduler) has
		// them on the log subject.
		for _, inlineMax := range []uint32{0, 4096} {
			t.Run(fmt.Sprintf("%s/inline_logs_max=%d", tt.name, inlineMax), func(t *testing.T) {
				job := proto.CloneOf(tt.job)
				job.InlineLogsMax = inlineMax
				tt.job = job
				tt.run(t)
			})
		}
	}
}

// outcomeCase is a job delivered once and how its attempt must end.
type outcomeCase struct {
	name       string
	job        *jobsv1.JobDispatched
	attempt    int
	wantOp     string
	wantDelay  time.Duration
	wantStates []jobsv1.JobState
	wantReason string
	wantLog    string
	wantLabel  string
	// longerThanLogInterval: the attempt's first line went out on the log
	// subject before it ended, so its last ones follow it there.
	longerThanLogInterval bool
}

func (tt outcomeCase) run(t *testing.T) {
	t.Helper()
	h := startRunner(t, nil)
	d := h.b.deliverJob(t, tt.job, tt.attempt)
	op, delay, _ := d.wait(t)
	require.Equal(t, tt.wantOp, op)
	require.Equal(t, tt.wantDelay, delay)
	require.Equal(t, tt.wantStates, h.b.states(t, tt.job.GetJobId()))
	sts := h.b.statuses(t, tt.job.GetJobId())
	final := sts[len(sts)-1]
	require.Equal(t, tt.wantReason, final.GetReason())
	for _, st := range sts {
		require.Equal(t, uint32(tt.attempt), st.GetEnvelope().GetAttempt())
		require.Equal(t, "r1", st.GetRunnerId())
		require.Equal(t, "acme", st.GetEnvelope().GetTenant())
	}
	require.Equal(t, tt.job.GetEnvelope().GetTraceId(), final.GetEnvelope().GetTraceId())
	if tt.wantOp == "nak" {
		require.WithinDuration(t, time.Now().Add(tt.wantDelay), final.GetRetryAt().AsTime(), 2*time.Second)
	}
	require.NotNil(t, final.GetResult().GetDuration())
	subject, inline := h.b.logLinesBy(t, tt.job.GetJobId())
	if tt.job.GetInlineLogsMax() > 0 && !tt.longerThanLogInterval {
		require.Empty(t, subject, "a short attempt's lines ride with its outcome")
		for _, st := range sts[:len(sts)-1] {
			require.Nil(t, st.GetLogs(), "only the outcome carries lines")
		}
		require.Equal(t, uint64(1), final.GetLogs().GetFirstSeq())
		require.Equal(t, tt.job.GetAttemptToken(), final.GetLogs().GetAttemptToken())
	} else {
		require.Empty(t, inline)
	}
	lines := append(subject, inline...)
	require.NotEmpty(t, lines)
	if tt.wantLog != "" {
		require.Contains(t, lines, tt.wantLog)
	}
	require.Equal(t, float64(len(lines)), testutil.ToFloat64(h.metrics.LogLinesSent))
	require.Equal(t, 1.0, testutil.ToFloat64(h.metrics.JobsFinished.WithLabelValues(tt.wantLabel)))
	redelivered := 0.0
	if tt.attempt > 1 {
		redelivered = 1
	}
	require.Equal(t, redelivered, testutil.ToFloat64(h.metrics.Redeliveries))
}

func TestPoisonAndExhausted(t *testing.T) {
	h := startRunner(t, nil)

	d := h.b.deliver(t, map[string]string{queue.HeaderType: "outpost.jobs.v1.JobDispatched"}, []byte{0xff, 0xff}, 1)
	op, _, reason := d.wait(t)
	require.Equal(t, "term", op)
	require.Contains(t, reason, "malformed event")

	d = h.b.deliverJob(t, &jobsv1.JobDispatched{JobId: "bad.id"}, 1)
	op, _, reason = d.wait(t)
	require.Equal(t, "term", op)
	require.Contains(t, reason, `job id "bad.id"`)

	d = h.b.deliverJob(t, &jobsv1.JobDispatched{Envelope: events.NewEnvelope("other", 0, "", ""), JobId: "x"}, 1)
	op, _, reason = d.wait(t)
	require.Equal(t, "term", op)
	require.Contains(t, reason, `job of tenant "other"`)
	require.Equal(t, 3.0, testutil.ToFloat64(h.metrics.MalformedMessages.WithLabelValues("jobs")))

	d = h.b.deliverJob(t, noopJob("lost", 0, ""), 4)
	op, _, reason = d.wait(t)
	require.Equal(t, "term", op)
	require.Equal(t, "max attempts (3) exhausted by the delivery count: delivery 4 of a dispatch made with 0 attempts started", reason)
	require.Empty(t, h.b.statuses(t, "lost"), "an exhausted job is not run")
	require.Equal(t, 1.0, testutil.ToFloat64(h.metrics.JobsFinished.WithLabelValues(outcomeExhausted)))
}

// Cancels arrive on the runner's own control subject: read from now on
// (JetStream), or consumed from its own queue when the backend keeps no
// history (SQS).
func TestCancel(t *testing.T) {
	for _, noHistory := range []bool{false, true} {
		name := map[bool]string{false: "read", true: "consumed"}[noHistory]
		t.Run(name, func(t *testing.T) {
			b := newFakeBroker()
			b.noHistory = noHistory
			h := startRunnerOn(t, b, nil, nil)
			b.mu.Lock()
			require.Equal(t, "outpost.acme.control.default.r1", b.readSubject)
			require.Equal(t, queue.ReadOptions{OnlyNew: true, Follow: true}, b.readOpts)
			if noHistory {
				require.Equal(t, queue.ConsumerConfig{Name: "runner-r1", Subject: "outpost.acme.control.default.r1",
					AckWait: controlAckWait, MaxDeliveries: controlMaxDeliveries, Concurrency: 1}, b.controlCfg)
			}
			b.mu.Unlock()

			// A running job is stopped.
			d := h.b.deliverJob(t, noopJob("long", time.Hour, ""), 1)
			require.Eventually(t, func() bool { return len(h.b.statuses(t, "long")) == 1 }, 5*time.Second, time.Millisecond)
			c := h.b.sendControl(t, &jobsv1.CancelJob{Envelope: events.NewEnvelope("acme", 0, "", ""), JobId: "long", Reason: "by alice"})
			op, _, _ := d.wait(t)
			require.Equal(t, "ack", op)
			require.Equal(t, []jobsv1.JobState{running, cancelled}, h.b.states(t, "long"))
			require.Equal(t, "cancelled: by alice", h.b.statuses(t, "long")[1].GetReason())
			if c != nil {
				op, _, _ = c.wait(t)
				require.Equal(t, "ack", op)
			}

			// A job cancelled before it arrives is not run.
			h.b.sendControl(t, &jobsv1.CancelJob{JobId: "later"})
			bad := h.b.sendControl(t, &jobsv1.RunnerHeartbeat{}) // wrong type: ignored (or dead-lettered), counted
			require.Eventually(t, func() bool {
				return testutil.ToFloat64(h.metrics.MalformedMessages.WithLabelValues("control")) == 1
			}, 5*time.Second, time.Millisecond)
			if bad != nil {
				op, _, reason := bad.wait(t)
				require.Equal(t, "term", op)
				require.Contains(t, reason, "malformed")
			}
			d = h.b.deliverJob(t, noopJob("later", 0, ""), 2)
			op, _, _ = d.wait(t)
			require.Equal(t, "ack", op)
			require.Equal(t, []jobsv1.JobState{cancelled}, h.b.states(t, "later"))
			require.Equal(t, "cancelled before it started", h.b.statuses(t, "later")[0].GetReason())
		})
	}
}

func TestInProgressWhileRunning(t *testing.T) {
	h := startRunner(t, func(c *Config) { c.AckWait = 60 * time.Millisecond })
	d := h.b.deliverJob(t, noopJob("ticks", time.Hour, ""), 1)
	require.Eventually(t, func() bool { return d.progressCount() >= 3 }, 5*time.Second, time.Millisecond)
	h.b.sendControl(t, &jobsv1.CancelJob{JobId: "ticks"})
	d.wait(t)
	n := d.progressCount()
	require.Never(t, func() bool { return d.progressCount() != n }, 100*time.Millisecond, 10*time.Millisecond,
		"no in-progress ack after settling")
}

func TestDrain(t *testing.T) {
	h := startRunner(t, func(c *Config) { c.DrainGrace = 300 * time.Millisecond })
	short := h.b.deliverJob(t, noopJob("short", 100*time.Millisecond, ""), 1)
	long := h.b.deliverJob(t, noopJob("long", time.Hour, ""), 1)
	require.Eventually(t, func() bool {
		return len(h.b.statuses(t, "short")) == 1 && len(h.b.statuses(t, "long")) == 1
	}, 5*time.Second, time.Millisecond)

	start := time.Now()
	h.cancel()
	require.Eventually(t, func() bool { return h.r.Ready() != nil }, 5*time.Second, time.Millisecond)
	// Work arriving while draining goes straight back.
	late := h.b.deliverJob(t, noopJob("late", 0, ""), 1)
	op, delay, _ := late.wait(t)
	require.Equal(t, "nak", op)
	require.Zero(t, delay)
	require.Empty(t, h.b.statuses(t, "late"))

	require.NoError(t, h.stop(t))
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	op, _, _ = short.wait(t)
	require.Equal(t, "ack", op, "a job that ends within the grace completes")
	require.Equal(t, []jobsv1.JobState{running, succeeded}, h.b.states(t, "short"))

	op, delay, _ = long.wait(t)
	require.Equal(t, "nak", op)
	require.Zero(t, delay, "handed back for another runner at once")
	require.Equal(t, []jobsv1.JobState{running, queued}, h.b.states(t, "long"))
	require.Equal(t, "runner shutting down", h.b.statuses(t, "long")[1].GetReason())
	require.Equal(t, 1.0, testutil.ToFloat64(h.metrics.JobsFinished.WithLabelValues(outcomeRequeued)))

	hbs := h.b.heartbeats(t)
	require.GreaterOrEqual(t, len(hbs), 2)
	require.False(t, hbs[0].GetDraining())
	require.Equal(t, uint32(4), hbs[0].GetCapacity())
	require.Equal(t, "r1", hbs[0].GetRunnerId())
	last := hbs[len(hbs)-1]
	require.True(t, last.GetDraining())
	require.Zero(t, last.GetRunning())
}

func TestSecretsMaskedInLogsReasonAndOutputs(t *testing.T) {
	leaky := tasks.Func(func(_ context.Context, _ tasks.Input, out tasks.Output) tasks.Result {
		out.Mask("s3cr3t")
		out.Log("using s3cr3t")
		w := out.Stream("stdout")
		_, _ = io.WriteString(w, "token=s3cr3t\n")
		_ = w.Close()
		return tasks.Result{Err: tasks.Permanent(errors.New("login with s3cr3t refused")), Outputs: map[string]string{"token": "s3cr3t"}}
	})
	// On the log subject and riding with the outcome alike.
	for _, inlineMax := range []uint32{0, 4096} {
		t.Run(fmt.Sprintf("inline_logs_max=%d", inlineMax), func(t *testing.T) {
			h := startRunnerWith(t, nil, func(r *tasks.Registry) { r.Register("command", leaky) })
			job := &jobsv1.JobDispatched{JobId: "leak", InlineLogsMax: inlineMax, Spec: &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{}}}}}
			op, _, _ := h.b.deliverJob(t, job, 1).wait(t)
			require.Equal(t, "ack", op)
			sts := h.b.statuses(t, "leak")
			require.Equal(t, []jobsv1.JobState{running, failed}, h.b.states(t, "leak"))
			require.Equal(t, "login with **** refused", sts[1].GetReason())
			require.Equal(t, map[string]string{"token": "****"}, sts[1].GetResult().GetOutputs())
			lines := h.b.logLines(t, "leak")
			require.Contains(t, lines, "using ****")
			require.Contains(t, lines, "token=****")
			for _, l := range lines {
				require.NotContains(t, l, "s3cr3t")
			}
		})
	}
}

func TestTaskGetsTheDispatchedUserAndProject(t *testing.T) {
	got := make(chan tasks.Input, 1)
	record := tasks.Func(func(_ context.Context, in tasks.Input, _ tasks.Output) tasks.Result {
		got <- in
		return tasks.Result{}
	})
	h := startRunnerWith(t, nil, func(r *tasks.Registry) { r.Register("kubernetes", record) })
	job := &jobsv1.JobDispatched{JobId: "k1", User: "alice", Spec: &jobsv1.JobSpec{Project: "analytics", Task: &jobsv1.Task{Kind: &jobsv1.Task_Kubernetes{Kubernetes: &jobsv1.KubernetesTask{Image: "busybox"}}}}}
	op, _, _ := h.b.deliverJob(t, job, 1).wait(t)
	require.Equal(t, "ack", op)
	in := <-got
	require.Equal(t, "alice", in.User)
	require.Equal(t, "analytics", in.Spec.GetProject())
}
