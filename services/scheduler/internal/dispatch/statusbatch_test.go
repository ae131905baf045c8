package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
)

// outcome is a short job's outcome as a runner batches it: the attempt's
// only status, carrying its start.
func (f *fixture) outcome(t *testing.T, id, token string, s jobsv1.JobState) *jobsv1.JobStatus {
	t.Helper()
	return &jobsv1.JobStatus{
		Envelope: events.NewEnvelope("acme", 1, id+"-1-"+s.String(), ""), JobId: id, State: s, RunnerId: "r1",
		AttemptToken: token, StartedAt: timestamppb.New(t0), Result: &jobsv1.JobResult{},
	}
}

func (f *fixture) batchDelivery(t *testing.T, attempt int, statuses ...*jobsv1.JobStatus) *fakeDelivery {
	t.Helper()
	return f.delivery(t, f.subjs.JobStatus("acme", statuses[0].GetJobId()), &jobsv1.JobStatusBatch{
		Envelope: events.NewEnvelope("acme", 0, "", ""), Statuses: statuses,
	}, attempt)
}

// deadLetters are the dead letters published, by their job's status
// subject.
func (f *fixture) deadLetters(t *testing.T) map[string]queue.Message {
	t.Helper()
	out := map[string]queue.Message{}
	for _, m := range f.b.published() {
		if m.Subject == f.subjs.DeadLetter("acme", queue.RoleJobEvents) {
			out[m.Header[queue.HeaderDeadLetterSubject]] = m
		}
	}
	return out
}

func TestStatusBatchSettlesEachStatus(t *testing.T) {
	f := newFixture(t)
	for _, id := range []string{"a", "b", "c"} {
		f.create(t, id)
	}
	plain := f.statusDelivery(t, "c", jobsv1.JobState_JOB_STATE_RUNNING, 1)
	batch := f.batchDelivery(t, 2,
		f.outcome(t, "a", f.token(t, "a"), jobsv1.JobState_JOB_STATE_SUCCEEDED),
		f.outcome(t, "b", "not-the-token", jobsv1.JobState_JOB_STATE_SUCCEEDED),
		f.outcome(t, "c", f.token(t, "c"), jobsv1.JobState_JOB_STATE_UNSPECIFIED),
		f.outcome(t, "no such id!", "x", jobsv1.JobState_JOB_STATE_SUCCEEDED),
	)
	f.e.applyStatusBatch(context.Background(), f.t, nil, []*pending{{d: batch}, {d: plain}})

	require.Equal(t, "ack", batch.settled(), "every status applied or dead-lettered on its own")
	require.Equal(t, "ack", plain.settled())
	require.Equal(t, 5.0, testutil.ToFloat64(f.m.StatusEvents), "each status of the batch counts")
	for id, want := range map[string]jobs.State{"a": jobs.StateSucceeded, "b": jobs.StateQueued, "c": jobs.StateRunning} {
		rec, err := f.t.Jobs.Get(context.Background(), id)
		require.NoError(t, err)
		require.Equal(t, want, rec.State, id)
	}
	a, err := f.t.Jobs.Get(context.Background(), "a")
	require.NoError(t, err)
	require.Equal(t, t0, *a.StartedAt, "the start the outcome carried")

	dead := f.deadLetters(t)
	require.Len(t, dead, 3)
	for subject, want := range map[string]struct{ job, reason string }{
		f.subjs.JobStatus("acme", "b"): {"b", ReasonAttemptToken},
		f.subjs.JobStatus("acme", "c"): {"c", "malformed event"},
		batch.Subject():                {"no such id!", "malformed event: job_id \"no such id!\" is not a job id"},
	} {
		m, ok := dead[subject]
		require.True(t, ok, subject)
		require.Contains(t, m.Header[queue.HeaderDeadLetterReason], want.reason, subject)
		require.Equal(t, "2", m.Header[queue.HeaderDeadLetterAttempts])
		st, err := events.DecodeAs[*jobsv1.JobStatus](m.Header, m.Data)
		require.NoError(t, err, "a dead letter holds its status alone")
		require.Equal(t, want.job, st.GetJobId())
		require.Equal(t, "dlq-"+st.GetEnvelope().GetIdempotencyKey(), m.DedupeID)
	}
}

func TestStatusBatchComesBackWhenAStatusMust(t *testing.T) {
	f := newFixture(t)
	f.create(t, "a")
	batch := f.batchDelivery(t, 1,
		f.outcome(t, "a", f.token(t, "a"), jobsv1.JobState_JOB_STATE_SUCCEEDED),
		f.outcome(t, "later", "x", jobsv1.JobState_JOB_STATE_SUCCEEDED), // no record yet
	)
	f.e.applyStatusBatch(context.Background(), f.t, nil, []*pending{{d: batch}})
	require.Equal(t, "nak", batch.settled(), "a status to retry brings the whole batch back")
	require.Greater(t, batch.Settlement().Delay, time.Duration(0))
	a, err := f.t.Jobs.Get(context.Background(), "a")
	require.NoError(t, err)
	require.Equal(t, jobs.StateSucceeded, a.State, "the others are applied meanwhile")

	// Its redelivery applies the first again (nothing changes) and, past
	// the unknown job's retries, drops the second.
	again := f.batchDelivery(t, unknownJobRetries,
		f.outcome(t, "a", f.token(t, "a"), jobsv1.JobState_JOB_STATE_SUCCEEDED),
		f.outcome(t, "later", "x", jobsv1.JobState_JOB_STATE_SUCCEEDED),
	)
	writes := f.store.updates
	f.e.applyStatusBatch(context.Background(), f.t, nil, []*pending{{d: again}})
	require.Equal(t, "ack", again.settled())
	require.Equal(t, writes, f.store.updates, "a status applied before writes nothing")
}

func TestStatusBatchMalformedAsAWhole(t *testing.T) {
	f := newFixture(t)
	f.create(t, "a")
	cases := map[string]*fakeDelivery{
		"first status not of the subject's job": f.delivery(t, f.subjs.JobStatus("acme", "b"), &jobsv1.JobStatusBatch{
			Statuses: []*jobsv1.JobStatus{f.outcome(t, "a", f.token(t, "a"), jobsv1.JobState_JOB_STATE_SUCCEEDED)},
		}, 1),
		"no statuses": f.delivery(t, f.subjs.JobStatus("acme", "a"), &jobsv1.JobStatusBatch{}, 1),
		"not a batch": {f.delivery(t, f.subjs.JobStatus("acme", "a"), &jobsv1.JobStatus{JobId: "a"}, 1).Delivery},
	}
	// A JobStatus's bytes under the batch's type.
	cases["not a batch"].msgType(jobStatusBatchType)
	for name, d := range cases {
		t.Run(name, func(t *testing.T) {
			f.e.applyStatusBatch(context.Background(), f.t, nil, []*pending{{d: d}})
			require.Contains(t, d.settled(), "term: malformed event", "dead-lettered whole, by the backend")
		})
	}
	require.Equal(t, 0, f.store.updates)
	require.Empty(t, f.deadLetters(t), "nothing dead-lettered status by status")
}

// msgType changes the type header the delivery carries.
func (d fakeDelivery) msgType(name string) { d.Header()[queue.HeaderType] = name }

func TestDispatchOffersStatusBatches(t *testing.T) {
	for _, offer := range []int{0, 64} {
		f := newFixture(t)
		f.e.opts.StatusBatchMax = offer
		f.create(t, "a")
		rec, err := f.t.Jobs.Get(context.Background(), "a")
		require.NoError(t, err)
		m, err := f.e.jobMessage(context.Background(), f.t, rec, 1)
		require.NoError(t, err)
		require.EqualValues(t, offer, m.GetStatusBatchMax())
	}
}
