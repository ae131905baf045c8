package instances

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
	instancesv1 "github.com/outposthq/outpost/proto/outpost/instances/v1"
)

// LiveIntervals is how many of its heartbeat intervals a replica stays
// listed after its last heartbeat.
const LiveIntervals = 3

// Instance is one live replica as the instances endpoints list it; the
// first four fields are Armory's GET /armory/clouddrivers.
type Instance struct {
	BaseURL     string    `json:"baseUrl"`
	ID          string    `json:"id"`
	LastUpdated time.Time `json:"lastUpdated"`
	Ready       bool      `json:"ready"`
	Role        string    `json:"role"`
	Version     string    `json:"version"`
	StartedAt   time.Time `json:"startedAt,omitzero"`
	IntervalMS  int64     `json:"intervalMs"`

	stopping bool
}

// live reports whether the replica counts as alive at now.
func (i Instance) live(now time.Time) bool {
	return !i.stopping && now.Sub(i.LastUpdated) <= LiveIntervals*time.Duration(i.IntervalMS)*time.Millisecond
}

// Reader reads event history (queue.Broker.Read).
type Reader interface {
	Read(ctx context.Context, subject string, opts queue.ReadOptions, fn func(queue.StreamMessage) bool) error
}

// Tracker keeps the last heartbeat of every replica. It is safe for
// concurrent use.
type Tracker struct {
	mu   sync.Mutex
	byID map[string]Instance
	now  func() time.Time
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{byID: map[string]Instance{}, now: time.Now} }

// Observe records a heartbeat the broker stored at at; one older than the
// heartbeat kept for the same replica is ignored.
func (t *Tracker) Observe(hb *instancesv1.InstanceHeartbeat, at time.Time) {
	in := Instance{
		BaseURL: hb.GetBaseUrl(), ID: hb.GetId(), LastUpdated: at, Ready: hb.GetReady(),
		Role: hb.GetService(), Version: hb.GetVersion(), IntervalMS: hb.GetIntervalMs(), stopping: hb.GetStopping(),
	}
	if in.IntervalMS <= 0 {
		in.IntervalMS = DefaultInterval.Milliseconds()
	}
	if hb.GetStartedAt() != nil {
		in.StartedAt = hb.GetStartedAt().AsTime()
	}
	key := in.Role + "/" + in.ID
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur, ok := t.byID[key]; ok && cur.LastUpdated.After(at) {
		return
	}
	t.byID[key] = in
}

// Live lists the replicas live at now, by role then id; the others are
// forgotten.
func (t *Tracker) Live(now time.Time) []Instance {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := []Instance{}
	for k, in := range t.byID {
		if !in.live(now) {
			delete(t.byID, k)
			continue
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b Instance) int {
		if c := strings.Compare(a.Role, b.Role); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// ServeHTTP answers the live replicas as a JSON array.
func (t *Tracker) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	httpjson.WriteJSON(w, http.StatusOK, t.Live(t.now()))
}

// Follow reads subject (All(tenant, RoleInstances)) from now-window, then
// follows it until ctx is done. A read that fails is started again after a
// backoff: the list is a view and must outlive a broker restart.
// Malformed heartbeats are logged and skipped (nothing to settle).
func (t *Tracker) Follow(ctx context.Context, r Reader, subject string, window time.Duration, log *slog.Logger) error {
	if log == nil {
		log = slog.Default()
	}
	var last uint64
	observe := func(msg queue.StreamMessage) bool {
		last = msg.Sequence
		hb, err := events.DecodeAs[*instancesv1.InstanceHeartbeat](msg.Header, msg.Data)
		if err != nil {
			log.Warn("malformed instance heartbeat skipped", "subject", msg.Subject, "sequence", msg.Sequence, "error", err)
			return true
		}
		t.Observe(hb, msg.Time)
		return true
	}
	b := backoff.NewExponentialBackOff()
	b.MaxInterval = 10 * time.Second
	b.MaxElapsedTime = 0
	for {
		opts := queue.ReadOptions{Follow: true, Since: t.now().Add(-window)}
		if last > 0 {
			opts = queue.ReadOptions{Follow: true, FromSequence: last + 1}
		}
		before := last
		err := r.Read(ctx, subject, opts, observe)
		if last != before {
			b.Reset()
		}
		if ctx.Err() != nil {
			return nil
		}
		if err == nil || errors.Is(err, context.Canceled) {
			err = errors.New("follow ended")
		}
		d := b.NextBackOff()
		log.Warn("follow instance heartbeats failed; retrying", "subject", subject, "retry_in", d, "error", fmt.Errorf("read: %w", err))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(d):
		}
	}
}
