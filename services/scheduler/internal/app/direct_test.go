package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
)

// directGrace is the tests' api.direct_grace: the sweep looks every half
// of it.
const directGrace = time.Second

func withDirectGrace(c *config.Config) { c.API.DirectGrace = directGrace }

// workStored is how many messages the tenant's work stream ever stored
// (submit and jobs subjects): its last sequence.
func (e *env) workStored(tenant string) uint64 {
	e.t.Helper()
	nc, err := nats.Connect(e.brokerURL)
	require.NoError(e.t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(e.t, err)
	s, err := js.Stream(e.ctx, "OUTPOST_"+tenant+"_WORK")
	require.NoError(e.t, err)
	return s.CachedInfo().State.LastSeq
}

// createRecord stores a record as a scheduler replica would, without
// dispatching it.
func (e *env) createRecord(tenant string, rec *jobs.Record) {
	e.t.Helper()
	store, err := e.conn.OpenStore(e.ctx, "jobs_"+tenant)
	require.NoError(e.t, err)
	require.NoError(e.t, jobs.NewStore(store).Create(e.ctx, rec))
}

// directRecord is the record of a noop job the API created directly at
// created, as a replica that died before its dispatch left it.
func directRecord(t *testing.T, id string, created time.Time) *jobs.Record {
	t.Helper()
	p := config.Default().Jobs
	spec, err := jobs.NormalizeSpec(&jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}},
		jobs.Policy{MaxAttempts: p.Retry.MaxAttempts, InitialBackoff: p.Retry.InitialBackoff, MaxBackoff: p.Retry.MaxBackoff,
			Multiplier: p.Retry.Multiplier, DefaultTimeout: p.DefaultTimeout, MaxTimeout: p.MaxTimeout, AttemptsLimit: p.MaxAttempts})
	require.NoError(t, err)
	rec := jobs.NewRecord(id, "default", spec, created, false)
	rec.Direct = true
	return rec
}

// The API records and dispatches a job in the request: the work stream
// stores the dispatch and no SubmitJob.
func TestDirectSubmit(t *testing.T) {
	e := newEnv(t)
	r := e.runner("default", "default")
	code, out := e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "d1"}))
	require.Equal(t, http.StatusCreated, code, string(out))
	require.Equal(t, "QUEUED", decode[jobView](t, out).State)
	require.NotContains(t, string(out), "direct", "bookkeeping stays out of the answer")
	_, m := r.next(t)
	require.Equal(t, "d1", m.GetJobId())
	require.NotEmpty(t, m.GetAttemptToken())
	require.EqualValues(t, 1, e.workStored("default"), "one message: the dispatch")

	code, out = e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "d1"}))
	require.Equal(t, http.StatusOK, code, string(out))
	require.EqualValues(t, 1, e.workStored("default"), "a repeated id dispatches nothing")
	r.requireEmpty(t)
}

// A dispatch the broker refuses in the request (the tenant's queue is
// full) does not lose the job: it has its record, and the sweep dispatches
// it once the queue has room.
func TestDirectDispatchRetried(t *testing.T) {
	e := newEnv(t, withDirectGrace, func(c *config.Config) { c.Tenants.Limits.MaxMessages = 1 })
	filler := e.runner("default", "filler")
	r := e.runner("default", "default")
	e.publish(e.subjects.Jobs("default", "filler"), &jobsv1.JobDispatched{Envelope: events.NewEnvelope("default", 1, "filler", ""), JobId: "filler"}, "")
	fd, _ := filler.next(t)

	code, out := e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "d2"}))
	require.Equal(t, http.StatusCreated, code, "the job is recorded although its dispatch was refused: %s", out)
	// Until the queue has room, the next jobs are refused, not recorded.
	code, out = e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "d3"}))
	require.Equal(t, http.StatusTooManyRequests, code, string(out))
	code, _ = e.do("GET", "/api/v1/jobs/d3", "", nil)
	require.Equal(t, http.StatusNotFound, code)
	code, out = e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "d2"}))
	require.Equal(t, http.StatusOK, code, "a job that exists is answered meanwhile: %s", out)
	require.Never(t, func() bool { return len(r.deliveries) > 0 }, 2*directGrace, 50*time.Millisecond, "dispatched while the queue was full")
	require.Equal(t, "QUEUED", e.job("", "d2").State)

	require.NoError(t, fd.Ack(context.Background()))
	d, m := r.next(t)
	require.Equal(t, "d2", m.GetJobId())
	require.NoError(t, d.Ack(context.Background()))
	require.Eventually(t, func() bool {
		code, _ := e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "d3"}))
		return code == http.StatusCreated
	}, waitFor, tick, "refused after the queue had room")
	_, m = r.next(t)
	require.Equal(t, "d3", m.GetJobId())
}

// The sweep of a live replica dispatches a direct job another replica
// recorded but died before dispatching; a job whose dispatch a runner
// already took and acknowledged (its statuses not applied yet) is not
// dispatched again: the broker drops the second publish.
func TestDirectSweepCoversADeadReplica(t *testing.T) {
	e := newEnv(t, withDirectGrace)
	r := e.runner("default", "default")

	code, out := e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "taken"}))
	require.Equal(t, http.StatusCreated, code, string(out))
	d, _ := r.next(t)
	require.NoError(t, d.Ack(context.Background()))

	e.createRecord("default", directRecord(t, "orphan", time.Now()))
	_, m := r.next(t)
	require.Equal(t, "orphan", m.GetJobId())
	require.Never(t, func() bool { return len(r.deliveries) > 0 }, 3*directGrace, 50*time.Millisecond,
		"a job whose dispatch was taken was dispatched again")
	require.Equal(t, "QUEUED", e.job("", "taken").State)
	require.EqualValues(t, 2, e.workStored("default"), "taken's second dispatch was dropped")
}

// A replica that starts dispatches a direct job older than the broker's
// deduplication window whose pool's queue does not hold its message (every
// replica was down since it was recorded), and not one the queue holds.
func TestDirectStartDispatchesOldJobs(t *testing.T) {
	e := newEnv(t, withDirectGrace)
	r := e.runner("default", "default")
	old := time.Now().Add(-time.Hour)
	e.createRecord("default", directRecord(t, "old-lost", old))
	e.createRecord("default", directRecord(t, "old-queued", old))
	e.publish(e.subjects.Jobs("default", "default"), &jobsv1.JobDispatched{Envelope: events.NewEnvelope("default", 1, "old-queued", ""), JobId: "old-queued"}, "")
	_, m := r.next(t)
	require.Equal(t, "old-queued", m.GetJobId())
	// The running replica's sweep leaves jobs past its band alone.
	require.Never(t, func() bool { return len(r.deliveries) > 0 }, 2*directGrace, 50*time.Millisecond)

	newEnvOn(t, e.brokerURL, withDirectGrace)
	_, m = r.next(t)
	require.Equal(t, "old-lost", m.GetJobId())
	require.Never(t, func() bool { return len(r.deliveries) > 0 }, 2*directGrace, 50*time.Millisecond, "a job its queue holds was dispatched again")
}
