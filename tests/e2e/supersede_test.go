package e2e

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/tests/harness"
)

// fencedRunnerEnv is runnerEnv with an ack wait long enough for the
// runners' job consumer to be fenced (queue.MinFencedAckWait).
var fencedRunnerEnv = func() map[string]string {
	env := maps.Clone(runnerEnv)
	env["OUTPOST_ACK_WAIT"] = "3s"
	return env
}()

// schedulerLostAfter makes the scheduler dispatch a lost job again soon
// after the runners' ack wait (3s at most).
var schedulerLostAfter = map[string]string{"OUTPOST_RUNNERS_LOST_AFTER": "5s"}

// supersede runs a job (sleeping sleep) on runner-a, pauses runner-a
// (SIGSTOP) past the ack wait, starts runner-b, which takes the
// redelivery as attempt 2, and resumes runner-a while attempt 2 runs. It
// returns the stack, both runners and the job id; runner-a has logged that
// its attempt was superseded.
func supersede(t *testing.T, exitA string) (*harness.Stack, *harness.Process, *harness.Process, string) {
	t.Helper()
	s := harness.StartStack(t, harness.StackOptions{RunnerEnv: fencedRunnerEnv, SchedulerEnv: schedulerLostAfter})
	a := s.StartRunner("runner-a", map[string]string{"E2E_EXIT": exitA})
	c := s.Client()
	spec := harness.Command("default", "sh", "-c", "sleep 5; exit ${E2E_EXIT}")
	spec["retry"] = map[string]any{"max_attempts": 5, "initial_backoff": "100ms", "max_backoff": "100ms"}
	job := c.Submit(spec)
	c.WaitFor(job.ID, 30*time.Second, func(j harness.Job) bool { return j.State == "RUNNING" && j.RunnerID == "runner-a" })
	a.Pause()
	b := s.StartRunner("runner-b", map[string]string{"E2E_EXIT": "0"})
	c.WaitFor(job.ID, 30*time.Second, func(j harness.Job) bool { return j.State == "RUNNING" && j.Attempt == 2 })
	a.Resume()
	a.WaitLog("job attempt superseded", 15*time.Second)
	return s, a, b, job.ID
}

// attempts returns the attempts the job's history shows in state.
func attempts(j harness.Job, state string) []int {
	var out []int
	for _, h := range j.History {
		if h.State == state {
			out = append(out, h.Attempt)
		}
	}
	return out
}

// A runner paused past the ack wait whose attempt then fails (retryably)
// neither reports it nor naks the message: the job is not redelivered as
// attempt 3 while attempt 2 runs, and ends once, with attempt 2's outcome.
func TestPausedRunnerStaleFailureIsNotRedelivered(t *testing.T) {
	s, a, b, id := supersede(t, "7")
	c := s.Client()
	done := c.WaitTerminal(id, 30*time.Second)
	require.Equal(t, "SUCCEEDED", done.State, done.String())
	require.Equal(t, 2, done.Attempt, done.String())
	require.Equal(t, "runner-b", done.RunnerID)
	require.Equal(t, []int{1, 2}, attempts(done, "RUNNING"), "no attempt 3: %s", done.String())
	require.NotContains(t, attempts(done, "QUEUED"), 1, "the stale failure was reported: %s", done.String())

	require.Equal(t, 1.0, harness.MetricBy(t, a.Ops, "outpost_runner_jobs_finished_total", "outcome")["superseded"])
	require.Equal(t, 1.0, harness.Metric(t, b.Ops, "outpost_runner_jobs_started_total"))
	require.Never(t, func() bool { return c.Get(id).Attempt != 2 || c.Get(id).State != "SUCCEEDED" }, 3*time.Second, 100*time.Millisecond,
		"the job moved after it ended")
}

// A runner paused past the ack wait whose attempt then succeeds does not
// ack the message (that would remove attempt 2's work); when runner-b,
// holding attempt 2, is killed, the job runs again and ends once.
func TestPausedRunnerStaleSuccessThenCurrentRunnerKilled(t *testing.T) {
	s, a, b, id := supersede(t, "0")
	c := s.Client()
	b.Kill()
	done := c.WaitTerminal(id, 40*time.Second)
	require.Equal(t, "SUCCEEDED", done.State, done.String())
	require.Equal(t, 3, done.Attempt, done.String())
	require.Equal(t, "runner-a", done.RunnerID)
	require.Equal(t, []int{1, 2, 3}, attempts(done, "RUNNING"), done.String())
	require.Equal(t, []int{3}, attempts(done, "SUCCEEDED"), "ended once: %s", done.String())
	require.Equal(t, 1.0, harness.MetricBy(t, a.Ops, "outpost_runner_jobs_finished_total", "outcome")["superseded"])
}

// A RUNNING job whose work message is gone (here purged, as a broker that
// lost its state or a superseded ack would leave it) and whose runner is
// killed is not lost: the scheduler dispatches it again as the next
// attempt within runners.lost_after and a margin, and it ends once.
func TestLostJobIsDispatchedAgain(t *testing.T) {
	s := harness.StartStack(t, harness.StackOptions{RunnerEnv: runnerEnv, SchedulerEnv: schedulerLostAfter})
	a := s.StartRunner("runner-a", nil)
	c := s.Client()
	job := c.Submit(harness.Command("default", "sh", "-c", "sleep 3; echo ok"))
	c.WaitFor(job.ID, 30*time.Second, func(j harness.Job) bool { return j.State == "RUNNING" && j.RunnerID == "runner-a" })
	a.Kill()
	purgeWork(t, s.NATS, "outpost."+s.Tenant+".jobs."+s.Pool)
	s.StartRunner("runner-b", nil)

	lostAt := time.Now()
	done := c.WaitTerminal(job.ID, 40*time.Second)
	require.Equal(t, "SUCCEEDED", done.State, done.String())
	require.Equal(t, 2, done.Attempt, done.String())
	require.Equal(t, "runner-b", done.RunnerID)
	require.Less(t, time.Since(lostAt), 5*time.Second+15*time.Second, "dispatched again too late")
	require.Equal(t, []int{2}, attempts(done, "SUCCEEDED"), "ended once: %s", done.String())
	require.Contains(t, attempts(done, "QUEUED"), 1, "the record shows the lost attempt handed back: %s", done.String())
}

// purgeWork removes every stored message of a work subject from the
// broker, with the control plane's credentials (no agent's may purge).
func purgeWork(t *testing.T, broker *harness.NATS, subject string) {
	t.Helper()
	nc := broker.Observer()
	defer nc.Close()
	js, err := jetstream.New(nc.Conn)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	name, err := js.StreamNameBySubject(ctx, subject)
	require.NoError(t, err)
	stream, err := js.Stream(ctx, name)
	require.NoError(t, err)
	require.NoError(t, stream.Purge(ctx, jetstream.WithPurgeSubject(subject)))
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(subject))
	require.NoError(t, err)
	require.Empty(t, info.State.Subjects, "work messages left on %s", subject)
}
