package natsjs

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
)

func (k *staleKeys) has(key string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	_, ok := k.keys[key]
	return ok
}

func TestStaleKeys(t *testing.T) {
	var k staleKeys
	require.False(t, k.take("a"), "nothing marked")
	k.add("a")
	require.True(t, k.take("a"))
	require.False(t, k.take("a"), "a mark serves one read")
	for i := range staleKeysMax {
		k.add(fmt.Sprintf("k%d", i))
	}
	k.add("last")
	require.Len(t, k.keys, 1, "emptied past its bound")
	require.True(t, k.take("last"))
}

// On a replicated bucket, the read after a conflicting write of a key
// goes to the leader (and sees the write that won); other reads are
// direct gets, which a follower may answer also without a quorum.
func TestReplicatedReadAfterConflictGoesToLeader(t *testing.T) {
	nodes := natstest.RunCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	open := func(url string) *Store {
		c, err := Connect(ctx, Config{URL: url, Stack: "stale", Replicas: 3})
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		s, err := c.OpenStore(ctx, "b")
		require.NoError(t, err)
		return s.(*Store)
	}
	a, b := open(nodes[0].ClientURL()), open(nodes[1].ClientURL())

	rev, err := a.Create(ctx, "k", []byte("1"))
	require.NoError(t, err)
	_, err = b.Create(ctx, "k", []byte("x"))
	require.ErrorIs(t, err, kv.ErrExists)
	require.True(t, b.stale.has("k"), "a create that found the key marks it")
	e, err := b.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, rev, e.Revision)
	require.False(t, b.stale.has("k"), "the read took the mark")

	won, err := a.Update(ctx, "k", []byte("2"), rev)
	require.NoError(t, err)
	_, err = b.Update(ctx, "k", []byte("lost"), rev)
	require.ErrorIs(t, err, kv.ErrConflict)
	require.True(t, b.stale.has("k"), "a conflicting update marks the key")
	e, err = b.Get(ctx, "k")
	require.NoError(t, err)
	require.Equal(t, won, e.Revision, "the leader holds the write that won")
	require.Equal(t, "2", string(e.Value))

	require.NoError(t, a.Delete(ctx, "k", e.Revision))
	err = b.Delete(ctx, "k", e.Revision)
	require.Error(t, err)
	_, err = b.Get(ctx, "k")
	require.ErrorIs(t, err, kv.ErrNotFound, "a deleted key, from the leader")
}
