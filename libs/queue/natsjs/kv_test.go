package natsjs_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/kv/kvtest"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

func openStore(t *testing.T, bucket string) kv.Store {
	t.Helper()
	s, _ := openStoreWithStream(t, bucket)
	return s
}

// openStoreWithStream opens bucket on a server of its own and returns,
// beside the store, the bucket's stream as a plain JetStream client of
// that server sees it, for the tests that look at the stream itself.
func openStoreWithStream(t *testing.T, bucket string) (kv.Store, func() jetstream.Stream) {
	t.Helper()
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL(), Stack: "kvtest"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenStore(ctx, bucket)
	require.NoError(t, err)
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	stream := func() jetstream.Stream {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		st, err := js.Stream(ctx, "KV_"+s.(*natsjs.Store).Bucket())
		require.NoError(t, err)
		return st
	}
	return s, stream
}

// stores opens a new bucket of c for each conformance test.
func stores(c *natsjs.Conn) kvtest.Open {
	var n atomic.Int64
	return func(t *testing.T) kv.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := c.OpenStore(ctx, fmt.Sprintf("conformance-%d", n.Add(1)))
		require.NoError(t, err)
		return s
	}
}

// TestStoreConformance runs the kv.Store contract (package kvtest), as
// the in-memory store does, on JetStream KV buckets.
func TestStoreConformance(t *testing.T) {
	srv := natstest.RunServer(t)
	kvtest.Run(t, stores(connect(t, natsjs.Config{URL: srv.ClientURL(), Stack: "kvtest"})))
}

func TestStoreListMany(t *testing.T) {
	n := 20_000
	if testing.Short() {
		n = 2_000
	}
	s := openStore(t, "many")
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	var wg sync.WaitGroup
	const workers = 16
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if _, err := s.Create(ctx, fmt.Sprintf("k%06d", i), []byte(strconv.Itoa(i))); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	// Later revisions replace earlier ones in the listing.
	e, err := s.Get(ctx, "k000007")
	require.NoError(t, err)
	_, err = s.Update(ctx, "k000007", []byte("updated"), e.Revision)
	require.NoError(t, err)

	start := time.Now()
	seen := make(map[string]string, n)
	require.NoError(t, s.List(ctx, func(e kv.Entry) bool {
		_, dup := seen[e.Key]
		require.False(t, dup, "key %s listed twice", e.Key)
		seen[e.Key] = string(e.Value)
		return true
	}))
	took := time.Since(start)
	t.Logf("listed %d keys in %s", len(seen), took)
	require.Len(t, seen, n)
	require.Equal(t, "updated", seen["k000007"])
	require.Equal(t, "19", seen["k000019"])
	require.Less(t, took, 20*time.Second)

	// fn returning false stops the listing.
	calls := 0
	require.NoError(t, s.List(ctx, func(kv.Entry) bool { calls++; return calls < 10 }))
	require.Equal(t, 10, calls)
}

// A List pulls the bucket a batch at a time: while its caller holds an
// entry, the broker has sent no more than a batch or two; and it leaves no
// consumer on the bucket's stream behind.
func TestStoreListPullsInBatches(t *testing.T) {
	s, stream := openStoreWithStream(t, "batches")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const n = 3_000
	for i := range n {
		_, err := s.Create(ctx, fmt.Sprintf("k%05d", i), []byte(strconv.Itoa(i)))
		require.NoError(t, err)
	}
	consumers := func() []*jetstream.ConsumerInfo {
		var out []*jetstream.ConsumerInfo
		l := stream().ListConsumers(ctx)
		for ci := range l.Info() {
			out = append(out, ci)
		}
		require.NoError(t, l.Err())
		return out
	}

	listed := 0
	require.NoError(t, s.List(ctx, func(kv.Entry) bool {
		listed++
		if listed == 1 {
			// The broker sends the next batch only as the caller reads:
			// wait for it to have sent what it will, then count.
			var sent uint64
			require.Eventually(t, func() bool {
				cs := consumers()
				if len(cs) != 1 {
					return false
				}
				before := sent
				sent = cs[0].Delivered.Consumer
				return sent > 0 && sent == before
			}, 10*time.Second, 200*time.Millisecond)
			require.LessOrEqual(t, sent, uint64(2*256), "sent ahead of the reader")
		}
		return true
	}))
	require.Equal(t, n, listed)
	require.Eventually(t, func() bool { return len(consumers()) == 0 }, 10*time.Second, 50*time.Millisecond,
		"the listing's consumer was left on the stream")
}

// A delete at any revision leaves nothing of the key in the bucket's
// stream; one at a revision (compare-and-set) leaves its purge marker.
func TestStoreDeleteLeavesNoMarker(t *testing.T) {
	s, stream := openStoreWithStream(t, "deletes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stored := func() uint64 { return stream().CachedInfo().State.Msgs }

	for i := range 100 {
		_, err := s.Create(ctx, fmt.Sprintf("k%03d", i), []byte("v"))
		require.NoError(t, err)
	}
	for i := range 100 {
		require.NoError(t, s.Delete(ctx, fmt.Sprintf("k%03d", i), 0))
	}
	require.Zero(t, stored(), "a delete at any revision left messages")
	_, err := s.Get(ctx, "k007")
	require.ErrorIs(t, err, kv.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, "k007", 0), kv.ErrNotFound)
	_, err = s.Create(ctx, "k007", []byte("again"))
	require.NoError(t, err, "a deleted key is created again")

	rev, err := s.Create(ctx, "cas", []byte("v"))
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "cas", rev))
	require.EqualValues(t, 2, stored(), "k007 and the purge marker of cas")
}

func TestStoreBucketName(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL(), Stack: "my-stack"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenStore(ctx, "jobs.v1")
	require.NoError(t, err)
	require.Equal(t, "MY-STACK_jobs_v1", s.(*natsjs.Store).Bucket())
	// Opening again finds the same data.
	_, err = s.Create(ctx, "a", []byte("1"))
	require.NoError(t, err)
	again, err := c.OpenStore(ctx, "jobs.v1")
	require.NoError(t, err)
	e, err := again.Get(ctx, "a")
	require.NoError(t, err)
	require.Equal(t, "1", string(e.Value))
}

// TestUnavailableWhileTheBrokerIsDown: reads, writes and publishes made
// while the server is gone fail with queue.ErrUnavailable (or a deadline),
// which the APIs answer with 503 and Retry-After rather than 500.
func TestUnavailableWhileTheBrokerIsDown(t *testing.T) {
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL(), Stack: "down"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenStore(ctx, "jobs")
	require.NoError(t, err)
	require.NoError(t, c.EnsureTenant(ctx, "acme", queue.TenantLimits{}))
	srv.Shutdown()

	tests := []struct {
		name string
		op   func(context.Context) error
	}{
		{"get", func(ctx context.Context) error { _, err := s.Get(ctx, "job-1"); return err }},
		{"create", func(ctx context.Context) error { _, err := s.Create(ctx, "job-1", []byte("x")); return err }},
		{"publish", func(ctx context.Context) error {
			return c.Publish(ctx, queue.Message{Subject: queue.NewSubjects("down").Submit("acme"), Data: []byte("x")})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			err := tt.op(ctx)
			require.Error(t, err)
			require.True(t, queue.IsUnavailable(err), "%v", err)
		})
	}
}
