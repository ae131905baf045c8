package app_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/app"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/config"
)

// publishJob publishes job on the default pool's queue as it is.
func (e *env) publishJob(t *testing.T, job *jobsv1.JobDispatched) {
	t.Helper()
	msg, err := events.Encode(e.subj.Jobs(tenant, "default"), job, job.GetJobId())
	require.NoError(t, err)
	require.NoError(t, e.conn.Publish(context.Background(), msg))
}

// Jobs the control plane did not sign, as sent, for this tenant and pool
// are dead-lettered with the reason and never run: each would create a
// file, which must not exist.
func TestUnverifiedJobsAreRefused(t *testing.T) {
	e := newEnv(t)
	tr := e.startRunner(t, runnerConfig(t, "r1"))
	dir := t.TempDir()
	stranger := newSigner("stranger-1")

	job := func(id string) *jobsv1.JobDispatched {
		return &jobsv1.JobDispatched{
			Envelope: events.NewEnvelope(tenant, 1, id, ""), JobId: id, AttemptToken: "token-" + id,
			Spec: command("touch " + filepath.Join(dir, id)),
		}
	}
	tests := []struct {
		name   string
		job    func(id string) *jobsv1.JobDispatched
		reason string
		label  string
	}{
		{name: "unsigned", job: job, reason: "not signed", label: signing.ReasonUnsigned},
		{name: "tampered", job: func(id string) *jobsv1.JobDispatched {
			j := sign(t, testKey, job(id))
			j.GetSpec().GetTask().GetCommand().Args[1] += "; touch " + filepath.Join(dir, id)
			return j
		}, reason: "bad signature", label: signing.ReasonBadSignature},
		{name: "expired", job: func(id string) *jobsv1.JobDispatched {
			old := testKey.WithClock(func() time.Time { return time.Now().Add(-2 * time.Hour) })
			return sign(t, old, job(id))
		}, reason: "signature expired", label: signing.ReasonExpired},
		{name: "unknown key", job: func(id string) *jobsv1.JobDispatched {
			return sign(t, stranger, job(id))
		}, reason: "unknown signing key", label: signing.ReasonUnknownKey},
		{name: "other pool", job: func(id string) *jobsv1.JobDispatched {
			j := job(id)
			require.NoError(t, testKey.Sign(j, signing.Binding{Tenant: tenant, Scope: signing.PoolScope("gpu"), Subject: id, Attempt: 1}))
			return j
		}, reason: "another pool or zone", label: signing.ReasonWrongScope},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := "refused-" + string(rune('a'+i))
			e.publishJob(t, tc.job(id))
			var dead []queue.StreamMessage
			require.Eventually(t, func() bool {
				dead = nil
				for _, m := range e.dlq.on(e.subj.DeadLetter(tenant, queue.RoleJobs)) {
					if j, err := events.DecodeAs[*jobsv1.JobDispatched](m.Header, m.Data); err == nil && j.GetJobId() == id {
						dead = append(dead, m)
					}
				}
				return len(dead) == 1
			}, 10*time.Second, 20*time.Millisecond)
			require.Contains(t, dead[0].Header[queue.HeaderDeadLetterReason], "refused: ")
			require.Contains(t, dead[0].Header[queue.HeaderDeadLetterReason], tc.reason)
			require.Equal(t, 1.0, testutil.ToFloat64(tr.metrics.RefusedJobs.WithLabelValues(tc.label)))
			require.NoFileExists(t, filepath.Join(dir, id))
			require.Empty(t, e.status.on(e.subj.JobStatus(tenant, id)), "a refused job reports nothing")
		})
	}
	require.Zero(t, testutil.ToFloat64(tr.metrics.JobsStarted))
}

// Key rotation: a runner trusting the old and the new key runs a job
// signed by the new one, and still one signed by the old one.
func TestKeyRotation(t *testing.T) {
	e := newEnv(t)
	next := newSigner("test-2")
	cfg := runnerConfig(t, "r1")
	cfg.Signing.TrustedKeys = append(cfg.Signing.TrustedKeys, next.Public().String())
	e.startRunner(t, cfg)
	dir := t.TempDir()

	for _, s := range []*signing.Signer{next, testKey} {
		id := "rotated-" + s.KeyID()
		e.publishJob(t, sign(t, s, &jobsv1.JobDispatched{
			Envelope: events.NewEnvelope(tenant, 1, id, ""), JobId: id, AttemptToken: "token-" + id,
			Spec: command("touch " + filepath.Join(dir, id)),
		}))
		sts := e.waitStates(t, id, "RUNNING@1/r1", "SUCCEEDED@1/r1")
		require.FileExists(t, filepath.Join(dir, id))
		for _, st := range sts {
			require.Equal(t, "token-"+id, st.GetAttemptToken(), "the runner echoes the dispatch's token")
		}
	}
	require.Empty(t, e.dlq.on(""))
}

// A runner without trusted keys refuses to start unless unsigned work is
// allowed explicitly.
func TestNoTrustedKeys(t *testing.T) {
	cfg := config.Default()
	cfg.Tenant = tenant
	cfg.OpsAddr = "127.0.0.1:0"
	err := app.Run(context.Background(), cfg, discard)
	require.ErrorIs(t, err, signing.ErrNoTrustedKeys)

	cfg.Signing.TrustedKeysFile = filepath.Join(t.TempDir(), "missing.pub")
	require.ErrorIs(t, app.Run(context.Background(), cfg, discard), os.ErrNotExist)
}
