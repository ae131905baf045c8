package pools

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
)

func TestPausedCached(t *testing.T) {
	ctx := context.Background()
	bucket := kv.NewMemory()
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }

	// Two replicas over one bucket.
	a, b := NewStore(bucket), NewStore(bucket)
	a.now, b.now = clock, clock

	paused, err := b.PausedCached(ctx, "etl")
	require.NoError(t, err)
	require.False(t, paused)

	_, err = a.Set(ctx, "etl", true, now)
	require.NoError(t, err)

	tests := []struct {
		name    string
		advance time.Duration
		store   *Store
		want    bool
	}{
		{"the replica that paused sees it at once", 0, a, true},
		{"another replica may see the old state within the TTL", 0, b, false},
		{"and sees the pause once the TTL has passed", pausedTTL, b, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now = now.Add(tt.advance)
			got, err := tt.store.PausedCached(ctx, "etl")
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}

	// Paused always reads the bucket (the held-job re-check relies on it).
	_, err = a.Set(ctx, "etl", false, now)
	require.NoError(t, err)
	got, err := b.Paused(ctx, "etl")
	require.NoError(t, err)
	require.False(t, got)
}
