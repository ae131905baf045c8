package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// withStartedAt has an outcome carry its attempt's start, as a runner
// reports an attempt that ended within the dispatch's running_report_delay.
func withStartedAt(at time.Time) statusOpt {
	return func(m *jobsv1.JobStatus) { m.StartedAt = timestamppb.New(at) }
}

type transition struct {
	State   string
	Attempt int
}

func transitions(j jobView) []transition {
	var out []transition
	for _, h := range j.History {
		out = append(out, transition{h.State, h.Attempt})
	}
	return out
}

// TestStartCarriedByOutcome: an outcome that carries its attempt's start
// is recorded as that attempt's RUNNING followed by the outcome.
func TestStartCarriedByOutcome(t *testing.T) {
	e := newEnv(t)
	started := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

	t.Run("the dispatch offers the delay", func(t *testing.T) {
		r := e.runner("default", "delay")
		j := e.submit("", noopJob(map[string]any{"pool": "delay"}))
		_, d := r.next(t)
		require.Equal(t, j.ID, d.GetJobId())
		require.Equal(t, 250*time.Millisecond, d.GetRunningReportDelay().AsDuration())
	})

	t.Run("one outcome, both transitions", func(t *testing.T) {
		j := e.submit("", noopJob(nil))
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1, withStartedAt(started))
		got := e.waitState("", j.ID, "SUCCEEDED")
		require.Equal(t, []transition{{"QUEUED", 0}, {"RUNNING", 1}, {"SUCCEEDED", 1}}, transitions(got))
		_, out := e.do("GET", "/api/v1/jobs/"+j.ID, "", nil)
		require.Equal(t, started, decode[struct {
			StartedAt time.Time `json:"started_at"`
		}](t, out).StartedAt)

		// Delivered again: nothing more. A later event that is fenced
		// marks it applied: the status consumer applies batches one
		// after the other, and a job's events in attempt order.
		fenced := e.metric("outpost_fenced_events_total", map[string]string{"reason": "terminal"})
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1, withStartedAt(started))
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 2)
		require.Eventually(t, func() bool {
			return e.metric("outpost_fenced_events_total", map[string]string{"reason": "terminal"}) > fenced
		}, waitFor, tick)
		require.Equal(t, transitions(got), transitions(e.job("", j.ID)))
	})

	t.Run("a retry counts its start", func(t *testing.T) {
		j := e.submit("", noopJob(map[string]any{"retry": map[string]any{"max_attempts": 2}}))
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_QUEUED, 1, withReason("boom"), withStartedAt(started))
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_FAILED, 2, withReason("boom"), withStartedAt(started.Add(time.Second)))
		got := e.waitState("", j.ID, "FAILED")
		require.Equal(t, []transition{{"QUEUED", 0}, {"RUNNING", 1}, {"QUEUED", 1}, {"RUNNING", 2}, {"FAILED", 2}}, transitions(got))
	})

	t.Run("the runner of a cancelled job is not told to stop a job it ended", func(t *testing.T) {
		j := e.submit("", noopJob(map[string]any{"pool": "cancelled"}))
		code, out := e.do("POST", "/api/v1/jobs/"+j.ID+"/cancel", "", nil)
		require.Equal(t, http.StatusOK, code, string(out))
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1, withStartedAt(started))
		// A RUNNING after it is told: the control subject then holds
		// that one cancel only.
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 2, func(m *jobsv1.JobStatus) { m.RunnerId = "runner-2" })
		require.Eventually(t, func() bool {
			return len(e.read(e.subjects.RunnerControl("default", "cancelled", "runner-2"))) == 1
		}, waitFor, tick)
		require.Empty(t, e.read(e.subjects.RunnerControl("default", "cancelled", "runner-1")))
		require.Equal(t, "CANCELLED", e.job("", j.ID).State)
	})
}

// TestStatusBatchEndToEnd: the dispatch offers status batches, and a
// runner's JobStatusBatch on the broker ends each of its jobs as if each
// outcome came alone; a status in it with a wrong attempt token is
// dead-lettered alone, and listed with its own job's subject.
func TestStatusBatchEndToEnd(t *testing.T) {
	e := newEnv(t)
	started := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	r := e.runner("default", "batch")
	a := e.submit("", noopJob(map[string]any{"pool": "batch"}))
	b := e.submit("", noopJob(map[string]any{"pool": "batch"}))
	c := e.submit("", noopJob(map[string]any{"pool": "batch"}))
	for range 3 {
		_, d := r.next(t)
		require.EqualValues(t, 64, d.GetStatusBatchMax(), "the default offer")
	}
	outcome := func(id, token string, state jobsv1.JobState) *jobsv1.JobStatus {
		return &jobsv1.JobStatus{Envelope: events.NewEnvelope("default", 1, id+"-1-"+state.String(), ""), JobId: id, State: state,
			RunnerId: "runner-1", AttemptToken: token, StartedAt: timestamppb.New(started)}
	}
	e.publish(e.subjects.JobStatus("default", a.ID), &jobsv1.JobStatusBatch{
		Envelope: events.NewEnvelope("default", 0, "", ""),
		Statuses: []*jobsv1.JobStatus{
			outcome(a.ID, e.attemptToken("default", a.ID), jobsv1.JobState_JOB_STATE_SUCCEEDED),
			outcome(b.ID, e.attemptToken("default", b.ID), jobsv1.JobState_JOB_STATE_FAILED),
			outcome(c.ID, "not-its-token", jobsv1.JobState_JOB_STATE_SUCCEEDED),
		},
	}, "statuses-1")

	for id, state := range map[string]string{a.ID: "SUCCEEDED", b.ID: "FAILED"} {
		got := e.waitState("", id, state)
		require.Equal(t, []transition{{"QUEUED", 0}, {"RUNNING", 1}, {state, 1}}, transitions(got))
	}
	var dl deadLetterView
	require.Eventually(t, func() bool {
		l := e.deadLetters("", "")
		if len(l.DeadLetters) != 1 {
			return false
		}
		dl = l.DeadLetters[0]
		return true
	}, waitFor, tick, "the status with a wrong token is dead-lettered")
	require.Equal(t, e.subjects.JobStatus("default", c.ID), dl.Subject, "under its own job's subject")
	require.Equal(t, events.TypeName(&jobsv1.JobStatus{}), dl.Type)
	require.Contains(t, dl.Reason, "attempt token")
	require.Equal(t, "QUEUED", e.job("", c.ID).State, "a status with a wrong token changes nothing")
}
