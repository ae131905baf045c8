package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

func TestSubmitRunSucceed(t *testing.T) {
	e := newEnv(t)
	r := e.runner("default", "gpu")
	j := e.submit("", noopJob(map[string]any{"pool": "gpu", "labels": map[string]string{"team": "data"}}))
	require.Equal(t, "QUEUED", j.State)
	require.Equal(t, "default", j.Tenant)
	require.Equal(t, "gpu", j.Pool)
	require.Len(t, j.ID, 26)

	d, m := r.next(t)
	require.Equal(t, j.ID, m.JobId)
	require.Equal(t, "gpu", m.Spec.Pool)
	require.Equal(t, uint32(3), m.Spec.Retry.MaxAttempts, "defaults are filled in")
	require.Equal(t, time.Hour, m.Spec.Timeout.AsDuration())
	require.Equal(t, 1, d.Attempt())

	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	running := e.waitState("default", j.ID, "RUNNING")
	require.Equal(t, 1, running.Attempt)
	require.Equal(t, "runner-1", running.RunnerID)

	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1, withExit(0))
	require.NoError(t, d.Ack(context.Background()))
	done := e.waitState("default", j.ID, "SUCCEEDED")
	require.NotNil(t, done.ExitCode)
	require.Equal(t, int32(0), *done.ExitCode)
	require.Len(t, done.History, 3)

	// The metrics of an event are counted after its write: the record
	// can show SUCCEEDED before RUNNING's observation is in.
	require.Eventually(t, func() bool {
		return e.metric("outpost_jobs_total", map[string]string{"state": "SUCCEEDED"}) == 1 &&
			e.metric("outpost_dispatch_latency_seconds", nil) == 1
	}, waitFor, tick)
	require.Never(t, func() bool { return e.metric("outpost_dispatch_latency_seconds", nil) > 1 }, 200*time.Millisecond, 20*time.Millisecond)
	r.requireEmpty(t)
}

func TestRepeatedSubmitReturnsExisting(t *testing.T) {
	e := newEnv(t)
	r := e.runner("default", "default")
	first := e.submit("", noopJob(map[string]any{"id": "nightly-1"}))
	require.Equal(t, "nightly-1", first.ID)
	code, out := e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "nightly-1"}))
	require.Equal(t, http.StatusOK, code, string(out))
	require.Equal(t, "nightly-1", decode[jobView](t, out).ID)
	r.next(t)
	r.requireEmpty(t)
}

func TestFencing(t *testing.T) {
	e := newEnv(t)
	r := e.runner("default", "default")
	j := e.submit("", noopJob(nil))
	r.next(t)
	// Attempt 1 runs, its runner vanishes; attempt 2 takes over.
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 2)
	require.Eventually(t, func() bool { return e.job("", j.ID).Attempt == 2 }, waitFor, tick)
	// The first runner comes back and reports success: fenced.
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1)
	require.Eventually(t, func() bool {
		return e.metric("outpost_fenced_events_total", map[string]string{"reason": "stale_attempt"}) == 1
	}, waitFor, tick)
	require.Equal(t, "RUNNING", e.job("", j.ID).State)
	// Attempt 2 fails for good; a late event of attempt 2 changes nothing.
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_FAILED, 2, withReason("exit status 2"), withExit(2))
	failed := e.waitState("default", j.ID, "FAILED")
	require.Equal(t, "exit status 2", failed.Reason)
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 2)
	require.Eventually(t, func() bool {
		return e.metric("outpost_fenced_events_total", map[string]string{"reason": "terminal"}) == 1
	}, waitFor, tick)
	require.Equal(t, "FAILED", e.job("", j.ID).State)
	require.Equal(t, 1.0, e.metric("outpost_redeliveries_total", nil))
}

func TestDeadLetteredDispatchFailsJob(t *testing.T) {
	e := newEnv(t)
	r := e.runner("default", "default")
	j := e.submit("", noopJob(nil))
	d, _ := r.next(t)
	require.NoError(t, d.Term(context.Background(), "attempt 4 exceeds max_attempts 3"))
	failed := e.waitState("default", j.ID, "FAILED")
	require.Equal(t, "dead-lettered: attempt 4 exceeds max_attempts 3", failed.Reason)
	require.Eventually(t, func() bool {
		return e.metric("outpost_dead_letters_total", map[string]string{"role": "jobs"}) == 1
	}, waitFor, tick)
}

func TestMalformedMessagesAreDeadLettered(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name    string
		subject string
		typ     string
		role    queue.Role
	}{
		{"submit", e.subjects.Submit("default"), events.TypeName(&jobsv1.SubmitJob{}), queue.RoleSubmit},
		{"status", e.subjects.JobStatus("default", "job-x"), events.TypeName(&jobsv1.JobStatus{}), queue.RoleJobEvents},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.NoError(t, e.conn.Publish(e.ctx, queue.Message{
				Subject: c.subject, Data: []byte{0xff, 0xff, 0xff}, Header: map[string]string{queue.HeaderType: c.typ},
			}))
			labels := map[string]string{"role": string(c.role)}
			require.Eventually(t, func() bool {
				return e.metric("outpost_dead_letters_total", labels) == 1
			}, waitFor, tick)
			require.Equal(t, 1.0, e.metric("outpost_malformed_messages_total", labels))
			dlq := e.read(e.subjects.DeadLetter("default", c.role))
			require.Len(t, dlq, 1, "dead-lettered once, not redelivered")
			require.Contains(t, dlq[0].Header[queue.HeaderDeadLetterReason], "malformed event")
			require.Equal(t, c.subject, dlq[0].Header[queue.HeaderDeadLetterSubject])
		})
	}
}

// TestSharedLayout: with broker.layout shared the scheduler provisions
// the shared streams and its submit, dispatch and status consumers work
// there (the test's runner side opens the broker in the same layout).
func TestSharedLayout(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Broker.Layout = queue.LayoutShared })
	r := e.runner("acme", "default")
	j := e.submit("acme", noopJob(nil))
	_, m := r.next(t)
	require.Equal(t, j.ID, m.JobId)
	e.status("acme", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	require.Equal(t, 1, e.waitState("acme", j.ID, "RUNNING").Attempt)
}
