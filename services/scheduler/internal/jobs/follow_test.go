package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
)

// TestFollower: a listing keeps what keep selects, as keep projects it;
// an update reads only the writes since, keeps their new projection and
// drops the records no longer selected; a listing cut short keeps nothing
// of it.
func TestFollower(t *testing.T) {
	ctx := context.Background()
	s := NewStore(kv.NewMemory())
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	put := func(id, pool string, st State) {
		t.Helper()
		if _, _, err := s.Update(ctx, id, func(r *Record) (bool, error) { r.Pool, r.State = pool, st; return true, nil }); err == nil {
			return
		}
		require.NoError(t, s.Create(ctx, &Record{ID: id, Tenant: "acme", Pool: pool, State: st, CreatedAt: now}))
	}
	// The pools of the queued jobs.
	queued := func(r *Record) (string, bool) { return r.Pool, r.State == StateQueued }
	ids := func(f *Follower[string]) []string {
		var out []string
		for id := range f.Records {
			out = append(out, id)
		}
		return out
	}
	put("a", "p", StateQueued)
	put("b", "p", StateSucceeded)
	put("c", "p", StateQueued)

	var f Follower[string]
	seen := 0
	require.NoError(t, f.List(ctx, s, now, queued, func(*Record) bool { seen++; return true }))
	require.Equal(t, 3, seen, "each sees every record")
	require.ElementsMatch(t, []string{"a", "c"}, ids(&f))
	require.Equal(t, now, f.ListedAt)

	put("a", "p", StateRunning)
	put("d", "q", StateQueued)
	put("c", "r", StateQueued)
	reads := 0
	require.NoError(t, f.Update(ctx, s, queued, func() bool { reads++; return true }))
	require.Equal(t, 3, reads, "only the writes since")
	require.Equal(t, map[string]string{"c": "r", "d": "q"}, f.Records, "the projections of the writes since")
	require.NoError(t, f.Update(ctx, s, queued, func() bool { t.Fatal("nothing was written"); return false }))

	require.NoError(t, f.List(ctx, s, now.Add(time.Hour), queued, func(*Record) bool { return false }))
	require.ElementsMatch(t, []string{"c", "d"}, ids(&f), "a listing cut short keeps nothing of it")
	require.Equal(t, now, f.ListedAt)
}
