package dispatch

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/metrics"
	"github.com/outposthq/outpost/services/scheduler/internal/results"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// readCounter counts the entries a listing and a read of changes hand out.
type readCounter struct {
	*kv.Memory
	listed, changed atomic.Int64
}

func (c *readCounter) List(ctx context.Context, fn func(kv.Entry) bool) error {
	return c.Memory.List(ctx, func(e kv.Entry) bool { c.listed.Add(1); return fn(e) })
}

func (c *readCounter) Changes(ctx context.Context, rev uint64, fn func(kv.Entry) bool) (uint64, error) {
	return c.Memory.Changes(ctx, rev, func(e kv.Entry) bool { c.changed.Add(1); return fn(e) })
}

// TestReaperReadsWhatChanged: after the tenant's first pass, which lists
// every record, a pass reads only the records written since the last one
// and keeps the live ones; the whole bucket is listed again (deleting the
// records past their retention) once fullListEvery has passed.
func TestReaperReadsWhatChanged(t *testing.T) {
	ctx := context.Background()
	now := t0
	store := &readCounter{Memory: kv.NewMemory()}
	e := New(&fakeBroker{}, Options{Metrics: metrics.New(prometheus.NewRegistry()), Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return now }, Retention: 30 * 24 * time.Hour})
	tn := &tenants.Tenant{Name: "acme", Jobs: jobs.NewStore(store), Results: results.NewStore(kv.NewMemory(), kv.NewMemory())}
	spec, err := jobs.NormalizeSpec(&jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}, jobs.Policy{MaxAttempts: 1, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2, DefaultTimeout: time.Hour, MaxTimeout: time.Hour, AttemptsLimit: 1})
	require.NoError(t, err)
	// put creates the record of id in state, or moves it there.
	put := func(id string, state jobs.State) {
		t.Helper()
		if _, _, err := tn.Jobs.Update(ctx, id, func(cur *jobs.Record) (bool, error) { cur.State = state; return true, nil }); err == nil {
			return
		}
		r := jobs.NewRecord(id, "acme", spec, now, false)
		r.State = state
		require.NoError(t, tn.Jobs.Create(ctx, r))
	}
	for i := range 100 {
		put(fmt.Sprintf("done-%03d", i), jobs.StateSucceeded)
	}
	put("queued-1", jobs.StateQueued)
	put("queued-2", jobs.StateQueued)

	st := &reapState{every: 5 * time.Second}
	require.NoError(t, e.reap(ctx, tn, nil, true, st))
	require.Equal(t, int64(102), store.listed.Load(), "the first pass lists the bucket")
	require.Len(t, st.live.Records, 2)

	put("queued-3", jobs.StateQueued)
	put("queued-1", jobs.StateSucceeded)
	now = now.Add(5 * time.Second)
	require.NoError(t, e.reap(ctx, tn, nil, false, st))
	require.Equal(t, int64(102), store.listed.Load(), "a later pass lists nothing")
	require.Equal(t, int64(2), store.changed.Load(), "it reads the two records written since")
	require.ElementsMatch(t, []string{"queued-2", "queued-3"}, liveIDs(st))

	now = now.Add(5 * time.Second)
	require.NoError(t, e.reap(ctx, tn, nil, false, st))
	require.Equal(t, int64(2), store.changed.Load(), "nothing written, nothing read")

	// A record gone without trace (purged) is dropped by the next full
	// listing, which also expires what is past the retention.
	require.NoError(t, store.Memory.Delete(ctx, "queued-2", 0))
	now = now.Add(fullListEvery)
	require.NoError(t, e.reap(ctx, tn, nil, false, st))
	require.Equal(t, int64(102+102), store.listed.Load(), "listed again after fullListEvery")
	require.ElementsMatch(t, []string{"queued-3"}, liveIDs(st))

	now = now.Add(31 * 24 * time.Hour)
	require.NoError(t, e.reap(ctx, tn, nil, false, st))
	var left []string
	require.NoError(t, tn.Jobs.List(ctx, func(r *jobs.Record) bool { left = append(left, r.ID); return true }))
	require.ElementsMatch(t, []string{"queued-3"}, left, "the finished records expired, the queued one stays")
}

func liveIDs(st *reapState) []string {
	var ids []string
	for id := range st.live.Records {
		ids = append(ids, id)
	}
	return ids
}

// TestExpiryGoesOnBetweenListings: the records past their retention that
// a full listing found are deleted maxExpiredPerPass a pass, the rest by
// the passes after it, which list nothing: a tenant that finishes more
// jobs than that between two full listings does not pile them up.
func TestExpiryGoesOnBetweenListings(t *testing.T) {
	ctx := context.Background()
	now := t0
	store := &readCounter{Memory: kv.NewMemory()}
	e := New(&fakeBroker{}, Options{Metrics: metrics.New(prometheus.NewRegistry()), Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return now }, Retention: time.Hour})
	tn := &tenants.Tenant{Name: "acme", Jobs: jobs.NewStore(store), Results: results.NewStore(kv.NewMemory(), kv.NewMemory())}
	spec, err := jobs.NormalizeSpec(&jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}, jobs.Policy{MaxAttempts: 1, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2, DefaultTimeout: time.Hour, MaxTimeout: time.Hour, AttemptsLimit: 1})
	require.NoError(t, err)
	const n = maxExpiredPerPass + 50
	for i := range n {
		r := jobs.NewRecord(fmt.Sprintf("done-%05d", i), "acme", spec, now, false)
		r.State, r.FinishedAt = jobs.StateSucceeded, &now
		require.NoError(t, tn.Jobs.Create(ctx, r))
	}
	left := func() int {
		c := 0
		require.NoError(t, store.Memory.List(ctx, func(kv.Entry) bool { c++; return true }))
		return c
	}

	now = now.Add(2 * time.Hour)
	st := &reapState{every: 100 * time.Millisecond}
	require.NoError(t, e.reap(ctx, tn, nil, true, st))
	require.Equal(t, int64(n), store.listed.Load(), "the first pass lists the bucket")
	require.Equal(t, 50, left(), "a pass deletes maxExpiredPerPass records")

	now = now.Add(st.every)
	require.NoError(t, e.reap(ctx, tn, nil, false, st))
	require.Equal(t, int64(n), store.listed.Load(), "the next pass lists nothing")
	require.Zero(t, left(), "the next pass deletes the rest")
	require.Empty(t, st.expiring)
}
