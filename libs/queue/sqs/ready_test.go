package sqs_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/sqs"
	"github.com/outposthq/outpost/libs/queue/sqs/sqstest"
)

// A broker whose SQS stops answering (the server killed) is not ready
// after its next request, and ready again after the first answer once the
// server is back on the same endpoint — also when the outage lasted long
// enough for the liveness probe to give up: the answer counts at once, not
// at the next probe.
func TestReadyFollowsTheEndpoint(t *testing.T) {
	s := sqstest.StartWith(t, sqstest.Options{DataDir: t.TempDir()})
	b := sqstest.Connect(t, s, sqs.Config{})
	ctx := ctxFor(t)
	require.NoError(t, b.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	msg := queue.Message{Subject: b.Subjects().Submit("acme"), Data: []byte("x")}
	require.NoError(t, b.Publish(ctx, msg))
	require.True(t, b.Ready())

	require.NoError(t, s.Process.Kill())
	require.Error(t, b.Publish(ctx, msg))
	require.False(t, b.Ready(), "ready while SQS does not answer")
	require.Eventually(t, b.LivenessDown, 20*time.Second, 50*time.Millisecond, "the liveness probe never saw the outage")

	require.NoError(t, s.Process.Restart())
	require.NoError(t, s.Process.WaitReady(30*time.Second, s.Ready()))
	require.NoError(t, b.Publish(ctx, msg))
	require.True(t, b.Ready(), "not ready after SQS answered again")
}

// A broker whose SQS endpoint hangs (the server paused: connections are
// accepted, nothing answers) is not ready within a few probe intervals,
// though no request of its own fails, and ready again once it answers.
func TestReadyFollowsAHungEndpoint(t *testing.T) {
	s := sqstest.StartWith(t, sqstest.Options{DataDir: t.TempDir()})
	b := sqstest.Connect(t, s, sqs.Config{})
	require.True(t, b.Ready())

	require.NoError(t, s.Process.Pause())
	t.Cleanup(func() { _ = s.Process.Resume() })
	require.Eventually(t, func() bool { return !b.Ready() }, 20*time.Second, 50*time.Millisecond, "ready while SQS hangs")

	require.NoError(t, s.Process.Resume())
	require.Eventually(t, b.Ready, 20*time.Second, 50*time.Millisecond, "not ready after SQS answered again")
}
