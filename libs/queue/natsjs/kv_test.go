package natsjs_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
)

func openStore(t *testing.T, bucket string) kv.Store {
	t.Helper()
	srv := natstest.RunServer(t)
	c := connect(t, natsjs.Config{URL: srv.ClientURL(), Stack: "kvtest"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := c.OpenStore(ctx, bucket)
	require.NoError(t, err)
	return s
}

func TestStoreCreateGetUpdate(t *testing.T) {
	testStoreCRUD(t, openStore(t, "jobs"))
}

func testStoreCRUD(t *testing.T, s kv.Store) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	_, err := s.Get(ctx, "job-1")
	require.ErrorIs(t, err, kv.ErrNotFound)

	rev, err := s.Create(ctx, "job-1", []byte("queued"))
	require.NoError(t, err)
	require.Positive(t, rev)

	_, err = s.Create(ctx, "job-1", []byte("again"))
	require.ErrorIs(t, err, kv.ErrExists)

	e, err := s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, kv.Entry{Key: "job-1", Value: []byte("queued"), Revision: rev}, e)

	rev2, err := s.Update(ctx, "job-1", []byte("running"), rev)
	require.NoError(t, err)
	require.Greater(t, rev2, rev)

	// A writer holding the old revision loses.
	_, err = s.Update(ctx, "job-1", []byte("stale"), rev)
	require.ErrorIs(t, err, kv.ErrConflict)
	_, err = s.Update(ctx, "job-1", []byte("stale"), 0)
	require.ErrorIs(t, err, kv.ErrConflict)
	e, err = s.Get(ctx, "job-1")
	require.NoError(t, err)
	require.Equal(t, "running", string(e.Value))
	require.Equal(t, rev2, e.Revision)

	// Update of a key that never existed is ErrNotFound, not a create.
	_, err = s.Update(ctx, "job-404", []byte("x"), 1)
	require.ErrorIs(t, err, kv.ErrNotFound)
	_, err = s.Update(ctx, "job-404", []byte("x"), 0)
	require.ErrorIs(t, err, kv.ErrNotFound)
	_, err = s.Get(ctx, "job-404")
	require.ErrorIs(t, err, kv.ErrNotFound)

	// Delete is compare-and-set too; a deleted key can be created again.
	require.ErrorIs(t, s.Delete(ctx, "job-1", rev), kv.ErrConflict)
	require.NoError(t, s.Delete(ctx, "job-1", rev2))
	_, err = s.Get(ctx, "job-1")
	require.ErrorIs(t, err, kv.ErrNotFound)
	require.ErrorIs(t, s.Delete(ctx, "job-1", 0), kv.ErrNotFound)
	_, err = s.Create(ctx, "job-1", []byte("again"))
	require.NoError(t, err)
	require.NoError(t, s.Delete(ctx, "job-1", 0))
	// A list reads the bucket with an ordered consumer, which a
	// replicated bucket may place on a follower a moment behind the
	// leader: the deleted key leaves the list once the follower has the
	// delete.
	listed := -1
	require.Eventually(t, func() bool {
		n := 0
		if err := s.List(ctx, func(kv.Entry) bool { n++; return true }); err != nil {
			return false
		}
		listed = n
		return n == 0
	}, 10*time.Second, 20*time.Millisecond, "a deleted key is not listed (last list had %d)", listed)
}

func TestStoreMutateUnderContention(t *testing.T) {
	s := openStore(t, "counters")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := s.Create(ctx, "n", []byte("0"))
	require.NoError(t, err)

	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				_, err := kv.Mutate(ctx, s, "n", 100, func(cur []byte) ([]byte, bool, error) {
					n, err := strconv.Atoi(string(cur))
					return []byte(strconv.Itoa(n + 1)), true, err
				})
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	e, err := s.Get(ctx, "n")
	require.NoError(t, err)
	require.Equal(t, strconv.Itoa(writers*each), string(e.Value), "no increment lost")
}

func TestStoreListEmpty(t *testing.T) {
	s := openStore(t, "empty")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := 0
	require.NoError(t, s.List(ctx, func(kv.Entry) bool { n++; return true }))
	require.Zero(t, n)
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
