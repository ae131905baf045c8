package natsjs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

// TestPublishRidesOutLeaderElection moves the leader of a replicated work
// stream and of a KV bucket several times while messages are published and
// records written, then stops the node that leads the stream: every
// publish and write must succeed (they are retried
// while no stream answers) and every message must be stored exactly once.
func TestPublishRidesOutLeaderElection(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	nodes := natstest.RunCluster(t, 3)
	c := connect(t, natsjs.Config{URL: natstest.URL(nodes...), Stack: "election", Replicas: 3})
	ctx := testCtx(t)
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	store, err := c.OpenStore(ctx, "records")
	require.NoError(t, err)
	subjects := c.Subjects()
	subject := subjects.Jobs("acme", "default")
	stream := c.StreamName("acme", queue.RoleJobs)
	kvStream := "KV_" + store.(*natsjs.Store).Bucket()

	// EnsureTenant and OpenStore return once the streams have leaders.
	for _, name := range []string{stream, kvStream} {
		require.NotEmpty(t, streamLeader(t, c, name), name)
	}

	const (
		messages  = 200
		stepdowns = 3
		stopBatch = 20
	)
	var wg sync.WaitGroup
	errs := make(chan error, 2*messages)
	wg.Go(func() {
		for i := range messages {
			msg := queue.Message{Subject: subject, Data: []byte(fmt.Sprint(i)), DedupeID: fmt.Sprint("m", i)}
			if err := c.Publish(ctx, msg); err != nil {
				errs <- fmt.Errorf("publish %d: %w", i, err)
			}
			if _, err := store.Create(ctx, fmt.Sprint("k", i), []byte("v")); err != nil {
				errs <- fmt.Errorf("create %d: %w", i, err)
			}
		}
	})
	for range stepdowns {
		for _, name := range []string{stream, kvStream} {
			before := streamLeader(t, c, name)
			stepDown(t, c, name)
			require.Eventually(t, func() bool {
				l := streamLeader(t, c, name)
				return l != "" && l != before
			}, 20*time.Second, 50*time.Millisecond, "a new leader for %s", name)
		}
	}
	wg.Wait()

	// The node that leads the work stream stops: until the other two
	// elect a leader, nothing answers the stream's subjects.
	leader := streamLeader(t, c, stream)
	var stopped bool
	for _, n := range nodes {
		if n.Name() == leader {
			n.Stop()
			stopped = true
			t.Cleanup(func() { _ = n.Restart() })
		}
	}
	require.True(t, stopped, "leader %q is one of the nodes", leader)
	for i := messages; i < messages+stopBatch; i++ {
		msg := queue.Message{Subject: subject, Data: []byte(fmt.Sprint(i)), DedupeID: fmt.Sprint("m", i)}
		require.NoError(t, c.Publish(ctx, msg), "publish %d with the leader's node stopped", i)
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	js, err := jetstream.New(c.NATS())
	require.NoError(t, err)
	s, err := js.Stream(ctx, stream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	require.EqualValues(t, messages+stopBatch, info.State.Msgs, "every message stored once")
	n := 0
	require.NoError(t, store.List(ctx, func(kv.Entry) bool { n++; return true }))
	require.Equal(t, messages, n)
}

// streamLeader is the name of the stream's leader, "" while it has none.
func streamLeader(t *testing.T, c *natsjs.Conn, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	js, err := jetstream.New(c.NATS())
	require.NoError(t, err)
	s, err := js.Stream(ctx, name)
	if err != nil {
		return ""
	}
	if cl := s.CachedInfo().Cluster; cl != nil {
		return cl.Leader
	}
	return ""
}

// stepDown asks the stream's leader to step down, as an operator (or a
// node leaving) would.
func stepDown(t *testing.T, c *natsjs.Conn, name string) {
	t.Helper()
	resp, err := c.NATS().Request(fmt.Sprintf(jetstream.DefaultAPIPrefix+"STREAM.LEADER.STEPDOWN.%s", name), nil, 5*time.Second)
	require.NoError(t, err)
	var r struct {
		Success bool `json:"success"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	require.NoError(t, json.Unmarshal(resp.Data, &r))
	require.True(t, r.Success, "step down %s: %+v", name, r.Error)
}
