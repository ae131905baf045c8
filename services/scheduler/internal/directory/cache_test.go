package directory

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
)

// listCounter counts the reads of the whole bucket; while hold is set, a
// read takes its entries, then waits for hold to close before handing
// them out (a read overtaken by a write).
type listCounter struct {
	*kv.Memory
	lists   atomic.Int32
	mu      sync.Mutex
	hold    chan struct{}
	holding chan struct{}
}

func (c *listCounter) List(ctx context.Context, fn func(kv.Entry) bool) error {
	c.lists.Add(1)
	var entries []kv.Entry
	if err := c.Memory.List(ctx, func(e kv.Entry) bool { entries = append(entries, e); return true }); err != nil {
		return err
	}
	c.mu.Lock()
	hold, holding := c.hold, c.holding
	c.hold, c.holding = nil, nil
	c.mu.Unlock()
	if hold != nil {
		close(holding)
		<-hold
	}
	for _, e := range entries {
		if !fn(e) {
			break
		}
	}
	return nil
}

func TestGateCached(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	setup := func(t *testing.T) (store *listCounter, here, other *Store) {
		store = &listCounter{Memory: kv.NewMemory()}
		return store, NewStore(store, "acme"), NewStore(store, "acme")
	}

	t.Run("a pool without a deployment takes every job; one read serves them", func(t *testing.T) {
		store, here, _ := setup(t)
		var wg sync.WaitGroup
		for range 20 {
			wg.Go(func() {
				c, err := here.GateCached(ctx, "pool-a", "bob", "")
				require.NoError(t, err)
				require.Nil(t, c)
			})
		}
		wg.Wait()
		require.EqualValues(t, 1, store.lists.Load())
	})

	t.Run("a deployment registered through this replica applies at once", func(t *testing.T) {
		_, here, _ := setup(t)
		c, err := here.GateCached(ctx, "pool-a", "bob", "")
		require.NoError(t, err)
		require.Nil(t, c)
		_, _, err = here.BindDeployment(ctx, "pool-a", "alice", "", nil, false, now)
		require.NoError(t, err)
		c, err = here.GateCached(ctx, "pool-a", "bob", "")
		require.NoError(t, err)
		require.NotNil(t, c)
		require.False(t, c.Allowed, c.Summary())
		c, err = here.GateCached(ctx, "pool-a", "alice", "")
		require.NoError(t, err)
		require.True(t, c.Allowed)
		require.Equal(t, RuleDeploymentUser, c.Rule)
	})

	t.Run("a change through another replica applies within the TTL", func(t *testing.T) {
		_, here, other := setup(t)
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
		store, here, _ := setup(t)
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
		<-holding // the read has its entries: no deployment yet
		_, _, err := here.BindDeployment(ctx, "pool-a", "alice", "", nil, false, now)
		require.NoError(t, err)
		close(hold)
		require.Nil(t, <-done, "the read began before the deployment existed")
		c, err := here.GateCached(ctx, "pool-a", "bob", "")
		require.NoError(t, err)
		require.NotNil(t, c, "the next job sees the deployment")
		require.False(t, c.Allowed)
		require.EqualValues(t, 2, store.lists.Load())
	})

	t.Run("a bad pool name is refused", func(t *testing.T) {
		_, here, _ := setup(t)
		_, err := here.GateCached(ctx, "no spaces", "bob", "")
		require.ErrorIs(t, err, ErrInvalid)
	})
}
