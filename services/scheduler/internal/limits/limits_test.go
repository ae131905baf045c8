package limits

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
)

func TestTake(t *testing.T) {
	cases := []struct {
		name    string
		held    []string
		job     string
		limit   int
		ok      bool
		inUse   int
		running []string
	}{
		{"first slot", nil, "a", 2, true, 1, []string{"a"}},
		{"last slot", []string{"a"}, "b", 2, true, 2, []string{"a", "b"}},
		{"over the limit", []string{"a", "b"}, "c", 2, false, 2, []string{"a", "b"}},
		{"already held", []string{"a", "b"}, "b", 2, true, 2, []string{"a", "b"}},
		{"limit lowered below the slots held", []string{"a", "b", "c"}, "d", 2, false, 3, []string{"a", "b", "c"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			s := NewStore(kv.NewMemory())
			for _, j := range c.held {
				ok, _, err := s.Take(ctx, j, len(c.held))
				require.NoError(t, err)
				require.True(t, ok)
			}
			ok, inUse, err := s.Take(ctx, c.job, c.limit)
			require.NoError(t, err)
			require.Equal(t, c.ok, ok)
			require.Equal(t, c.inUse, inUse)
			running, err := s.Running(ctx)
			require.NoError(t, err)
			require.Equal(t, c.running, running)
		})
	}
}

// TestTakeConcurrent: takers racing for the slots (as replicas do) never
// get more than the limit.
func TestTakeConcurrent(t *testing.T) {
	ctx := context.Background()
	s := NewStore(kv.NewMemory())
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		got int
	)
	for i := range 20 {
		wg.Go(func() {
			ok, _, err := s.Take(ctx, string(rune('a'+i)), 3)
			require.NoError(t, err)
			if ok {
				mu.Lock()
				got++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 3, got)
	running, err := s.Running(ctx)
	require.NoError(t, err)
	require.Len(t, running, 3)
}

func TestRelease(t *testing.T) {
	ctx := context.Background()
	s := NewStore(kv.NewMemory())
	require.NoError(t, s.Release(ctx, "nobody"), "no slots yet")
	for _, j := range []string{"a", "b", "c"} {
		_, _, err := s.Take(ctx, j, 3)
		require.NoError(t, err)
	}
	require.NoError(t, s.Release(ctx, "b", "unknown"))
	running, err := s.Running(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{"a", "c"}, running)
	ok, _, err := s.Take(ctx, "d", 3)
	require.NoError(t, err)
	require.True(t, ok, "a released slot is free again")
}

func TestWaiting(t *testing.T) {
	ctx := context.Background()
	s := NewStore(kv.NewMemory())
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.NoError(t, s.Wait(ctx, "late", t0.Add(time.Second)))
	require.NoError(t, s.Wait(ctx, "early", t0))
	require.NoError(t, s.Wait(ctx, "early", t0), "recording a waiter again is not an error")
	_, _, err := s.Take(ctx, "a", 1) // the slots key shares the bucket
	require.NoError(t, err)
	ws, err := s.Waiting(ctx)
	require.NoError(t, err)
	require.Equal(t, []Waiter{{Job: "early", Key: WaitKey("early", t0)}, {Job: "late", Key: WaitKey("late", t0.Add(time.Second))}}, ws, "oldest first")
	require.NoError(t, s.Unwait(ctx, ws[0].Key))
	require.NoError(t, s.Unwait(ctx, ws[0].Key), "gone already")
	ws, err = s.Waiting(ctx)
	require.NoError(t, err)
	require.Len(t, ws, 1)
	require.Equal(t, "late", ws[0].Job)
}

func TestCorruptSlots(t *testing.T) {
	ctx := context.Background()
	m := kv.NewMemory()
	_, err := m.Create(ctx, keyRunning, []byte("{"))
	require.NoError(t, err)
	s := NewStore(m)
	_, _, err = s.Take(ctx, "a", 1)
	require.ErrorIs(t, err, ErrCorrupt)
	_, err = s.Running(ctx)
	require.ErrorIs(t, err, ErrCorrupt)
}
