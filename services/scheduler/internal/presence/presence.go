// Package presence keeps, in memory, when each runner of each pool of a
// tenant last sent a heartbeat, for explain and the outpost_runners gauge.
package presence

import (
	"slices"
	"sync"
	"time"
)

// forgetAfter drops runners silent for this long, bounding memory.
const forgetAfter = 24 * time.Hour

// Runner is what the last heartbeat of one runner said.
type Runner struct {
	ID       string    `json:"id"`
	Pool     string    `json:"pool"`
	Version  string    `json:"version,omitempty"`
	Running  int       `json:"running"`
	Capacity int       `json:"capacity"`
	Draining bool      `json:"draining"`
	LastSeen time.Time `json:"last_seen"`
}

// Busy reports whether the runner has no free slot.
func (r Runner) Busy() bool { return r.Capacity > 0 && r.Running >= r.Capacity }

// Tracker holds the runners of one tenant. It is safe for concurrent use.
type Tracker struct {
	window time.Duration
	since  time.Time // heartbeats older than this were not read

	mu    sync.Mutex
	pools map[string]map[string]Runner
}

// NewTracker returns a tracker that counts a runner live for window after
// its last heartbeat; since is the oldest heartbeat it will have read.
func NewTracker(window time.Duration, since time.Time) *Tracker {
	return &Tracker{window: window, since: since, pools: map[string]map[string]Runner{}}
}

// Window is the presence window.
func (t *Tracker) Window() time.Duration { return t.window }

// WatchingSince is the time from which heartbeats were read: a pool with no
// runner has had none since then.
func (t *Tracker) WatchingSince() time.Time { return t.since }

// Observe records a heartbeat. An older heartbeat than the one kept is
// ignored.
func (t *Tracker) Observe(r Runner) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pool := t.pools[r.Pool]
	if pool == nil {
		pool = map[string]Runner{}
		t.pools[r.Pool] = pool
	}
	if cur, ok := pool[r.ID]; ok && cur.LastSeen.After(r.LastSeen) {
		return
	}
	pool[r.ID] = r
}

// Pool returns every runner of pool ever seen (newest heartbeat first) and
// forgets those silent for a day.
func (t *Tracker) Pool(pool string, now time.Time) []Runner {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Runner, 0, len(t.pools[pool]))
	for id, r := range t.pools[pool] {
		if now.Sub(r.LastSeen) > forgetAfter {
			delete(t.pools[pool], id)
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Runner) int { return b.LastSeen.Compare(a.LastSeen) })
	return out
}

// Live returns the runners of pool seen within the window.
func (t *Tracker) Live(pool string, now time.Time) []Runner {
	var out []Runner
	for _, r := range t.Pool(pool, now) {
		if now.Sub(r.LastSeen) <= t.window {
			out = append(out, r)
		}
	}
	return out
}

// Counts returns the number of live runners of every pool seen.
func (t *Tracker) Counts(now time.Time) map[string]int {
	t.mu.Lock()
	pools := make([]string, 0, len(t.pools))
	for p := range t.pools {
		pools = append(pools, p)
	}
	t.mu.Unlock()
	out := make(map[string]int, len(pools))
	for _, p := range pools {
		out[p] = len(t.Live(p, now))
	}
	return out
}
