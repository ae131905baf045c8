package runner

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// lostAck is a delivery whose Ack fails, as an SQS DeleteMessage does while
// the queue is down: the message comes back later.
type lostAck struct{ *fakeDelivery }

func (lostAck) Ack(context.Context) error { return errors.New("ack lost: connection refused") }

func withLostAck(d *fakeDelivery) queue.Delivery { return lostAck{d} }

// A delivery that comes back after its attempt ended and was reported (its
// Ack was lost) is acked without running the job again; a delivery handed
// back for a retry runs, and so does a new dispatch of the same job.
func TestFinishedDispatchRedeliveredNotRunAgain(t *testing.T) {
	retry := func(s *jobsv1.JobSpec) {
		s.Retry = &jobsv1.RetryPolicy{MaxAttempts: 2, InitialBackoff: durationpb.New(time.Millisecond)}
	}
	tests := []struct {
		name string
		job  *jobsv1.JobDispatched
		// first is how the first delivery ends, again how the
		// redelivery does.
		first, again string
		// redelivery is the delivery count of the message that comes back.
		redelivery int
		runs       float64
		states     []jobsv1.JobState
	}{
		{name: "succeeded", job: noopJob("ok", 0, "", retry), first: "", again: "ack", redelivery: 2, runs: 1,
			states: []jobsv1.JobState{jobsv1.JobState_JOB_STATE_RUNNING, jobsv1.JobState_JOB_STATE_SUCCEEDED}},
		{name: "failed for good, redelivered past its max attempts", job: noopJob("bad", 0, "boom", retry, func(s *jobsv1.JobSpec) {
			s.Retry.MaxAttempts = 1
		}), first: "", again: "ack", redelivery: 3, runs: 1,
			states: []jobsv1.JobState{jobsv1.JobState_JOB_STATE_RUNNING, jobsv1.JobState_JOB_STATE_FAILED}},
		{name: "failed and retried: the retry runs", job: noopJob("retry", 0, "boom", retry), first: "nak", again: "ack", redelivery: 2, runs: 2,
			states: []jobsv1.JobState{jobsv1.JobState_JOB_STATE_RUNNING, jobsv1.JobState_JOB_STATE_QUEUED,
				jobsv1.JobState_JOB_STATE_RUNNING, jobsv1.JobState_JOB_STATE_FAILED}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startRunner(t, nil)
			first := h.b.deliverAs(t, tt.job, 1, withLostAck)
			require.Eventually(t, func() bool {
				return testutil.ToFloat64(h.metrics.JobsFinished.WithLabelValues(outcomeSucceeded))+
					testutil.ToFloat64(h.metrics.JobsFinished.WithLabelValues(outcomeFailed))+
					testutil.ToFloat64(h.metrics.JobsFinished.WithLabelValues(outcomeRetrying)) == 1
			}, 10*time.Second, 5*time.Millisecond)
			require.Equal(t, tt.first, first.settledOp(), "the first delivery's Ack is lost")

			again := h.b.deliverJob(t, tt.job, tt.redelivery)
			op, _, _ := again.wait(t)
			require.Equal(t, tt.again, op)
			require.Equal(t, tt.runs, testutil.ToFloat64(h.metrics.JobsStarted))
			require.Equal(t, tt.states, h.b.states(t, tt.job.GetJobId()))
			require.Equal(t, 2-tt.runs, testutil.ToFloat64(h.metrics.FinishedRedeliveries))
		})
	}
}

// A new dispatch of a job whose earlier dispatch ended here (the scheduler
// dispatched it again) runs.
func TestNewDispatchOfFinishedJobRuns(t *testing.T) {
	h := startRunner(t, nil)
	job := noopJob("again", 0, "")
	job.AttemptToken = "token-1"
	h.b.deliverAs(t, job, 1, withLostAck)
	require.Eventually(t, func() bool { return len(h.b.states(t, "again")) == 2 }, 10*time.Second, 5*time.Millisecond)

	next := noopJob("again", 0, "")
	next.Envelope = events.NewEnvelope("acme", 2, "again-2", "")
	next.AttemptToken = "token-2"
	op, _, _ := h.b.deliverJob(t, next, 1).wait(t)
	require.Equal(t, "ack", op)
	require.InDelta(t, 2, testutil.ToFloat64(h.metrics.JobsStarted), 0)
	require.Zero(t, testutil.ToFloat64(h.metrics.FinishedRedeliveries))
}

// A delivery held while the job runs is acked once the attempt is
// reported, even though the attempt's own Ack was lost: it is not handed
// back to run the job again.
func TestHeldDuplicateOfLostAckIsAcked(t *testing.T) {
	h := startRunner(t, func(c *Config) { c.AckWait = 90 * time.Millisecond })
	job := noopJob("held", 400*time.Millisecond, "")
	h.b.deliverAs(t, job, 1, withLostAck)
	require.Eventually(t, func() bool { return len(h.b.statuses(t, "held")) == 1 }, 5*time.Second, 5*time.Millisecond)
	second := h.b.deliverJob(t, job, 2)
	op, _, _ := second.wait(t)
	require.Equal(t, "ack", op)
	require.InDelta(t, 1, testutil.ToFloat64(h.metrics.JobsStarted), 0)
	require.Equal(t, []jobsv1.JobState{jobsv1.JobState_JOB_STATE_RUNNING, jobsv1.JobState_JOB_STATE_SUCCEEDED}, h.b.states(t, "held"))
}
