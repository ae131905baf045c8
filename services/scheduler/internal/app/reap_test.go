package app_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

// A RUNNING job whose runner went silent is dispatched again only once its
// work message is gone (a superseded attempt acked it); while the queue
// still holds the message, or while the runner heartbeats, the queue's own
// redelivery is left to do its work.
func TestLostJobDispatchedAgain(t *testing.T) {
	const lostAfter = time.Second
	e := newEnv(t, func(c *config.Config) { c.Runners.LostAfter = lostAfter })
	r := e.runner("default", "default")
	j := e.submit("", noopJob(nil))
	d1, m1 := r.next(t)
	require.EqualValues(t, 1, m1.GetEnvelope().GetAttempt(), "the dispatch opens attempt 1")
	e.heartbeat("default", "default", "runner-1", 1, 1, false)
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	require.Eventually(t, func() bool { return e.job("", j.ID).State == "RUNNING" }, waitFor, tick)

	// The runner is silent but its delivery is still on the queue.
	require.Never(t, func() bool { return e.job("", j.ID).State != "RUNNING" }, 3*lostAfter, 50*time.Millisecond,
		"dispatched again while the queue still holds the work message")
	r.requireEmpty(t)
	require.Eventually(t, func() bool {
		x := e.explain(j.ID)
		return len(x.Reasons) == 2 && x.Reasons[1].Code == "RUNNER_SILENT" &&
			strings.Contains(x.Reasons[1].Message, "the queue still holds the job's work message")
	}, waitFor, tick, "explain promises the queue's redelivery while the queue holds the message")

	// A superseded attempt's ack took the message: the job is lost.
	require.NoError(t, d1.Ack(context.Background()))
	d2, m2 := r.next(t)
	require.Equal(t, j.ID, m2.GetJobId())
	require.EqualValues(t, 2, m2.GetEnvelope().GetAttempt(), "dispatched again as the next attempt")
	lost := e.job("", j.ID)
	require.Equal(t, "QUEUED", lost.State)
	require.Equal(t, 1, lost.Attempt)
	require.Contains(t, lost.Reason, "went silent")

	// The next attempt runs and ends the job; nothing more is dispatched.
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 2)
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 2)
	done := e.waitState("default", j.ID, "SUCCEEDED")
	require.Equal(t, 2, done.Attempt)
	require.NoError(t, d2.Ack(context.Background()))
	require.Never(t, func() bool { return len(r.deliveries) > 0 }, 3*lostAfter, 50*time.Millisecond, "dispatched after it ended")
}

func TestRunningJobOfAHeartbeatingRunnerIsNotReaped(t *testing.T) {
	const lostAfter = 2 * time.Second // heartbeats every half second, with room for a loaded machine
	e := newEnv(t, func(c *config.Config) { c.Runners.LostAfter = lostAfter })
	r := e.runner("default", "default")
	j := e.submit("", noopJob(nil))
	d, _ := r.next(t)
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	require.Eventually(t, func() bool { return e.job("", j.ID).State == "RUNNING" }, waitFor, tick)
	// The message is gone, but the runner that runs the job is alive.
	require.NoError(t, d.Ack(context.Background()))
	// Checked in the test's own goroutine: a condition of require.Never
	// still running when the test ends would call a closed API.
	beat := time.NewTicker(lostAfter / 4)
	defer beat.Stop()
	for range 16 {
		e.heartbeat("default", "default", "runner-1", 1, 1, false)
		<-beat.C
		require.Equal(t, "RUNNING", e.job("", j.ID).State, "the job of a heartbeating runner was reaped")
	}
	r.requireEmpty(t)
}

// explain promises no redelivery for a silent runner's job whose work
// message is gone: it names the scheduler's re-dispatch instead.
func TestExplainLostJob(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.Runners.LostAfter = time.Hour })
	r := e.runner("default", "default")
	j := e.submit("", noopJob(nil))
	d, _ := r.next(t)
	e.heartbeat("default", "default", "runner-1", 1, 1, false)
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	require.Eventually(t, func() bool { return e.job("", j.ID).State == "RUNNING" }, waitFor, tick)
	require.NoError(t, d.Ack(context.Background()))
	require.Eventually(t, func() bool {
		x := e.explain(j.ID)
		return len(x.Reasons) == 2 && x.Reasons[1].Code == "RUNNER_SILENT" &&
			strings.Contains(x.Reasons[1].Message, "no longer on the queue: the scheduler dispatches the job again as attempt 2") &&
			!strings.Contains(x.Reasons[1].Message, "after the ack wait")
	}, waitFor, tick, "explain still promises a redelivery: %+v", e.explain(j.ID))
}

// The reaper deletes the record of a job that finished longer than
// jobs.retention ago, and no record of a live job, however old.
func TestFinishedJobsExpire(t *testing.T) {
	const retention = time.Second
	e := newEnv(t, func(c *config.Config) {
		c.Jobs.Retention = retention
		c.Runners.LostAfter = time.Second // a pass every quarter second
	})
	r := e.runner("default", "default")
	done := e.submit("", noopJob(nil))
	waiting := e.submit("", noopJob(nil))
	d, _ := r.next(t)
	require.NoError(t, d.Ack(context.Background()))
	// Results of two attempts: the first's batch is no longer indexed
	// once the second sends its own, but is still kept.
	e.status("default", done.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	e.waitState("", done.ID, "RUNNING")
	e.records(done.ID, 1, 0, 1, nil, dataset("db.public.a", "a1"))
	require.Eventually(t, func() bool { return e.results(done.ID, "").TotalRecords == 1 }, waitFor, tick)
	e.status("default", done.ID, jobsv1.JobState_JOB_STATE_RUNNING, 2)
	e.waitState("", done.ID, "RUNNING")
	e.records(done.ID, 2, 0, 2, nil, dataset("db.public.b", "b2"))
	// Attempt 2 with its record: the index of attempt 2 is written after
	// its batch (the attempt alone is the record's, as soon as it runs).
	require.Eventually(t, func() bool { r := e.results(done.ID, ""); return r.Attempt == 2 && r.TotalRecords == 1 }, waitFor, tick)
	results, err := e.conn.OpenStore(e.ctx, "results_default")
	require.NoError(t, err)
	require.Len(t, keys(t, results), 3, "the index and two batches")
	e.status("default", done.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 2)
	e.waitState("", done.ID, "SUCCEEDED")

	require.Eventually(t, func() bool {
		code, _ := e.do("GET", "/api/v1/jobs/"+done.ID, "", nil)
		return code == http.StatusNotFound
	}, waitFor, tick, "the finished job's record outlived its retention")
	// The pass that deleted it saw the queued job too, submitted before
	// it and as far past the retention.
	require.Equal(t, "QUEUED", e.job("", waiting.ID).State, "a queued job's record was deleted")
	require.Empty(t, keys(t, results), "the expired job's results were kept")
	metadata, err := e.conn.OpenStore(e.ctx, "metadata_default")
	require.NoError(t, err)
	require.Len(t, keys(t, metadata), 2, "the metadata view lost the datasets the job found")
}

// keys lists the keys of a bucket.
func keys(t *testing.T, s kv.Store) []string {
	t.Helper()
	out, err := listKeys(s)
	require.NoError(t, err)
	return out
}

func listKeys(s kv.Store) ([]string, error) {
	var out []string
	err := s.List(context.Background(), func(e kv.Entry) bool { out = append(out, e.Key); return true })
	return out, err
}
