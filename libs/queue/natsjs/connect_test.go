package natsjs_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// startPlainServer starts a NATS server on loopback without JetStream.
func startPlainServer(t *testing.T) *server.Server {
	t.Helper()
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go srv.Start()
	require.True(t, srv.ReadyForConnections(10*time.Second))
	t.Cleanup(srv.Shutdown)
	return srv
}

// A node that says JetStream is not enabled may be one still starting:
// Connect waits for it for a while, and fails with the server's answer
// when it never comes.
func TestConnectWaitsForJetStream(t *testing.T) {
	t.Run("enabled while connecting", func(t *testing.T) {
		srv := startPlainServer(t)
		enabled := make(chan error, 1)
		time.AfterFunc(500*time.Millisecond, func() {
			enabled <- srv.EnableJetStream(&server.JetStreamConfig{StoreDir: t.TempDir()})
		})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := natsjs.Connect(ctx, natsjs.Config{URL: srv.ClientURL(), Logger: testLogger()})
		require.NoError(t, err)
		require.NoError(t, <-enabled)
		require.NoError(t, c.Close())
	})
	t.Run("never enabled", func(t *testing.T) {
		natsjs.SetJetStreamGrace(t, time.Second)
		srv := startPlainServer(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := natsjs.Connect(ctx, natsjs.Config{URL: srv.ClientURL(), Logger: testLogger()})
		require.ErrorIs(t, err, jetstream.ErrJetStreamNotEnabled)
		require.NoError(t, ctx.Err(), "failed on the server's answer, not on the deadline")
	})
}
