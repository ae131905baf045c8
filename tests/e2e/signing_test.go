package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/signing"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/tests/harness"
)

// Forged jobs: unsigned, signed by a key the runner does not trust, and a
// signed job with its command changed. An agent's credentials (a second
// runner of the same tenant and pool, issued by the control plane) may not
// publish to a pool's queue at all: the broker refuses it. Published with
// broker credentials that may (the control plane's, as a leaked one would),
// the runner runs none of them (each would create a file) and dead-letters
// them with the reason. The second runner's credentials may report job
// status: it reports a job the runner is running as SUCCEEDED at attempt
// 999, without the dispatch's attempt token; the record does not change,
// and the job ends with the runner's own outcome.
func TestForgedWorkIsRefused(t *testing.T) {
	s := harness.StartStack(t, harness.StackOptions{RunnerEnv: runnerEnv})
	runner := s.StartRunner("runner-1", nil)
	c := s.Client()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn, err := natsjs.Connect(ctx, natsjs.Config{URL: s.BrokerURL, Credentials: s.NATS.ObserverCreds()})
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	forger := s.IssueAgent(harness.AgentRequest{Role: "runner", Tenant: s.Tenant, Pool: s.Pool, Name: "forger"})
	forgerConn, err := natsjs.Connect(ctx, natsjs.Config{URL: s.BrokerURL, Credentials: forger.File})
	require.NoError(t, err)
	defer func() { _ = forgerConn.Close() }()
	forgerRaw := s.NATS.Dial(forger.File)
	subjects := conn.Subjects()
	stranger := harness.NewSigningKey(t, "stranger-1")

	job := func(id string) *jobsv1.JobDispatched {
		return &jobsv1.JobDispatched{
			Envelope: events.NewEnvelope(s.Tenant, 1, id, ""), JobId: id, AttemptToken: "forged",
			Spec: &jobsv1.JobSpec{Pool: s.Pool, Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{
				Command: "sh", Args: []string{"-c", "touch " + filepath.Join(dir, id)},
			}}}},
		}
	}
	bind := func(id string) signing.Binding {
		return signing.Binding{Tenant: s.Tenant, Scope: signing.PoolScope(s.Pool), Subject: id, Attempt: 1}
	}
	forged := map[string]*jobsv1.JobDispatched{"forged-unsigned": job("forged-unsigned")}
	j := job("forged-stranger")
	require.NoError(t, stranger.Signer.Sign(j, bind(j.JobId)))
	forged[j.JobId] = j
	j = job("forged-tampered")
	require.NoError(t, s.Key.Signer.Sign(j, bind(j.JobId)))
	j.GetSpec().GetTask().GetCommand().Args[1] = "touch " + filepath.Join(dir, "forged-tampered") + "; echo changed"
	forged[j.JobId] = j
	for id, m := range forged {
		msg, err := events.Encode(subjects.Jobs(s.Tenant, s.Pool), m, id)
		require.NoError(t, err)
		require.NoError(t, forgerRaw.Publish(msg.Subject, msg.Data))
		require.NoError(t, forgerRaw.Flush())
		forgerRaw.WaitViolated(t, msg.Subject)
		require.NoError(t, conn.Publish(ctx, msg))
	}
	require.Eventually(t, func() bool {
		by, err := harness.ScrapeBy(runner.Ops, "outpost_runner_refused_jobs_total", "reason")
		return err == nil && by[signing.ReasonUnsigned] == 1 && by[signing.ReasonUnknownKey] == 1 && by[signing.ReasonBadSignature] == 1
	}, 30*time.Second, 50*time.Millisecond, "the forged jobs were not all refused")
	for id := range forged {
		require.NoFileExists(t, filepath.Join(dir, id))
	}
	require.Zero(t, harness.Metric(t, runner.Ops, "outpost_runner_jobs_started_total"))

	real := c.Submit(harness.Command(s.Pool, "sh", "-c", "sleep 2; touch "+filepath.Join(dir, "real")))
	c.WaitFor(real.ID, 30*time.Second, func(j harness.Job) bool { return j.State == "RUNNING" })
	msg, err := events.Encode(subjects.JobStatus(s.Tenant, real.ID), &jobsv1.JobStatus{
		Envelope: events.NewEnvelope(s.Tenant, 999, "", ""), JobId: real.ID,
		State: jobsv1.JobState_JOB_STATE_SUCCEEDED, RunnerId: "forger",
	}, "")
	require.NoError(t, err)
	require.NoError(t, forgerConn.Publish(ctx, msg))
	require.Eventually(t, func() bool {
		by, err := harness.ScrapeBy(s.Ops, "outpost_fenced_events_total", "reason")
		return err == nil && by["attempt_token"] == 1
	}, 30*time.Second, 50*time.Millisecond, "the forged status was not rejected")
	done := c.WaitTerminal(real.ID, 30*time.Second)
	require.Equal(t, "SUCCEEDED", done.State, done.String())
	require.Equal(t, 1, done.Attempt)
	require.Equal(t, "runner-1", done.RunnerID)
	require.FileExists(t, filepath.Join(dir, "real"))
	for _, h := range done.History {
		require.NotEqual(t, 999, h.Attempt, "the forged status is in the history: %+v", done.History)
	}
}
