package app_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

// The control plane owns the attempt budget. A dispatch its runner
// dead-letters as past its last attempt, by the queue's delivery count,
// while no attempt of the job started (the deliveries were lost on their
// way, as pull requests are while JetStream elects a leader) is dispatched
// again, as attempt 1 with no attempt spent; a dispatch dead-lettered so
// once every attempt the job allows has started fails the job.
func TestExhaustedDispatchCountsStartedAttempts(t *testing.T) {
	ctx := context.Background()
	// Without the reaper (and its wait for a silent runner), the dead
	// letters alone decide.
	e := newEnv(t, func(c *config.Config) { c.Runners.LostAfter = 0 })
	r := e.runner("default", "default")
	j := e.submit("", noopJob(nil)) // 3 attempts
	d, m := r.next(t)
	require.EqualValues(t, 1, m.GetEnvelope().GetAttempt())
	require.Zero(t, m.GetStartedAttempts())

	// The runner dead-letters it as delivered past its last attempt (as it
	// would delivery 7), while nothing ever started.
	require.NoError(t, d.Term(ctx, "max attempts (3) exhausted by the delivery count: delivery 7 of a dispatch made with 0 attempts started"))
	d, m = r.next(t)
	require.Equal(t, j.ID, m.GetJobId())
	require.EqualValues(t, 1, m.GetEnvelope().GetAttempt(), "dispatched again as the first attempt")
	require.Zero(t, m.GetStartedAttempts())
	queued := e.job("", j.ID)
	require.Equal(t, "QUEUED", queued.State)
	require.Zero(t, queued.Attempt)
	require.Contains(t, queued.Reason, "with 0 of 3 attempts started; dispatched again as attempt 1")

	// Attempt 1 starts and its runner dies; the next delivery numbers
	// attempt 2, which starts too; a lost delivery skips number 3, and
	// attempt 4 starts and dies as well.
	for _, a := range []uint32{1, 2, 4} {
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, a)
	}
	require.Eventually(t, func() bool { return e.job("", j.ID).Attempt == 4 }, waitFor, tick)
	require.NoError(t, d.Term(ctx, "max attempts (3) exhausted by the delivery count: delivery 4 of a dispatch made with 0 attempts started"))
	failed := e.waitState("default", j.ID, "FAILED")
	require.Equal(t, 4, failed.Attempt, "the last attempt that started")
	require.Equal(t, "dead-lettered: max attempts (3) exhausted; the runner of attempt 4 was lost", failed.Reason)
	r.requireEmpty(t)
}

// Deliveries that never start cannot keep a job alive for ever: a job is
// dispatched again after a dead letter for its delivery count at most as
// many times as its max attempts, then fails with the reason.
func TestReissuesAreBounded(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	r := e.runner("default", "default")
	j := e.submit("", noopJob(map[string]any{"retry": map[string]any{"max_attempts": 2}}))
	for range 2 {
		d, _ := r.next(t)
		require.NoError(t, d.Term(ctx, "max deliveries (10) exceeded"))
	}
	d, m := r.next(t)
	require.EqualValues(t, 1, m.GetEnvelope().GetAttempt())
	require.NoError(t, d.Term(ctx, "max deliveries (10) exceeded"))
	failed := e.waitState("default", j.ID, "FAILED")
	require.Equal(t, "dead-lettered: its work message ran out of deliveries 3 times with 0 of 2 attempts started", failed.Reason)
	r.requireEmpty(t)
}
