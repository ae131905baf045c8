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

func increment(cur []byte) ([]byte, bool, error) {
	n, err := strconv.Atoi(string(cur))
	if err != nil {
		return nil, false, err
	}
	return []byte(strconv.Itoa(n + 1)), true, nil
}

func TestRevisionCache(t *testing.T) {
	ctx := context.Background()

	t.Run("a key this process wrote last is updated without a read", func(t *testing.T) {
		s := &countingStore{Memory: NewMemory()}
		c := NewRevisionCache(10)
		rev, err := s.Create(ctx, "k", []byte("0"))
		require.NoError(t, err)
		c.Remember(Entry{Key: "k", Value: []byte("0"), Revision: rev})
		for range 3 {
			_, err := c.Mutate(ctx, s, "k", 5, increment)
			require.NoError(t, err)
		}
		require.Zero(t, s.gets.Load())
		got, err := s.Memory.Get(ctx, "k")
		require.NoError(t, err)
		require.Equal(t, "3", string(got.Value))
	})

	t.Run("a write by someone else is seen through the conflict", func(t *testing.T) {
		s := &countingStore{Memory: NewMemory()}
		c := NewRevisionCache(10)
		rev, err := s.Create(ctx, "k", []byte("0"))
		require.NoError(t, err)
		c.Remember(Entry{Key: "k", Value: []byte("0"), Revision: rev})
		_, err = s.Update(ctx, "k", []byte("10"), rev) // another replica
		require.NoError(t, err)

		e, err := c.Mutate(ctx, s, "k", 5, increment)
		require.NoError(t, err)
		require.Equal(t, "11", string(e.Value), "applied to the other replica's value, not the remembered one")
		require.EqualValues(t, 1, s.gets.Load())
	})

	t.Run("no write asked for is confirmed by a fresh read", func(t *testing.T) {
		s := &countingStore{Memory: NewMemory()}
		c := NewRevisionCache(10)
		rev, err := s.Create(ctx, "k", []byte("done"))
		require.NoError(t, err)
		c.Remember(Entry{Key: "k", Value: []byte("stale"), Revision: rev - 1})
		var seen []string
		_, err = c.Mutate(ctx, s, "k", 5, func(cur []byte) ([]byte, bool, error) {
			seen = append(seen, string(cur))
			return nil, false, nil
		})
		require.NoError(t, err)
		require.Equal(t, []string{"stale", "done"}, seen)
	})

	t.Run("the oldest key is forgotten first", func(t *testing.T) {
		c := NewRevisionCache(2)
		c.Remember(Entry{Key: "a"})
		c.Remember(Entry{Key: "b"})
		c.Remember(Entry{Key: "a", Revision: 2}) // an update keeps its place
		c.Remember(Entry{Key: "c"})
		_, okA := c.lookup("a")
		_, okB := c.lookup("b")
		_, okC := c.lookup("c")
		require.Equal(t, []bool{false, true, true}, []bool{okA, okB, okC})
	})

	t.Run("a missing key is ErrNotFound", func(t *testing.T) {
		_, err := NewRevisionCache(1).Mutate(ctx, NewMemory(), "nope", 3, increment)
		require.ErrorIs(t, err, ErrNotFound)
	})
}
