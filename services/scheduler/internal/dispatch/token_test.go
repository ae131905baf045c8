package dispatch

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
)

// A record written before attempt tokens gets one at its dispatch, stored
// before the JobDispatched that carries it is published; a record that has
// one keeps it, also when it is dispatched again. Every dispatch is signed.
func TestDispatchIssuesAndKeepsTheToken(t *testing.T) {
	f := newFixture(t)
	key, err := signing.GenerateKey()
	require.NoError(t, err)
	signer, err := signing.NewSigner("k1", key, 0)
	require.NoError(t, err)
	f.e.opts.Signer = signer
	v, err := signing.NewVerifier(signer.Public())
	require.NoError(t, err)

	spec, err := jobs.NormalizeSpec(&jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}, f.policy)
	require.NoError(t, err)
	legacy := jobs.NewRecord("legacy", "acme", spec, t0, false)
	legacy.AttemptToken = ""
	require.NoError(t, f.t.Jobs.Create(context.Background(), legacy))

	for i := range 2 {
		rec, err := f.t.Jobs.Get(context.Background(), "legacy")
		require.NoError(t, err)
		require.NoError(t, f.e.dispatch(context.Background(), f.t, rec))
		msgs := f.b.published()
		require.Len(t, msgs, i+1)
		m, err := events.DecodeAs[*jobsv1.JobDispatched](msgs[i].Header, msgs[i].Data)
		require.NoError(t, err)
		stored, err := f.t.Jobs.Get(context.Background(), "legacy")
		require.NoError(t, err)
		require.NotEmpty(t, stored.AttemptToken)
		require.Equal(t, stored.AttemptToken, m.GetAttemptToken())
		require.Equal(t, f.token(t, "legacy"), m.GetAttemptToken())
		require.NoError(t, v.Verify(m, msgs[i].Data, "acme", signing.Binding{Tenant: "acme", Scope: signing.PoolScope(stored.Pool), Subject: "legacy", Attempt: 1}))
		if i == 1 {
			first, err := events.DecodeAs[*jobsv1.JobDispatched](msgs[0].Header, msgs[0].Data)
			require.NoError(t, err)
			require.Equal(t, first.GetAttemptToken(), m.GetAttemptToken(), "a second dispatch keeps the token")
		}
	}
}

// A dead-lettered JobDispatched fails its job only when it carries the
// job's attempt token: a forged copy a runner refused leaves the job alone.
func TestDeadLetteredForgeryDoesNotFailTheJob(t *testing.T) {
	tests := []struct {
		name  string
		token func(f *fixture) string
		want  jobs.State
	}{
		{name: "forged", token: func(*fixture) string { return "forged" }, want: jobs.StateQueued},
		{name: "no token", token: func(*fixture) string { return "" }, want: jobs.StateQueued},
		{name: "the dispatch", token: func(f *fixture) string { return f.token(t, "a") }, want: jobs.StateFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			f.create(t, "a")
			m := &jobsv1.JobDispatched{JobId: "a", AttemptToken: tc.token(f)}
			dl := queue.DeadLetter{Reason: "refused: signing: bad signature", Class: queue.ClassRejected, Attempts: 1}
			require.NoError(t, f.e.failDeadLettered(context.Background(), f.t, m, dl))
			rec, err := f.t.Jobs.Get(context.Background(), "a")
			require.NoError(t, err)
			require.Equal(t, tc.want, rec.State)
		})
	}
}
