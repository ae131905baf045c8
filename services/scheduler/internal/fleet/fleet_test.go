package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/pools"
	"github.com/outposthq/outpost/services/scheduler/internal/presence"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ago(d time.Duration) time.Time { return t0.Add(-d) }

func at(d time.Duration) *time.Time { t := ago(d); return &t }

func tr(s jobs.State, d time.Duration) jobs.Transition { return jobs.Transition{State: s, At: ago(d)} }

// TestPools: backlog and the oldest queued job count every QUEUED record
// from when it last entered QUEUED; dispatch lag looks at first starts
// within LagWindow; runners are live or lost by the presence window; the
// metrics say the same, with a runner's series gone after
// RunnerSeriesBound.
func TestPools(t *testing.T) {
	ctx := context.Background()
	ten := &tenants.Tenant{
		Name:     "acme",
		Jobs:     jobs.NewStore(kv.NewMemory()),
		Pools:    pools.NewStore(kv.NewMemory()),
		Presence: presence.NewTracker(15*time.Second, ago(time.Hour)),
	}
	records := []*jobs.Record{
		// Queued a minute ago.
		{ID: "a", Pool: "etl", State: jobs.StateQueued, CreatedAt: ago(time.Minute),
			History: []jobs.Transition{tr(jobs.StateQueued, time.Minute)}},
		// Created earlier, started after 10s, queued again for a retry 30s ago.
		{ID: "b", Pool: "etl", State: jobs.StateQueued, Started: 1, CreatedAt: ago(120 * time.Second), StartedAt: at(110 * time.Second),
			History: []jobs.Transition{tr(jobs.StateQueued, 120*time.Second), tr(jobs.StateRunning, 110*time.Second), tr(jobs.StateQueued, 30*time.Second)}},
		// Started after 2s, the last start.
		{ID: "c", Pool: "etl", State: jobs.StateSucceeded, Started: 1, CreatedAt: ago(100 * time.Second), StartedAt: at(98 * time.Second)},
		// Started before the lag window.
		{ID: "d", Pool: "etl", State: jobs.StateSucceeded, Started: 1, CreatedAt: ago(20 * time.Minute), StartedAt: at(19 * time.Minute)},
		// A retry's start is not a dispatch lag.
		{ID: "e", Pool: "etl", State: jobs.StateRunning, Started: 2, CreatedAt: ago(10 * time.Minute), StartedAt: at(5 * time.Second)},
		// Another pool, nothing queued.
		{ID: "f", Pool: "idle", State: jobs.StateFailed, CreatedAt: ago(time.Hour)},
	}
	for _, r := range records {
		require.NoError(t, ten.Jobs.Create(ctx, r))
	}
	ten.Presence.Observe(presence.Runner{ID: "r1", Pool: "etl", LastSeen: ago(14 * time.Second)})
	ten.Presence.Observe(presence.Runner{ID: "r2", Pool: "etl", LastSeen: ago(20 * time.Second)})
	ten.Presence.Observe(presence.Runner{ID: "r3", Pool: "old", LastSeen: ago(2 * time.Hour)})
	_, err := ten.Pools.Set(ctx, "paused", true, ago(time.Minute))
	require.NoError(t, err)

	got, err := NewTracker().Pools(ctx, ten, t0)
	require.NoError(t, err)
	byName := map[string]Pool{}
	var names []string
	for _, p := range got {
		byName[p.Pool] = p
		names = append(names, p.Pool)
	}
	require.Equal(t, []string{"etl", "old", "paused"}, names, "sorted; a pool with neither backlog, runners, recent starts nor a pause is not listed")

	etl := byName["etl"]
	require.Equal(t, 2, etl.Backlog)
	require.Equal(t, ago(time.Minute), *etl.OldestQueuedAt, "b re-entered QUEUED after a")
	require.InDelta(t, 60, etl.OldestQueuedSeconds, 1e-9)
	require.Equal(t, Lag{Samples: 2, P50Seconds: 2, MaxSeconds: 10, LastSeconds: 2, LastStartedAt: at(98 * time.Second)}, etl.DispatchLag)
	require.Equal(t, []int{1, 1}, []int{etl.Runners, etl.RunnersLost})
	require.Equal(t, []int{0, 1}, []int{byName["old"].Runners, byName["old"].RunnersLost})
	require.True(t, byName["paused"].Paused)
	require.Zero(t, byName["paused"].OldestQueuedSeconds)

	c := NewCollector(func() []*tenants.Tenant { return []*tenants.Tenant{ten} }, NewTracker(), slog.Default())
	c.now = func() time.Time { return t0 }
	want := `
# HELP outpost_pool_runners Runners of the pool by state: live (a heartbeat within runners.presence_window) or lost (heard from in the last day, silent for longer than the window).
# TYPE outpost_pool_runners gauge
outpost_pool_runners{pool="etl",state="live",tenant="acme"} 1
outpost_pool_runners{pool="etl",state="lost",tenant="acme"} 1
outpost_pool_runners{pool="old",state="live",tenant="acme"} 0
outpost_pool_runners{pool="old",state="lost",tenant="acme"} 1
outpost_pool_runners{pool="paused",state="live",tenant="acme"} 0
outpost_pool_runners{pool="paused",state="lost",tenant="acme"} 0
# HELP outpost_pool_backlog QUEUED jobs of the pool (waiting for a runner, held, gated or waiting for a retry).
# TYPE outpost_pool_backlog gauge
outpost_pool_backlog{pool="etl",tenant="acme"} 2
outpost_pool_backlog{pool="old",tenant="acme"} 0
outpost_pool_backlog{pool="paused",tenant="acme"} 0
# HELP outpost_runner_last_seen_timestamp_seconds Unix time of the runner's last heartbeat; the series goes away an hour after it.
# TYPE outpost_runner_last_seen_timestamp_seconds gauge
outpost_runner_last_seen_timestamp_seconds{pool="etl",runner="r1",tenant="acme"} 1.772366386e+09
outpost_runner_last_seen_timestamp_seconds{pool="etl",runner="r2",tenant="acme"} 1.77236638e+09
`
	require.NoError(t, testutil.CollectAndCompare(c, strings.NewReader(want),
		"outpost_pool_runners", "outpost_pool_backlog", "outpost_runner_last_seen_timestamp_seconds"))

	// Four seconds on, within the cached view: r1 is lost at once and the
	// oldest queued job has aged, though the records are not read again.
	c.now = func() time.Time { return t0.Add(4 * time.Second) }
	require.NoError(t, ten.Jobs.Create(ctx, &jobs.Record{ID: "g", Pool: "etl", State: jobs.StateQueued, CreatedAt: t0}))
	require.InDelta(t, 0, value(t, c, "outpost_pool_runners", "etl", "live"), 0)
	require.InDelta(t, 2, value(t, c, "outpost_pool_runners", "etl", "lost"), 0)
	require.InDelta(t, 64, value(t, c, "outpost_pool_oldest_queued_seconds", "etl", ""), 1e-9)
	require.InDelta(t, 2, value(t, c, "outpost_pool_backlog", "etl", ""), 0, "the view is reused within minInterval")
	c.now = func() time.Time { return t0.Add(minInterval + time.Second) }
	require.InDelta(t, 3, value(t, c, "outpost_pool_backlog", "etl", ""), 0, "read again after minInterval")
}

// value is the value of the series of name for pool (and state, if not
// empty) that c collects now.
func value(t *testing.T, c *Collector, name, pool, state string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(c))
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			ls := map[string]string{}
			for _, l := range m.GetLabel() {
				ls[l.GetName()] = l.GetValue()
			}
			if ls["pool"] == pool && ls["state"] == state {
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no %s{pool=%q,state=%q}", name, pool, state)
	return 0
}

// readCounter counts the entries a listing and a read of changes hand out.
type readCounter struct {
	*kv.Memory
	listed, changed int
}

func (c *readCounter) List(ctx context.Context, fn func(kv.Entry) bool) error {
	return c.Memory.List(ctx, func(e kv.Entry) bool { c.listed++; return fn(e) })
}

func (c *readCounter) Changes(ctx context.Context, rev uint64, fn func(kv.Entry) bool) (uint64, error) {
	return c.Memory.Changes(ctx, rev, func(e kv.Entry) bool { c.changed++; return fn(e) })
}

// TestTrackerReadsWhatChanged: a tenant's first view lists its records; the
// next ones read only what was written since, and still count what
// changed; a first start ages out of the lag window without a write; the
// bucket is listed again after fullListEvery.
func TestTrackerReadsWhatChanged(t *testing.T) {
	ctx := context.Background()
	store := &readCounter{Memory: kv.NewMemory()}
	ten := &tenants.Tenant{Name: "acme", Jobs: jobs.NewStore(store), Pools: pools.NewStore(kv.NewMemory()),
		Presence: presence.NewTracker(15*time.Second, ago(time.Hour))}
	for i := range 50 {
		require.NoError(t, ten.Jobs.Create(ctx, &jobs.Record{ID: fmt.Sprintf("old-%02d", i), Pool: "etl", State: jobs.StateSucceeded,
			Started: 1, CreatedAt: ago(2 * time.Hour), StartedAt: at(time.Hour)}))
	}
	require.NoError(t, ten.Jobs.Create(ctx, &jobs.Record{ID: "q1", Pool: "etl", State: jobs.StateQueued, CreatedAt: ago(time.Minute)}))
	tracker := NewTracker()
	view := func(now time.Time) Pool {
		t.Helper()
		ps, err := tracker.Pools(ctx, ten, now)
		require.NoError(t, err)
		for _, p := range ps {
			if p.Pool == "etl" {
				return p
			}
		}
		return Pool{}
	}
	require.Equal(t, 1, view(t0).Backlog)
	require.Equal(t, 51, store.listed, "the first view lists the bucket")

	// q1 starts 5 s after its creation; q2 is queued.
	_, _, err := ten.Jobs.Update(ctx, "q1", func(r *jobs.Record) (bool, error) {
		r.State, r.Started, r.StartedAt = jobs.StateRunning, 1, at(55*time.Second)
		return true, nil
	})
	require.NoError(t, err)
	require.NoError(t, ten.Jobs.Create(ctx, &jobs.Record{ID: "q2", Pool: "etl", State: jobs.StateQueued, CreatedAt: t0}))
	p := view(t0.Add(time.Second))
	require.Equal(t, 51, store.listed, "the next view lists nothing")
	require.Equal(t, 2, store.changed, "it reads the two records written since")
	require.Equal(t, 1, p.Backlog)
	require.Equal(t, 1, p.DispatchLag.Samples)
	require.InDelta(t, 5, p.DispatchLag.LastSeconds, 1e-9)

	p = view(t0.Add(LagWindow))
	require.Equal(t, 51+52, store.listed, "listed again after fullListEvery")
	require.Zero(t, p.DispatchLag.Samples, "q1's start is out of the lag window")
	require.Equal(t, 1, p.Backlog)
}
