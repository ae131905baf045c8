package runner

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outposthq/outpost/libs/events"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// dispatched is job as the control plane dispatches it: opening attempt
// base, with started attempts of the job started before.
func dispatched(job *jobsv1.JobDispatched, base, started uint32) *jobsv1.JobDispatched {
	job.Envelope = events.NewEnvelope("acme", base, job.GetJobId(), "trace-1")
	job.StartedAttempts = started
	return job
}

func TestBudgetOf(t *testing.T) {
	tests := []struct {
		name            string
		base, started   uint32
		delivery        int
		wantAttempt     int
		wantSpent       int
		wantLast, wantX bool // wantX: past the budget
	}{
		{name: "first delivery of the first dispatch", base: 1, delivery: 1, wantAttempt: 1, wantSpent: 1},
		{name: "a dispatch without an attempt (older schedulers)", base: 0, delivery: 2, wantAttempt: 2, wantSpent: 2},
		{name: "third delivery is the last", base: 1, delivery: 3, wantAttempt: 3, wantSpent: 3, wantLast: true},
		{name: "an inflated delivery count", base: 1, delivery: 7, wantAttempt: 7, wantSpent: 7, wantLast: true, wantX: true},
		{name: "dispatched again with one attempt started", base: 5, started: 1, delivery: 1, wantAttempt: 5, wantSpent: 2},
		{name: "dispatched again, its second delivery", base: 5, started: 1, delivery: 2, wantAttempt: 6, wantSpent: 3, wantLast: true},
		{name: "dispatched again, past the budget", base: 5, started: 1, delivery: 3, wantAttempt: 7, wantSpent: 4, wantLast: true, wantX: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := budgetOf(dispatched(noopJob("j", 0, ""), tt.base, tt.started), tt.delivery)
			require.Equal(t, tt.wantAttempt, b.attempt)
			require.Equal(t, tt.wantSpent, b.spent)
			require.Equal(t, 3, b.max)
			require.Equal(t, tt.wantLast, b.last())
			require.Equal(t, tt.wantX, b.spent > b.max)
		})
	}
}

// The queue's delivery count is not an attempt count: JetStream counts a
// delivery to a pull request lost in a leader election, SQS a receive whose
// answer never arrived. A runner hands a dispatch delivered past the
// job's budget back to the control plane without running it; the control
// plane's new dispatch (its count of started attempts in it) runs as the
// attempt it names, and a retryable failure is retried while the budget
// of started attempts allows.
func TestDeliveryCountIsNotTheAttempt(t *testing.T) {
	boom := func(s *jobsv1.JobSpec) {
		s.Retry = &jobsv1.RetryPolicy{MaxAttempts: 3, InitialBackoff: durationpb.New(2 * time.Second)}
	}
	tests := []struct {
		name          string
		job           *jobsv1.JobDispatched
		delivery      int
		wantOp        string
		wantStates    []jobsv1.JobState
		wantAttempt   uint32
		wantReason    string
		wantExhausted float64
	}{
		{
			name: "delivery 7 of a job no runner started", job: dispatched(noopJob("inflated", 0, ""), 1, 0), delivery: 7,
			wantOp: "term", wantReason: "max attempts (3) exhausted by the delivery count: delivery 7 of a dispatch made with 0 attempts started", wantExhausted: 1,
		},
		{
			name: "the control plane's new dispatch runs as attempt 1", job: dispatched(noopJob("again", 0, ""), 1, 0), delivery: 1,
			wantOp: "ack", wantStates: []jobsv1.JobState{running, succeeded}, wantAttempt: 1,
		},
		{
			name: "a failure with started attempts left is retried", job: dispatched(noopJob("retry", 0, "boom", boom), 4, 1), delivery: 1,
			wantOp: "nak", wantStates: []jobsv1.JobState{running, queued}, wantAttempt: 4, wantReason: "boom",
		},
		{
			name: "a failure once every attempt started fails the job", job: dispatched(noopJob("last", 0, "boom", boom), 4, 2), delivery: 1,
			wantOp: "ack", wantStates: []jobsv1.JobState{running, failed}, wantAttempt: 4, wantReason: "boom (attempt 3 of 3)",
		},
		{
			name: "past the budget of a dispatch made after started attempts", job: dispatched(noopJob("spent", 0, ""), 4, 2), delivery: 2,
			wantOp: "term", wantReason: "max attempts (3) exhausted by the delivery count: delivery 2 of a dispatch made with 2 attempts started", wantExhausted: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startRunner(t, nil)
			d := h.b.deliverJob(t, tt.job, tt.delivery)
			op, _, reason := d.wait(t)
			require.Equal(t, tt.wantOp, op)
			require.Equal(t, tt.wantStates, h.b.states(t, tt.job.GetJobId()))
			if op == "term" {
				require.Equal(t, tt.wantReason, reason)
			}
			for _, st := range h.b.statuses(t, tt.job.GetJobId()) {
				require.Equal(t, tt.wantAttempt, st.GetEnvelope().GetAttempt())
			}
			if sts := h.b.statuses(t, tt.job.GetJobId()); len(sts) > 0 {
				require.Equal(t, tt.wantReason, sts[len(sts)-1].GetReason())
			}
			require.Equal(t, tt.wantExhausted, testutil.ToFloat64(h.metrics.JobsFinished.WithLabelValues(outcomeExhausted)))
		})
	}
}
