package kv

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// countingStore counts the reads that reach the store.
type countingStore struct {
	*Memory
	gets atomic.Int64
}

func (s *countingStore) Get(ctx context.Context, key string) (Entry, error) {
	s.gets.Add(1)
	return s.Memory.Get(ctx, key)
}

// counter is a record of the tests: a number behind a pointer, so that a
// copy that shares it would show.
type counter struct{ n *int }

// codec counts its decodes.
func codec(decodes *atomic.Int64) Codec[counter] {
	return Codec[counter]{
		Encode: func(c counter) ([]byte, error) { return []byte(strconv.Itoa(*c.n)), nil },
		Decode: func(b []byte) (counter, error) {
			decodes.Add(1)
			n, err := strconv.Atoi(string(b))
			return counter{n: &n}, err
		},
		Clone: func(c counter) counter { n := *c.n; return counter{n: &n} },
	}
}

func count(n int) counter { return counter{n: &n} }

func increment(c counter) (bool, error) {
	*c.n++
	return true, nil
}

func TestCache(t *testing.T) {
	ctx := context.Background()

	t.Run("a key this process wrote last is updated without a read or a decode", func(t *testing.T) {
		s := &countingStore{Memory: NewMemory()}
		var decodes atomic.Int64
		c := NewCache(10, codec(&decodes))
		require.NoError(t, c.Create(ctx, s, "k", count(0)))
		for i := range 3 {
			v, wrote, err := c.Mutate(ctx, s, "k", 5, increment)
			require.NoError(t, err)
			require.True(t, wrote)
			require.Equal(t, i+1, *v.n)
		}
		require.Zero(t, s.gets.Load())
		require.Zero(t, decodes.Load())
		got, err := s.Memory.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, "3", string(got.Value))
	})

	t.Run("a write by someone else is seen through the conflict", func(t *testing.T) {
		s := &countingStore{Memory: NewMemory()}
		var decodes atomic.Int64
		c := NewCache(10, codec(&decodes))
		require.NoError(t, c.Create(ctx, s, "k", count(0)))
		e, err := s.Memory.Get(ctx, "k")
		require.NoError(t, err)
		_, err = s.Update(ctx, "k", []byte("10"), e.Revision) // another replica
		require.NoError(t, err)

		v, wrote, err := c.Mutate(ctx, s, "k", 5, increment)
		require.NoError(t, err)
		require.True(t, wrote)
		require.Equal(t, 11, *v.n, "applied to the other replica's value, not the remembered one")
		require.EqualValues(t, 1, s.gets.Load())
		require.EqualValues(t, 1, decodes.Load())
	})

	t.Run("no write asked for is confirmed by a fresh read", func(t *testing.T) {
		s := &countingStore{Memory: NewMemory()}
		var decodes atomic.Int64
		c := NewCache(10, codec(&decodes))
		rev, err := s.Create(ctx, "k", []byte("7"))
		require.NoError(t, err)
		c.remember("k", rev-1, count(6)) // stale
		var seen []int
		v, wrote, err := c.Mutate(ctx, s, "k", 5, func(c counter) (bool, error) {
			seen = append(seen, *c.n)
			return false, nil
		})
		require.NoError(t, err)
		require.False(t, wrote)
		require.Equal(t, 7, *v.n)
		require.Equal(t, []int{6, 7}, seen)
	})

	t.Run("values handed out are copies, decoded only when the revision moved", func(t *testing.T) {
		s := &countingStore{Memory: NewMemory()}
		var decodes atomic.Int64
		c := NewCache(10, codec(&decodes))
		require.NoError(t, c.Create(ctx, s, "k", count(1)))
		v, err := c.Get(ctx, s, "k")
		require.NoError(t, err)
		require.Equal(t, 1, *v.n)
		require.Zero(t, decodes.Load(), "the remembered revision: no decode")
		*v.n = 99 // the caller's copy
		again, err := c.Get(ctx, s, "k")
		require.NoError(t, err)
		require.Equal(t, 1, *again.n, "the cache kept its own")

		e, err := s.Memory.Get(ctx, "k")
		require.NoError(t, err)
		_, err = s.Update(ctx, "k", []byte("5"), e.Revision)
		require.NoError(t, err)
		moved, err := s.Memory.Get(ctx, "k")
		require.NoError(t, err)
		d, err := c.Decode(moved)
		require.NoError(t, err)
		require.Equal(t, 5, *d.n)
		require.EqualValues(t, 1, decodes.Load())
	})

	t.Run("an older revision does not replace a newer one", func(t *testing.T) {
		var decodes atomic.Int64
		c := NewCache(10, codec(&decodes))
		c.remember("k", 5, count(5))
		c.remember("k", 3, count(3))
		v, rev, ok := c.lookup("k")
		require.True(t, ok)
		require.Equal(t, uint64(5), rev)
		require.Equal(t, 5, *v.n)
	})

	t.Run("the oldest key is forgotten first", func(t *testing.T) {
		var decodes atomic.Int64
		c := NewCache(2, codec(&decodes))
		c.remember("a", 1, count(0))
		c.remember("b", 1, count(0))
		c.remember("a", 2, count(0)) // an update keeps its place
		c.remember("c", 1, count(0))
		_, _, okA := c.lookup("a")
		_, _, okB := c.lookup("b")
		_, _, okC := c.lookup("c")
		require.Equal(t, []bool{false, true, true}, []bool{okA, okB, okC})
	})

	t.Run("a missing key is ErrNotFound", func(t *testing.T) {
		var decodes atomic.Int64
		_, _, err := NewCache(1, codec(&decodes)).Mutate(ctx, NewMemory(), "nope", 3, increment)
		require.ErrorIs(t, err, ErrNotFound)
	})
}
