package sqstest_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue/sqs/sqstest"
)

// TestRestartKeepsTheEndpoint: a fauxqs killed and restarted (SQS taken
// away for a while) answers again on the same endpoint.
func TestRestartKeepsTheEndpoint(t *testing.T) {
	srv := sqstest.Start(t)
	ready := srv.Ready()
	require.NoError(t, ready(t.Context()))
	require.NoError(t, srv.Process.Kill())
	require.Error(t, ready(t.Context()), "nothing answers while it is down")
	require.NoError(t, srv.Process.Restart())
	require.NoError(t, srv.Process.WaitReady(30*time.Second, ready))
}
