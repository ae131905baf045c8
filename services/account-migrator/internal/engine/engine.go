// Package engine drives the account lifecycle: the reconcile loop, the
// consumers of the watchers' status and checksum events, presence, and the
// account operations the API asks for. All state is in the KV bucket
// "accounts", written with compare-and-set, so any number of replicas can
// run the engine side by side.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
	"github.com/outposthq/outpost/services/account-migrator/internal/metrics"
	"github.com/outposthq/outpost/services/account-migrator/internal/presence"
)

// ConsumerName is the durable consumer name of every migrator consumer.
const ConsumerName = "account-migrator"

// mutateAttempts bounds compare-and-set retries of one change.
const mutateAttempts = 20

// ErrNotFound is returned for an account that does not exist.
var ErrNotFound = errors.New("account not found")

// ErrExists is returned by Create for an account that already exists.
var ErrExists = errors.New("account already exists")

// Conn is what the engine needs of the broker: publish, consume, read
// the history and purge an account's inventory.
type Conn interface {
	queue.Publisher
	queue.Subscriber
	queue.Reader
	queue.Purger
}

// Options configure the engine.
type Options struct {
	Subjects           queue.Subjects
	Policy             accounts.Policy
	ReconcileInterval  time.Duration
	ChecksumMismatches int
	PresenceWindow     time.Duration
	// MaxDeliveries bounds the deliveries of one status or checksum event
	// before it is dead-lettered with the reason; 0 means
	// DefaultMaxDeliveries.
	MaxDeliveries int
	Sealer        *accounts.Sealer
	// Signer signs every AccountLease; watchers take an account only from
	// a lease they verify. nil publishes unsigned leases (tests of the
	// engine alone).
	Signer  *signing.Signer
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	Now     func() time.Time
}

// DefaultMaxDeliveries is the default of Options.MaxDeliveries. A failed
// event is retried every second (nakDelay), so 60 deliveries last about as
// long as the default activation timeout: an ACTIVATED or FAILED that could
// not be applied by then is superseded by the timeout, and a later
// activation is retried by the lifecycle anyway.
const DefaultMaxDeliveries = 60

// Engine is the lifecycle engine over one accounts bucket.
type Engine struct {
	conn  Conn
	store kv.Store
	opts  Options
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	trackers map[string]*presence.Tracker

	// kick wakes the reconcile loop at once after an API write, so that a
	// migration does not wait for the next tick to hand out its lease.
	kick chan struct{}
}

// New returns an engine over conn and the accounts store.
func New(conn Conn, store kv.Store, opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Sealer == nil {
		opts.Sealer = accounts.NewSealer(nil)
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = DefaultMaxDeliveries
	}
	if opts.ChecksumMismatches < 1 {
		opts.ChecksumMismatches = 2
	}
	return &Engine{conn: conn, store: store, opts: opts, log: opts.Logger, now: opts.Now, trackers: map[string]*presence.Tracker{}, kick: make(chan struct{}, 1)}
}

// wake asks the reconcile loop for a pass now; a pass already asked for
// covers this one too.
func (e *Engine) wake() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// Sealer seals inline kubeconfigs.
func (e *Engine) Sealer() *accounts.Sealer { return e.opts.Sealer }

// Presence returns the tracker of tenant, or nil before StartTenant.
func (e *Engine) Presence(tenant string) *presence.Tracker {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.trackers[tenant]
}

// StartTenant starts the tenant's presence follower and consumers; the
// returned function stops them.
func (e *Engine) StartTenant(ctx context.Context, tenant string) (func(context.Context) error, error) {
	tr := presence.NewTracker()
	e.mu.Lock()
	e.trackers[tenant] = tr
	e.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.followPresence(ctx, tenant, tr) })

	var consumers []queue.Consumer
	stop := func(sctx context.Context) error {
		err := queue.StopAll(sctx, consumers...)
		cancel()
		wg.Wait()
		return err
	}
	s := e.opts.Subjects
	for _, c := range []struct {
		subject string
		h       queue.Handler
	}{
		{s.AccountStatus(tenant), e.handleStatus(tenant)},
		{s.AllInventoryChecksums(tenant), e.handleChecksum(tenant)},
	} {
		// One delivery at a time: a watcher's reports about an account,
		// and its checksums of a kind ("mismatches in a row"), are
		// meaningful in order.
		cfg := queue.ConsumerConfig{Name: ConsumerName, Subject: c.subject, MaxDeliveries: e.opts.MaxDeliveries, Concurrency: 1}
		cons, err := e.conn.Consume(ctx, cfg, c.h)
		if err != nil {
			_ = stop(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("consume %s: %w", c.subject, err)
		}
		consumers = append(consumers, cons)
	}
	return stop, nil
}

// followPresence keeps the tenant's tracker fed, restarting the read after
// a broker error.
func (e *Engine) followPresence(ctx context.Context, tenant string, tr *presence.Tracker) {
	subject := e.opts.Subjects.AllWatcherPresence(tenant)
	for ctx.Err() == nil {
		err := tr.Follow(ctx, e.conn, subject, e.opts.PresenceWindow, e.log, e.opts.Metrics)
		if err == nil || ctx.Err() != nil {
			return
		}
		e.log.Warn("presence read failed; retrying", "tenant", tenant, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// decision is a transition computed inside a compare-and-set.
type decision func(r *accounts.Record) (*accounts.Record, accounts.Effects, bool, error)

// apply runs d on the current record of tenant/name inside kv.Mutate and
// returns the record written (or read, when nothing changed) and the
// effects of the last evaluation of d.
func (e *Engine) apply(ctx context.Context, tenant, name string, d decision) (*accounts.Record, accounts.Effects, error) {
	var (
		eff      accounts.Effects
		from, to accounts.State
		last     *accounts.Record
	)
	_, err := kv.Mutate(ctx, e.store, accounts.Key(tenant, name), mutateAttempts, func(cur []byte) ([]byte, bool, error) {
		r, err := accounts.Decode(cur)
		if err != nil {
			return nil, false, err
		}
		next, effects, changed, err := d(r)
		eff, from, to, last = effects, r.State, next.State, next
		if err != nil || !changed {
			to = from
			return nil, false, err
		}
		raw, err := next.Encode()
		return raw, true, err
	})
	if errors.Is(err, kv.ErrNotFound) {
		return nil, eff, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, eff, err
	}
	if from != to {
		e.opts.Metrics.Transition(tenant, string(from), string(to))
		e.log.Info("account state changed", "tenant", tenant, "account", name, "from", string(from), "to", string(to), "generation", last.Generation)
	}
	return last, eff, nil
}

// publishEffects sends the leases and commands a stored transition calls for.
func (e *Engine) publishEffects(ctx context.Context, tenant string, r *accounts.Record, eff accounts.Effects) error {
	var errs []error
	for _, h := range eff.Deactivate {
		errs = append(errs, e.sendControl(ctx, tenant, h.Zone, &accountsv1.AccountControl{
			Account: r.Name, Generation: h.Generation,
			Command: &accountsv1.AccountControl_Deactivate{Deactivate: &accountsv1.Deactivate{Reason: eff.Reason}},
		}))
	}
	for _, l := range eff.Leases {
		lease := &accountsv1.AccountLease{
			Envelope:   events.NewEnvelope(tenant, 1, fmt.Sprintf("%s-%d", r.Name, r.Generation), ""),
			Spec:       r.ProtoSpec(),
			Generation: r.Generation,
			Zone:       l.Zone,
			Offer:      l.Offer,
		}
		var err error
		if e.opts.Signer != nil {
			err = e.opts.Signer.Sign(lease, signing.Binding{Tenant: tenant, Scope: signing.ZoneScope(l.Zone), Subject: r.Name, Attempt: 1})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sign lease of %q to zone %q: %w", r.Name, l.Zone, err))
			continue
		}
		msg, err := events.Encode(e.opts.Subjects.Leases(tenant, l.Zone), lease, fmt.Sprintf("%s-%d", r.Name, r.Generation))
		if err == nil {
			err = e.conn.Publish(ctx, msg)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("publish lease of %q to zone %q: %w", r.Name, l.Zone, err))
			continue
		}
		e.log.Info("lease published", "tenant", tenant, "account", r.Name, "zone", l.Zone, "generation", r.Generation, "offer", l.Offer)
	}
	return errors.Join(errs...)
}

// sendControl publishes an AccountControl to every watcher of zone.
func (e *Engine) sendControl(ctx context.Context, tenant, zone string, c *accountsv1.AccountControl) error {
	c.Envelope = events.NewEnvelope(tenant, 1, "", "")
	msg, err := events.Encode(e.opts.Subjects.ZoneControl(tenant, zone), c, "")
	if err == nil {
		err = e.conn.Publish(ctx, msg)
	}
	if err != nil {
		return fmt.Errorf("publish control for %q to zone %q: %w", c.GetAccount(), zone, err)
	}
	return nil
}
