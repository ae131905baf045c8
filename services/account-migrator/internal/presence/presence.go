// Package presence keeps, in memory, the last heartbeat of every watcher
// replica of a tenant, read from the presence subjects: which zones have a
// live watcher and which watcher holds which account. Every migrator
// replica reads every heartbeat, so each has the whole view.
package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	"github.com/outposthq/outpost/services/account-migrator/internal/metrics"
)

// LiveIntervals is how many heartbeat intervals a watcher stays live
// after its last heartbeat.
const LiveIntervals = 3

// defaultInterval stands for a heartbeat that names no interval.
const defaultInterval = 10 * time.Second

// forgetAfter drops watchers silent for this long, bounding memory.
const forgetAfter = 24 * time.Hour

// Watcher states, as GET /api/v1/watchers and outpost_watchers{state}
// report them. A watcher is never shown live once it has said it stops or
// has been silent for more than LiveIntervals of its heartbeat intervals.
const (
	// StateLive: a heartbeat within LiveIntervals of its intervals.
	StateLive = "live"
	// StateStopped: its last heartbeat said it was stopping.
	StateStopped = "stopped"
	// StateLost: silent for longer than LiveIntervals heartbeat intervals
	// without saying it stopped.
	StateLost = "lost"
)

// Held is an account a watcher holds the lease of.
type Held struct {
	Account    string `json:"account"`
	Generation uint64 `json:"generation"`
}

// Watcher is what the last heartbeat of one watcher said.
type Watcher struct {
	ID         string        `json:"id"`
	Zone       string        `json:"zoneId"`
	Version    string        `json:"version"`
	LastSeen   time.Time     `json:"lastSeen"`
	StartedAt  time.Time     `json:"startedAt,omitzero"`
	Interval   time.Duration `json:"-"`
	IntervalMS int64         `json:"intervalMs"`
	Stopping   bool          `json:"stopping"`
	Live       bool          `json:"live"`
	State      string        `json:"state"`
	Accounts   []Held        `json:"accounts"`
}

// live reports whether w counts as alive at now.
func (w Watcher) live(now time.Time) bool {
	return !w.Stopping && now.Sub(w.LastSeen) <= LiveIntervals*w.Interval
}

// state is w's state at now.
func (w Watcher) state(now time.Time) string {
	switch {
	case w.live(now):
		return StateLive
	case w.Stopping:
		return StateStopped
	default:
		return StateLost
	}
}

// Tracker holds the watchers of one tenant. It is safe for concurrent use.
type Tracker struct {
	mu     sync.Mutex
	zones  map[string]map[string]Watcher
	synced atomic.Bool
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{zones: map[string]map[string]Watcher{}} }

// Synced reports whether the heartbeats of the last window have been read:
// until then no zone may be judged dead.
func (t *Tracker) Synced() bool { return t.synced.Load() }

// Observe records a heartbeat received at at; an older one than the one
// kept is ignored.
func (t *Tracker) Observe(hb *accountsv1.WatcherHeartbeat, at time.Time) {
	w := Watcher{
		ID:       hb.GetWatcherId(),
		Zone:     hb.GetZone(),
		Version:  hb.GetVersion(),
		LastSeen: at,
		Interval: time.Duration(hb.GetIntervalMs()) * time.Millisecond,
		Stopping: hb.GetStopping(),
	}
	if w.Interval <= 0 {
		w.Interval = defaultInterval
	}
	w.IntervalMS = w.Interval.Milliseconds()
	if hb.GetStartedAt() != nil {
		w.StartedAt = hb.GetStartedAt().AsTime()
	}
	for _, h := range hb.GetAccounts() {
		w.Accounts = append(w.Accounts, Held{Account: h.GetAccount(), Generation: h.GetGeneration()})
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	zone := t.zones[w.Zone]
	if zone == nil {
		zone = map[string]Watcher{}
		t.zones[w.Zone] = zone
	}
	if cur, ok := zone[w.ID]; ok && cur.LastSeen.After(at) {
		return
	}
	zone[w.ID] = w
}

// Watchers returns every watcher seen in the last day, by zone, with Live
// and State set as of now, newest heartbeat first.
func (t *Tracker) Watchers(now time.Time) map[string][]Watcher {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string][]Watcher, len(t.zones))
	for zone, ws := range t.zones {
		for id, w := range ws {
			if now.Sub(w.LastSeen) > forgetAfter {
				delete(ws, id)
				continue
			}
			w.State = w.state(now)
			w.Live = w.State == StateLive
			w.Accounts = slices.Clone(w.Accounts)
			out[zone] = append(out[zone], w)
		}
		slices.SortFunc(out[zone], func(a, b Watcher) int { return b.LastSeen.Compare(a.LastSeen) })
	}
	return out
}

// View is a snapshot of the tracker at one instant, for one reconcile pass.
type View struct {
	zones map[string][]Watcher
}

// Snapshot returns the view at now.
func (t *Tracker) Snapshot(now time.Time) View { return View{zones: t.Watchers(now)} }

// ZoneLive reports whether zone has a live watcher.
func (v View) ZoneLive(zone string) bool {
	return slices.ContainsFunc(v.zones[zone], func(w Watcher) bool { return w.Live })
}

// LiveZones lists the zones with a live watcher, sorted.
func (v View) LiveZones() []string {
	var out []string
	for z := range v.zones {
		if v.ZoneLive(z) {
			out = append(out, z)
		}
	}
	slices.Sort(out)
	return out
}

// Holder returns the live watcher of zone that holds account at generation.
func (v View) Holder(zone, account string, generation uint64) (string, bool) {
	for _, w := range v.zones[zone] {
		if w.Live && slices.Contains(w.Accounts, Held{Account: account, Generation: generation}) {
			return w.ID, true
		}
	}
	return "", false
}

// LastSeen is the last heartbeat of the watcher of zone that holds account
// (at any generation), the account's lastSeen.
func (v View) LastSeen(zone, account string) (time.Time, bool) {
	for _, w := range v.zones[zone] { // newest first
		if slices.ContainsFunc(w.Accounts, func(h Held) bool { return h.Account == account }) {
			return w.LastSeen, true
		}
	}
	return time.Time{}, false
}

// Reader reads event history (queue.Broker.Read).
type Reader interface {
	Read(ctx context.Context, subject string, opts queue.ReadOptions, fn func(queue.StreamMessage) bool) error
}

// Follow reads the heartbeats of subject from now-window, marks the tracker
// synced once it has caught up, then follows new ones until ctx is done.
// Malformed heartbeats are counted (outpost_malformed_messages_total
// {role="accounts"}), logged with their subject and skipped: presence is a
// view, it has nothing to settle, and the message stays in the events
// stream (until its age limit) rather than being copied to the dead-letter
// queue by every replica that reads it.
func (t *Tracker) Follow(ctx context.Context, r Reader, subject string, window time.Duration, log *slog.Logger, m *metrics.Metrics) error {
	start := time.Now()
	var last uint64
	observe := func(msg queue.StreamMessage) bool {
		last = msg.Sequence
		hb, err := events.DecodeAs[*accountsv1.WatcherHeartbeat](msg.Header, msg.Data)
		if err != nil {
			m.Malformed(string(queue.RoleAccounts))
			log.Warn("malformed heartbeat skipped", "subject", msg.Subject, "sequence", msg.Sequence, "error", err)
			return true
		}
		t.Observe(hb, msg.Time)
		return true
	}
	if err := r.Read(ctx, subject, queue.ReadOptions{Since: start.Add(-window)}, observe); err != nil {
		return fmt.Errorf("read heartbeats: %w", err)
	}
	t.synced.Store(true)
	opts := queue.ReadOptions{Follow: true, Since: start}
	if last > 0 {
		opts = queue.ReadOptions{Follow: true, FromSequence: last + 1}
	}
	err := r.Read(ctx, subject, opts, observe)
	if err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return fmt.Errorf("follow heartbeats: %w", err)
	}
	return nil
}
