// Package fleet computes the view of a tenant's pools that GET /api/v1/pools
// and the pool metrics show: backlog, oldest queued job, dispatch lag,
// live and lost runners and the paused state, from the scheduler's own job
// records, pool states and runner presence.
package fleet

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// LagWindow is how far back dispatch lag looks: jobs whose first RUNNING
// came within it.
const LagWindow = 15 * time.Minute

// Lag is the time from submission to the first RUNNING of the jobs of a
// pool that started within LagWindow.
type Lag struct {
	// Samples counts the jobs it was computed from; the others are zero
	// when there are none.
	Samples       int        `json:"samples"`
	P50Seconds    float64    `json:"p50_seconds"`
	MaxSeconds    float64    `json:"max_seconds"`
	LastSeconds   float64    `json:"last_seconds"`
	LastStartedAt *time.Time `json:"last_started_at,omitempty"`
}

// Pool is the state of one pool of a tenant.
type Pool struct {
	Tenant    string     `json:"tenant"`
	Pool      string     `json:"pool"`
	Paused    bool       `json:"paused"`
	PausedAt  *time.Time `json:"paused_at,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	// Backlog counts the pool's QUEUED jobs: waiting for a runner, held by
	// a pause, gated by the polling rules or waiting for a retry.
	Backlog int `json:"backlog"`
	// OldestQueuedAt is when the longest-waiting QUEUED job last entered
	// QUEUED; OldestQueuedSeconds its age (0 without a backlog).
	OldestQueuedAt      *time.Time `json:"oldest_queued_at,omitempty"`
	OldestQueuedSeconds float64    `json:"oldest_queued_seconds"`
	DispatchLag         Lag        `json:"dispatch_lag"`
	// Runners counts the live runners (a heartbeat within the presence
	// window), RunnersLost those heard from in the last day but not
	// within the window.
	Runners     int `json:"runners"`
	RunnersLost int `json:"runners_lost"`
}

// poolAcc gathers one pool's numbers while the records are read.
type poolAcc struct {
	Pool
	lags []time.Duration
	last time.Time
}

// fullListEvery is the most time between two listings of a tenant's whole
// bucket by a Tracker.
const fullListEvery = 5 * time.Minute

// Tracker computes the pool views of tenants from the job records they
// need: the QUEUED ones and those whose first start is within LagWindow.
// It keeps them per tenant between views and brings them up to date with
// the records written since the last view (jobs.Store.Changes from the
// bucket's revision), so that a view (an API call, a scrape) costs what
// was written since the last one rather than the tenant's whole history
// (jobs.retention keeps 30 days of it). The bucket is listed whole at a
// tenant's first view, and again every fullListEvery. Safe for concurrent
// use.
type Tracker struct {
	mu      sync.Mutex
	tenants map[string]*tracked
}

// tracked is one tenant's records as a Tracker last read them.
type tracked struct {
	mu sync.Mutex
	// store is the job store they were read from: a tenant provisioned
	// again has another, read from scratch.
	store *jobs.Store
	jobs.Follower[job]
}

// job is what a pool view reads of a job record: a few fields rather
// than the record, so a busy tenant's jobs of the last LagWindow (900,000
// at 1,000 jobs/s) are held in little memory.
type job struct {
	pool string
	// queuedSince is when a QUEUED job last entered QUEUED; zero when
	// the job is not QUEUED.
	queuedSince time.Time
	// startedAt is the first start of a job first started; zero when it
	// has none, or started again.
	startedAt time.Time
	createdAt time.Time
}

// view returns what a view at now keeps of r, and whether it keeps r at
// all: QUEUED, or first started within LagWindow.
func view(r *jobs.Record, now time.Time) (job, bool) {
	j := job{pool: r.Pool, createdAt: r.CreatedAt}
	if r.State == jobs.StateQueued {
		j.queuedSince = queuedSince(r)
	}
	if r.StartedAt != nil && first(r) {
		j.startedAt = *r.StartedAt
	}
	return j, j.needed(now)
}

// needed reports whether a view at now looks at j. Once false, it stays
// so until the job is written again.
func (j job) needed(now time.Time) bool {
	return !j.queuedSince.IsZero() || j.lagged(now)
}

// lagged reports whether j's first start counts in the dispatch lag at
// now.
func (j job) lagged(now time.Time) bool {
	return !j.startedAt.IsZero() && now.Sub(j.startedAt) <= LagWindow
}

// NewTracker returns a Tracker that has read nothing yet.
func NewTracker() *Tracker { return &Tracker{tenants: map[string]*tracked{}} }

// refresh brings k up to date with the store at now.
func (k *tracked) refresh(ctx context.Context, s *jobs.Store, now time.Time) error {
	keep := func(r *jobs.Record) (job, bool) { return view(r, now) }
	if k.store != s || k.ListedAt.IsZero() || now.Sub(k.ListedAt) >= fullListEvery || now.Before(k.ListedAt) {
		if err := k.List(ctx, s, now, keep, nil); err != nil {
			return err
		}
		k.store = s
		return nil
	}
	if err := k.Update(ctx, s, keep, nil); err != nil {
		return err
	}
	for id, j := range k.Records {
		if !j.needed(now) {
			delete(k.Records, id)
		}
	}
	return nil
}

// Pools returns every pool of the tenant that was paused once, has runners
// seen in the last day, queued jobs or jobs started within LagWindow,
// sorted by name.
func (tr *Tracker) Pools(ctx context.Context, t *tenants.Tenant, now time.Time) ([]Pool, error) {
	tr.mu.Lock()
	k := tr.tenants[t.Name]
	if k == nil {
		k = &tracked{}
		tr.tenants[t.Name] = k
	}
	tr.mu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.refresh(ctx, t.Jobs, now); err != nil {
		return nil, fmt.Errorf("pools of %s: %w", t.Name, err)
	}
	acc := map[string]*poolAcc{}
	get := func(pool string) *poolAcc {
		p := acc[pool]
		if p == nil {
			p = &poolAcc{Pool: Pool{Tenant: t.Name, Pool: pool}}
			acc[pool] = p
		}
		return p
	}
	states, err := t.Pools.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("pools of %s: %w", t.Name, err)
	}
	for _, st := range states {
		p := get(st.Pool)
		p.Paused, p.PausedAt, p.UpdatedAt = st.Paused, st.PausedAt, &st.UpdatedAt
	}
	for pool, n := range RunnerCounts(t, now) {
		p := get(pool)
		p.Runners, p.RunnersLost = n.Live, n.Lost
	}
	for _, j := range k.Records {
		if !j.queuedSince.IsZero() {
			p := get(j.pool)
			p.Backlog++
			if since := j.queuedSince; p.OldestQueuedAt == nil || since.Before(*p.OldestQueuedAt) {
				p.OldestQueuedAt = &since
			}
		}
		if j.lagged(now) {
			p := get(j.pool)
			lag := max(j.startedAt.Sub(j.createdAt), 0)
			p.lags = append(p.lags, lag)
			if j.startedAt.After(p.last) {
				p.last = j.startedAt
				p.DispatchLag.LastSeconds = lag.Seconds()
			}
		}
	}
	out := make([]Pool, 0, len(acc))
	for _, p := range acc {
		if p.OldestQueuedAt != nil {
			p.OldestQueuedSeconds = max(now.Sub(*p.OldestQueuedAt).Seconds(), 0)
		}
		if n := len(p.lags); n > 0 {
			slices.Sort(p.lags)
			last := p.last.UTC()
			p.DispatchLag.Samples = n
			p.DispatchLag.P50Seconds = p.lags[(n-1)/2].Seconds()
			p.DispatchLag.MaxSeconds = p.lags[n-1].Seconds()
			p.DispatchLag.LastStartedAt = &last
		}
		out = append(out, p.Pool)
	}
	slices.SortFunc(out, func(a, b Pool) int { return cmp.Compare(a.Pool, b.Pool) })
	return out, nil
}

// queuedSince is when the record last entered QUEUED: its latest QUEUED
// transition (the history keeps the latest ones), else its creation.
func queuedSince(r *jobs.Record) time.Time {
	for i := len(r.History) - 1; i >= 0; i-- {
		if r.History[i].State == jobs.StateQueued {
			return r.History[i].At
		}
	}
	return r.CreatedAt
}

// first reports whether the record's StartedAt is its first start: the
// dispatch lag is measured to the first RUNNING, as
// outpost_dispatch_latency_seconds is; a retry's start is not a dispatch
// lag of the submission.
func first(r *jobs.Record) bool { return r.Started <= 1 }

// Counts is how many runners of a pool are live and lost.
type Counts struct{ Live, Lost int }

// RunnerCounts returns the live and lost runners of every pool of the
// tenant with a runner heard from in the last day. A runner is lost once
// its last heartbeat is older than the presence window (three heartbeat
// intervals by default), never live.
func RunnerCounts(t *tenants.Tenant, now time.Time) map[string]Counts {
	window := t.Presence.Window()
	out := map[string]Counts{}
	for pool := range t.Presence.Counts(now) {
		var c Counts
		for _, r := range t.Presence.Pool(pool, now) {
			if now.Sub(r.LastSeen) <= window {
				c.Live++
			} else {
				c.Lost++
			}
		}
		out[pool] = c
	}
	return out
}
