package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/testenv"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/metrics"
	"github.com/outposthq/outpost/services/scheduler/internal/pools"
	"github.com/outposthq/outpost/services/scheduler/internal/presence"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeBroker records what is published.
type fakeBroker struct {
	mu  sync.Mutex
	msg []queue.Message
}

func (b *fakeBroker) Publish(_ context.Context, m queue.Message) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.msg = append(b.msg, m)
	return nil
}

func (b *fakeBroker) Consume(context.Context, queue.ConsumerConfig, queue.Handler) (queue.Consumer, error) {
	panic("not used")
}

func (b *fakeBroker) Read(context.Context, string, queue.ReadOptions, func(queue.StreamMessage) bool) error {
	panic("not used")
}

func (b *fakeBroker) published() []queue.Message {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]queue.Message(nil), b.msg...)
}

// countingStore counts record writes.
type countingStore struct {
	*kv.Memory
	mu      sync.Mutex
	updates int
}

func (s *countingStore) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	s.mu.Lock()
	s.updates++
	s.mu.Unlock()
	return s.Memory.Update(ctx, key, v, rev)
}

// fakeDelivery is the shared in-memory delivery, with its settlement
// spelled as the tests compare it.
type fakeDelivery struct{ *testenv.Delivery }

// settled is "ack", "nak", "term: <reason>", or "" while unsettled.
func (d fakeDelivery) settled() string {
	s := d.Settlement()
	if s.Op == testenv.OpTerm {
		return "term: " + s.Reason
	}
	return s.Op
}

type fixture struct {
	e      *Engine
	b      *fakeBroker
	t      *tenants.Tenant
	store  *countingStore
	m      *metrics.Metrics
	subjs  queue.Subjects
	policy jobs.Policy
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{b: &fakeBroker{}, store: &countingStore{Memory: kv.NewMemory()}, subjs: queue.NewSubjects("")}
	f.m = metrics.New(prometheus.NewRegistry())
	f.policy = jobs.Policy{MaxAttempts: 3, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2,
		DefaultTimeout: time.Hour, MaxTimeout: 24 * time.Hour, AttemptsLimit: 10}
	f.e = New(f.b, Options{Subjects: f.subjs, Policy: f.policy, Metrics: f.m,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return t0 }})
	f.t = &tenants.Tenant{Name: "acme", Jobs: jobs.NewStore(f.store), Pools: pools.NewStore(kv.NewMemory()),
		Presence: presence.NewTracker(time.Second, t0), Directory: directory.NewStore(kv.NewMemory(), "acme")}
	return f
}

func (f *fixture) delivery(t *testing.T, subject string, m proto.Message, attempt int) *fakeDelivery {
	t.Helper()
	msg, err := events.Encode(subject, m, "")
	require.NoError(t, err)
	return &fakeDelivery{testenv.NewDelivery(msg, attempt)}
}

func (f *fixture) statusDelivery(t *testing.T, id string, s jobsv1.JobState, attempt uint32) *fakeDelivery {
	return f.delivery(t, f.subjs.JobStatus("acme", id), &jobsv1.JobStatus{
		Envelope: events.NewEnvelope("acme", attempt, "", ""), JobId: id, State: s, RunnerId: "r1", AttemptToken: f.token(t, id),
	}, 1)
}

// token is the attempt token of job id's record ("" when there is none),
// which a runner echoes from the dispatch.
func (f *fixture) token(t *testing.T, id string) string {
	t.Helper()
	rec, err := f.t.Jobs.Get(context.Background(), id)
	if errors.Is(err, jobs.ErrNotFound) {
		return ""
	}
	require.NoError(t, err)
	return rec.AttemptToken
}

func (f *fixture) create(t *testing.T, id string) {
	t.Helper()
	spec, err := jobs.NormalizeSpec(&jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}, f.policy)
	require.NoError(t, err)
	require.NoError(t, f.t.Jobs.Create(context.Background(), jobs.NewRecord(id, "acme", spec, t0, false)))
}

func TestStatusBatchCoalescesWrites(t *testing.T) {
	f := newFixture(t)
	f.create(t, "a")
	f.create(t, "b")
	ds := []*fakeDelivery{
		f.statusDelivery(t, "a", jobsv1.JobState_JOB_STATE_RUNNING, 1),
		f.statusDelivery(t, "b", jobsv1.JobState_JOB_STATE_RUNNING, 1),
		f.statusDelivery(t, "a", jobsv1.JobState_JOB_STATE_SUCCEEDED, 1),
		f.statusDelivery(t, "b", jobsv1.JobState_JOB_STATE_RUNNING, 1), // duplicate
		{testenv.NewDelivery(queue.Message{Subject: f.subjs.JobStatus("acme", "a"), Data: []byte("junk"), Header: map[string]string{queue.HeaderType: "outpost.jobs.v1.JobStatus"}}, 1)},
		f.statusDelivery(t, "zz", jobsv1.JobState_JOB_STATE_RUNNING, 1), // no such job
	}
	batch := make([]*pending, len(ds))
	for i, d := range ds {
		batch[i] = &pending{d: d}
	}
	f.e.applyStatusBatch(context.Background(), f.t, nil, batch)

	require.Equal(t, 2, f.store.updates, "one write per job")
	require.Equal(t, 2.0, testutil.ToFloat64(f.m.StatusWrites))
	require.Equal(t, 6.0, testutil.ToFloat64(f.m.StatusEvents))
	for i := range 4 {
		require.Equal(t, "ack", ds[i].settled(), i)
	}
	require.Contains(t, ds[4].settled(), "term: malformed event")
	require.Equal(t, "nak", ds[5].settled(), "an unknown job is retried a few times first")

	a, err := f.t.Jobs.Get(context.Background(), "a")
	require.NoError(t, err)
	require.Equal(t, jobs.StateSucceeded, a.State)
	require.Len(t, a.History, 3)
	var h dto.Metric
	require.NoError(t, f.m.DispatchLatency.(prometheus.Metric).Write(&h))
	require.Equal(t, uint64(2), h.GetHistogram().GetSampleCount(), "both jobs started")
}

func TestStatusSubjectMismatchIsMalformed(t *testing.T) {
	f := newFixture(t)
	f.create(t, "a")
	d := f.delivery(t, f.subjs.JobStatus("acme", "b"), &jobsv1.JobStatus{
		Envelope: events.NewEnvelope("acme", 1, "", ""), JobId: "a", State: jobsv1.JobState_JOB_STATE_RUNNING,
	}, 1)
	zero := f.statusDelivery(t, "a", jobsv1.JobState_JOB_STATE_RUNNING, 0)
	f.e.applyStatusBatch(context.Background(), f.t, nil, []*pending{{d: d}, {d: zero}})
	require.Contains(t, d.settled(), "term: malformed event: job_id \"a\" on the subject of job \"b\"")
	require.Contains(t, zero.settled(), "term: malformed event")
	require.Equal(t, 0, f.store.updates)
}

func TestCancelGoesToTheRunner(t *testing.T) {
	status := func(f *fixture, id string, st jobsv1.JobState, attempt uint32, runner string) *fakeDelivery {
		d := f.delivery(t, f.subjs.JobStatus("acme", id), &jobsv1.JobStatus{
			Envelope: events.NewEnvelope("acme", attempt, "", ""), JobId: id, State: st, RunnerId: runner, AttemptToken: f.token(t, id),
		}, 1)
		f.e.applyStatusBatch(context.Background(), f.t, nil, []*pending{{d: d}})
		return d
	}
	cancelOf := func(t *testing.T, m queue.Message) *jobsv1.CancelJob {
		c, err := events.DecodeAs[*jobsv1.CancelJob](m.Header, m.Data)
		require.NoError(t, err)
		return c
	}
	t.Run("a running job's runner is told", func(t *testing.T) {
		f := newFixture(t)
		f.create(t, "a")
		status(f, "a", jobsv1.JobState_JOB_STATE_RUNNING, 1, "r1")
		_, err := f.e.Cancel(context.Background(), f.t, "a", "by alice")
		require.NoError(t, err)
		msgs := f.b.published()
		require.Len(t, msgs, 1)
		require.Equal(t, f.subjs.RunnerControl("acme", "default", "r1"), msgs[0].Subject)
		require.Equal(t, "by alice", cancelOf(t, msgs[0]).Reason)
		require.Equal(t, uint32(1), cancelOf(t, msgs[0]).Envelope.Attempt)
	})
	t.Run("a queued job is cancelled in its record only; the runner that takes it is told", func(t *testing.T) {
		f := newFixture(t)
		f.create(t, "a")
		_, err := f.e.Cancel(context.Background(), f.t, "a", "")
		require.NoError(t, err)
		require.Empty(t, f.b.published())
		require.Equal(t, "ack", status(f, "a", jobsv1.JobState_JOB_STATE_RUNNING, 1, "r2").settled())
		msgs := f.b.published()
		require.Len(t, msgs, 1)
		require.Equal(t, f.subjs.RunnerControl("acme", "default", "r2"), msgs[0].Subject)
		require.Equal(t, "job is CANCELLED", cancelOf(t, msgs[0]).Reason)
		rec, err := f.t.Jobs.Get(context.Background(), "a")
		require.NoError(t, err)
		require.Equal(t, jobs.StateCancelled, rec.State)
	})
	t.Run("a runner id that is no token is skipped", func(t *testing.T) {
		f := newFixture(t)
		f.create(t, "a")
		_, err := f.e.Cancel(context.Background(), f.t, "a", "")
		require.NoError(t, err)
		require.Equal(t, "ack", status(f, "a", jobsv1.JobState_JOB_STATE_RUNNING, 1, "host.example.com-12").settled())
		require.Empty(t, f.b.published())
	})
}

func TestSubmitHandler(t *testing.T) {
	spec := &jobsv1.JobSpec{Pool: "p", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}
	submit := func(f *fixture, id string, attempt int) *fakeDelivery {
		d := f.delivery(t, f.subjs.Submit("acme"), &jobsv1.SubmitJob{Envelope: events.NewEnvelope("acme", 0, "", ""), JobId: id, Spec: spec}, attempt)
		f.e.handleSubmit(f.t)(context.Background(), d)
		return d
	}
	t.Run("creates and dispatches once", func(t *testing.T) {
		f := newFixture(t)
		require.Equal(t, "ack", submit(f, "j1", 1).settled())
		require.Equal(t, "ack", submit(f, "j1", 1).settled(), "a duplicate submit")
		msgs := f.b.published()
		require.Len(t, msgs, 1)
		require.Equal(t, f.subjs.Jobs("acme", "p"), msgs[0].Subject)
		require.Equal(t, "dispatch/j1", msgs[0].DedupeID)
		// A redelivered submit (the first try was cut short) dispatches again;
		// the broker deduplicates.
		require.Equal(t, "ack", submit(f, "j1", 2).settled())
		require.Len(t, f.b.published(), 2)
	})
	t.Run("paused pool holds, resume releases", func(t *testing.T) {
		f := newFixture(t)
		_, _, err := f.e.SetPaused(context.Background(), f.t, "p", true)
		require.NoError(t, err)
		submit(f, "j1", 1)
		require.Empty(t, f.b.published())
		r, err := f.t.Jobs.Get(context.Background(), "j1")
		require.NoError(t, err)
		require.True(t, r.Held)
		_, n, err := f.e.SetPaused(context.Background(), f.t, "p", false)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Len(t, f.b.published(), 1)
		r, err = f.t.Jobs.Get(context.Background(), "j1")
		require.NoError(t, err)
		require.False(t, r.Held)
	})
	t.Run("bad id is dead-lettered", func(t *testing.T) {
		f := newFixture(t)
		require.Contains(t, submit(f, "a.b", 1).settled(), "term: invalid SubmitJob: job_id")
	})
}

func TestStatusBatchRestoresOrder(t *testing.T) {
	f := newFixture(t)
	f.create(t, "a")
	// The outcome overtook the RUNNING inside one batch, then a RUNNING of
	// the same attempt arrives in a later batch.
	f.e.applyStatusBatch(context.Background(), f.t, nil, []*pending{
		{d: f.statusDelivery(t, "a", jobsv1.JobState_JOB_STATE_QUEUED, 1)},
		{d: f.statusDelivery(t, "a", jobsv1.JobState_JOB_STATE_RUNNING, 1)},
		{d: f.statusDelivery(t, "a", jobsv1.JobState_JOB_STATE_SUCCEEDED, 2)},
	})
	f.e.applyStatusBatch(context.Background(), f.t, nil, []*pending{{d: f.statusDelivery(t, "a", jobsv1.JobState_JOB_STATE_RUNNING, 2)}})
	a, err := f.t.Jobs.Get(context.Background(), "a")
	require.NoError(t, err)
	var got []string
	for _, h := range a.History {
		got = append(got, string(h.State))
	}
	require.Equal(t, []string{"QUEUED", "RUNNING", "QUEUED", "RUNNING", "SUCCEEDED"}, got)
	require.Equal(t, 2, f.store.updates)
	require.Empty(t, f.b.published(), "a late RUNNING of the finished attempt is no reason to cancel")
	require.Equal(t, 0.0, testutil.ToFloat64(f.m.Fenced.WithLabelValues("stale_attempt")))
}

func TestEnsurePoolBeforeFirstDispatch(t *testing.T) {
	f := newFixture(t)
	var ensured []string
	fail := true
	f.e.opts.EnsurePool = func(_ context.Context, tenant, pool string) error {
		ensured = append(ensured, tenant+"/"+pool)
		if fail {
			fail = false
			return errors.New("sqs unavailable")
		}
		return nil
	}
	submit := func(id string) *fakeDelivery {
		spec := &jobsv1.JobSpec{Pool: "p", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}
		d := f.delivery(t, f.subjs.Submit("acme"), &jobsv1.SubmitJob{Envelope: events.NewEnvelope("acme", 0, "", ""), JobId: id, Spec: spec}, 1)
		f.e.handleSubmit(f.t)(context.Background(), d)
		return d
	}
	require.Equal(t, "nak", submit("j1").settled(), "no dispatch before the pool's queues exist")
	require.Empty(t, f.b.published())
	d := f.delivery(t, f.subjs.Submit("acme"), &jobsv1.SubmitJob{Envelope: events.NewEnvelope("acme", 0, "", ""), JobId: "j1",
		Spec: &jobsv1.JobSpec{Pool: "p", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}}, 2)
	f.e.handleSubmit(f.t)(context.Background(), d)
	require.Equal(t, "ack", d.settled(), "the redelivered submit dispatches")
	require.Equal(t, "ack", submit("j2").settled())
	require.Len(t, f.b.published(), 2)
	require.Equal(t, []string{"acme/p", "acme/p"}, ensured, "once per pool after it succeeded")
}
