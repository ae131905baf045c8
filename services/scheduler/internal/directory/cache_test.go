package directory

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
)

// readCounter counts the reads of one key and of the whole bucket; while
// hold is set, the next read of one key takes its value, then waits for
// hold to close before handing it out (a read overtaken by a write).
type readCounter struct {
	*kv.Memory
	gets, lists atomic.Int32
	mu          sync.Mutex
	hold        chan struct{}
	holding     chan struct{}
}

func (c *readCounter) Get(ctx context.Context, key string) (kv.Entry, error) {
	c.gets.Add(1)
	e, err := c.Memory.Get(ctx, key)
	c.mu.Lock()
	hold, holding := c.hold, c.holding
	c.hold, c.holding = nil, nil
	c.mu.Unlock()
	if hold != nil {
		close(holding)
		<-hold
	}
	return e, err
}

func (c *readCounter) List(ctx context.Context, fn func(kv.Entry) bool) error {
	c.lists.Add(1)
	return c.Memory.List(ctx, fn)
}

func TestGateCached(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	setup := func() (store *readCounter, here, other *Store) {
		store = &readCounter{Memory: kv.NewMemory()}
		return store, NewStore(store, "acme"), NewStore(store, "acme")
	}
	// concurrently runs n admissions of a job of user to pool-a at once.
	concurrently := func(t *testing.T, s *Store, n int, user string) []*Check {
		out := make([]*Check, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				c, err := s.GateCached(ctx, "pool-a", user, "")
				require.NoError(t, err)
				out[i] = c
			})
		}
		wg.Wait()
		return out
	}

	t.Run("a pool without a deployment takes every job; one read serves them", func(t *testing.T) {
		store, here, _ := setup()
		for _, c := range concurrently(t, here, 20, "bob") {
			require.Nil(t, c)
		}
		require.EqualValues(t, 1, store.gets.Load())
		require.Zero(t, store.lists.Load(), "no rules to apply: the directory is not read")
	})

	t.Run("the rules read the directory once for many jobs", func(t *testing.T) {
		store, here, _ := setup()
		_, _, err := here.BindDeployment(ctx, "pool-a", "alice", "", nil, false, now)
		require.NoError(t, err)
		gets := store.gets.Load()
		for _, c := range concurrently(t, here, 20, "bob") {
			require.NotNil(t, c)
			require.False(t, c.Allowed, c.Summary())
		}
		for _, c := range concurrently(t, here, 5, "alice") {
			require.True(t, c.Allowed)
			require.Equal(t, RuleDeploymentUser, c.Rule)
		}
		require.EqualValues(t, 1, store.gets.Load()-gets)
		require.EqualValues(t, 1, store.lists.Load())
	})

	t.Run("a deployment registered through this replica applies at once", func(t *testing.T) {
		_, here, _ := setup()
		c, err := here.GateCached(ctx, "pool-a", "bob", "")
		require.NoError(t, err)
		require.Nil(t, c)
		_, _, err = here.BindDeployment(ctx, "pool-a", "alice", "", nil, false, now)
		require.NoError(t, err)
		c, err = here.GateCached(ctx, "pool-a", "bob", "")
		require.NoError(t, err)
		require.NotNil(t, c)
		require.False(t, c.Allowed, c.Summary())
	})

	t.Run("a change through another replica applies within the TTL", func(t *testing.T) {
		_, here, other := setup()
		_, _, err := here.BindDeployment(ctx, "pool-a", "alice", "", nil, false, now)
		require.NoError(t, err)
		c, err := here.GateCached(ctx, "pool-a", "bob", "")
		require.NoError(t, err)
		require.NotNil(t, c)
		require.NoError(t, other.DeleteDeployment(ctx, "pool-a"))
		require.Eventually(t, func() bool {
			c, err := here.GateCached(ctx, "pool-a", "bob", "")
			return err == nil && c == nil
		}, 3*snapshotTTL, 20*time.Millisecond)
	})

	t.Run("a read overtaken by a write through this replica is not kept", func(t *testing.T) {
		store, here, _ := setup()
		hold, holding := make(chan struct{}), make(chan struct{})
		store.mu.Lock()
		store.hold, store.holding = hold, holding
		store.mu.Unlock()
		done := make(chan *Check, 1)
		go func() {
			c, err := here.GateCached(ctx, "pool-a", "bob", "")
			if err != nil {
				t.Error(err)
			}
			done <- c
		}()
		<-holding // the read has its answer: no deployment yet
		_, _, err := here.BindDeployment(ctx, "pool-a", "alice", "", nil, false, now)
		require.NoError(t, err)
		close(hold)
		require.Nil(t, <-done, "the read began before the deployment existed")
		c, err := here.GateCached(ctx, "pool-a", "bob", "")
		require.NoError(t, err)
		require.NotNil(t, c, "the next job sees the deployment")
		require.False(t, c.Allowed)
	})

	t.Run("many pools: stale entries are dropped", func(t *testing.T) {
		_, here, _ := setup()
		for i := range maxCachedPools + 10 {
			_, err := here.GateCached(ctx, fmt.Sprintf("pool-%d", i), "bob", "")
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool {
			_, err := here.GateCached(ctx, "pool-last", "bob", "")
			require.NoError(t, err)
			here.cache.mu.Lock()
			defer here.cache.mu.Unlock()
			return len(here.cache.pools) <= 1
		}, 3*snapshotTTL, 50*time.Millisecond)
	})

	t.Run("a bad pool name is refused", func(t *testing.T) {
		_, here, _ := setup()
		_, err := here.GateCached(ctx, "no spaces", "bob", "")
		require.ErrorIs(t, err, ErrInvalid)
	})
}
