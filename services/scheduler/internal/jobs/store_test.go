package jobs

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
)

// racyStore makes the first Update of every key conflict, as a concurrent
// writer would.
type racyStore struct {
	*kv.Memory
	raced map[string]bool
}

func (s *racyStore) Update(ctx context.Context, key string, v []byte, rev uint64) (uint64, error) {
	if !s.raced[key] {
		s.raced[key] = true
		return 0, kv.ErrConflict
	}
	return s.Memory.Update(ctx, key, v, rev)
}

func TestStore(t *testing.T) {
	ctx := context.Background()
	mem := kv.NewMemory()
	s := NewStore(&racyStore{Memory: mem, raced: map[string]bool{}})
	r := rec(StateQueued, 0)
	require.NoError(t, s.Create(ctx, r))
	require.ErrorIs(t, s.Create(ctx, r), ErrExists)

	_, err := s.Get(ctx, "nope")
	require.ErrorIs(t, err, ErrNotFound)
	_, _, err = s.Update(ctx, "nope", func(*Record) (bool, error) { return true, nil })
	require.ErrorIs(t, err, ErrNotFound)

	calls := 0
	got, changed, err := s.Update(ctx, "j1", func(r *Record) (bool, error) {
		calls++
		_, err := r.Apply(ev(StateRunning, 1), t0, 10)
		return true, err
	})
	require.NoError(t, err)
	require.True(t, changed)
	require.Equal(t, 2, calls, "fn runs again on a fresh copy after a conflict")
	require.Equal(t, StateRunning, got.State)
	require.Len(t, got.History, 2, "the retried fn does not apply twice")

	_, changed, err = s.Update(ctx, "j1", func(r *Record) (bool, error) { return false, nil })
	require.NoError(t, err)
	require.False(t, changed)

	boom := errors.New("boom")
	_, _, err = s.Update(ctx, "j1", func(r *Record) (bool, error) { return false, boom })
	require.ErrorIs(t, err, boom)

	_, err = mem.Create(ctx, "bad", []byte("{"))
	require.NoError(t, err)
	_, err = s.Get(ctx, "bad")
	require.ErrorIs(t, err, ErrCorrupt)

	n := 0
	require.NoError(t, s.List(ctx, func(*Record) bool { n++; return true }))
	require.Equal(t, 1, n, "undecodable records are skipped")
}
