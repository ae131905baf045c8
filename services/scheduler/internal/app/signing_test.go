package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/dispatch"
)

// Every JobDispatched is signed for its tenant and pool and carries a
// fresh attempt token; a status, log or records event with another token
// (a broker client reporting attempt 999 SUCCEEDED) is dead-lettered with
// the reason and changes nothing; the runner's own events apply.
func TestSignedDispatchAndForgedStatus(t *testing.T) {
	e := newEnv(t)
	r := e.runner("default", "default")
	j := e.submit("", noopJob(nil))
	d, m := r.next(t)

	v, err := signing.NewVerifier(testSigner.Public())
	require.NoError(t, err)
	b := signing.Binding{Tenant: "default", Scope: signing.PoolScope("default"), Subject: j.ID, Attempt: 1}
	require.NoError(t, v.Verify(m, d.Data(), m.GetEnvelope().GetTenant(), b))
	require.Len(t, m.GetAttemptToken(), 22, "128 random bits, base64url")
	require.Equal(t, m.GetAttemptToken(), e.attemptToken("default", j.ID), "the record keeps the dispatch's token")
	for _, path := range []string{"/api/v1/jobs/" + j.ID, "/api/v1/jobs"} {
		_, out := e.do("GET", path, "", nil)
		require.Contains(t, string(out), j.ID)
		require.NotContains(t, string(out), m.GetAttemptToken(), "the API shows no attempt token")
	}

	other := e.submit("", noopJob(nil))
	_, m2 := r.next(t)
	require.NotEqual(t, m.GetAttemptToken(), m2.GetAttemptToken(), "each dispatch has its own token")
	require.Equal(t, other.ID, m2.GetJobId())

	tests := []struct {
		name  string
		token string
	}{
		{name: "no token", token: ""},
		{name: "another job's token", token: m2.GetAttemptToken()},
		{name: "made up", token: "AAAAAAAAAAAAAAAAAAAAAA"},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.publish(e.subjects.JobStatus("default", j.ID), &jobsv1.JobStatus{
				Envelope: events.NewEnvelope("default", 999, "", ""), JobId: j.ID, State: jobsv1.JobState_JOB_STATE_SUCCEEDED,
				RunnerId: "forger", AttemptToken: tc.token,
			}, "")
			require.Eventually(t, func() bool {
				return len(e.read(e.subjects.DeadLetter("default", queue.RoleJobEvents))) == i+1
			}, waitFor, tick)
			dl := e.read(e.subjects.DeadLetter("default", queue.RoleJobEvents))[i]
			require.Equal(t, dispatch.ReasonAttemptToken, dl.Header[queue.HeaderDeadLetterReason])
			got := e.job("", j.ID)
			require.Equal(t, "QUEUED", got.State)
			require.Zero(t, got.Attempt)
			require.Empty(t, got.RunnerID)
		})
	}
	require.Equal(t, float64(len(tests)), e.metric("outpost_fenced_events_total", map[string]string{"reason": "attempt_token"}))

	// The runner of the dispatch echoes its token: that applies.
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1)
	e.waitState("default", j.ID, "SUCCEEDED")
}
