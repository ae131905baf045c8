package natsembed_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsembed"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/testenv"
)

func jsConnect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func TestRestartKeepsMessages(t *testing.T) {
	srv := natstest.RunServer(t)
	url := srv.ClientURL()
	js := jsConnect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "KEEP", Subjects: []string{"keep.>"}, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	for _, m := range []string{"one", "two", "three"} {
		_, err := js.Publish(ctx, "keep."+m, []byte(m))
		require.NoError(t, err)
	}

	require.NoError(t, srv.Restart())
	require.True(t, srv.Running())
	require.Equal(t, url, srv.ClientURL(), "a restart keeps the port")

	// The old client reconnects on its own and finds the messages.
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "KEEP")
		return err == nil && s.CachedInfo().State.Msgs == 3
	}, 15*time.Second, 50*time.Millisecond)
	_, err = js.Publish(ctx, "keep.four", []byte("four"))
	require.NoError(t, err)
	s, err := js.Stream(ctx, "KEEP")
	require.NoError(t, err)
	msg, err := s.GetMsg(ctx, 2)
	require.NoError(t, err)
	require.Equal(t, "two", string(msg.Data))
	require.Equal(t, uint64(4), s.CachedInfo().State.LastSeq)
}

func TestStopThenRestart(t *testing.T) {
	srv := natstest.RunServer(t)
	js := jsConnect(t, srv.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s"}})
	require.NoError(t, err)

	srv.Stop()
	require.False(t, srv.Running())
	require.NoError(t, srv.Restart())
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := js.Stream(ctx, "S")
		return err == nil
	}, 15*time.Second, 50*time.Millisecond)
}

func TestShutdownRemovesTempDataDir(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Options{Port: natsembed.RandomPort})
	require.NoError(t, err)
	dir := srv.DataDir()
	require.DirExists(t, dir)
	srv.Shutdown()
	require.NoDirExists(t, dir)
	require.ErrorIs(t, srv.Restart(), natsembed.ErrShutdown)
	srv.Shutdown() // idempotent
}

func TestDefaultsListenOnLoopback(t *testing.T) {
	srv := natstest.RunServer(t)
	require.True(t, strings.HasPrefix(srv.ClientURL(), "nats://127.0.0.1:"), srv.ClientURL())
	o := srv.Options()
	require.NotEqual(t, natsembed.RandomPort, o.Port, "the random port is resolved")
	require.Equal(t, "outpost", o.ServerName)
}

func TestMaxPayload(t *testing.T) {
	srv := natstest.RunServerWith(t, natsembed.Options{MaxPayload: 2048})
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	defer nc.Close()
	require.Equal(t, int64(2048), nc.MaxPayload())
}

func TestLoggerReceivesServerLines(t *testing.T) {
	var buf testenv.SyncBuffer
	srv := natstest.RunServerWith(t, natsembed.Options{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	require.True(t, srv.Running())
	out := buf.String()
	require.Contains(t, out, "msg=nats-server")
	require.Contains(t, out, "Server is ready")
}

func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	nodes := natstest.RunCluster(t, 3)
	url := natstest.URL(nodes...)
	require.Equal(t, 3, strings.Count(url, "nats://"))
	js := jsConnect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "R3", Subjects: []string{"r3"}, Replicas: 3, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	// The new stream answers once its replicas have elected a leader: until
	// then a publish has no responders, which it retries (for up to 20 s).
	_, err = js.Publish(ctx, "r3", []byte("x"), jetstream.WithRetryWait(100*time.Millisecond), jetstream.WithRetryAttempts(200))
	require.NoError(t, err)

	// Restart one node: it comes back on the same ports and rejoins.
	require.NoError(t, nodes[1].Restart())
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		s, err := js.Stream(ctx, "R3")
		if err != nil {
			return false
		}
		ci := s.CachedInfo().Cluster
		if ci == nil || len(ci.Replicas) != 2 {
			return false
		}
		for _, r := range ci.Replicas {
			if !r.Current {
				return false
			}
		}
		return true
	}, 20*time.Second, 100*time.Millisecond)
}

func TestStartRefusesBadAuthAndTLS(t *testing.T) {
	for name, opts := range map[string]natsembed.Options{
		"tls without key":         {TLS: &natsembed.TLS{Cert: "cert.pem"}},
		"tls with missing files":  {TLS: &natsembed.TLS{Cert: "missing.pem", Key: "missing-key.pem"}},
		"operator jwt unreadable": {Auth: &natsembed.Auth{OperatorJWT: "not a jwt", SystemAccount: "A"}},
	} {
		t.Run(name, func(t *testing.T) {
			opts.Port, opts.DataDir = natsembed.RandomPort, t.TempDir()
			_, err := natsembed.Start(opts)
			require.ErrorIs(t, err, natsembed.ErrAuthConfig)
		})
	}
}
