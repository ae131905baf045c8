package sqstest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/sqs"
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

// TestDataDirKeepsMessagesThroughAKill: a fauxqs with a DataDir, killed
// with SIGKILL and restarted, still has its queues and the messages no one
// took.
func TestDataDirKeepsMessagesThroughAKill(t *testing.T) {
	srv := sqstest.StartWith(t, sqstest.Options{DataDir: t.TempDir()})
	b := sqstest.Connect(t, srv, sqs.Config{Stack: "persist", WaitTime: time.Second})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.NoError(t, b.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	subject := b.Subjects().Jobs("acme", "default")
	require.NoError(t, b.Publish(ctx, queue.Message{Subject: subject, Data: []byte("kept")}))

	require.NoError(t, srv.Process.Kill())
	require.NoError(t, srv.Process.Restart())
	require.NoError(t, srv.Process.WaitReady(30*time.Second, srv.Ready()))

	got := make(chan []byte, 1)
	c, err := b.Consume(ctx, queue.ConsumerConfig{Name: "persist", Subject: subject},
		func(ctx context.Context, d queue.Delivery) {
			_ = d.Ack(ctx)
			select {
			case got <- d.Data():
			default:
			}
		})
	require.NoError(t, err)
	defer func() { _ = c.Stop(context.Background()) }()
	select {
	case data := <-got:
		require.Equal(t, []byte("kept"), data)
	case <-ctx.Done():
		t.Fatal("the message published before the kill never came back")
	}
}
