// Package tenants knows the scheduler's tenants: those configured, and those
// added at run time with PUT /api/v1/tenants/{tenant}, which are kept in the
// "tenants" KV bucket so that every replica and every restart sees them.
// Provisioning a tenant creates its queues, opens its stores and starts its
// consumers.
package tenants

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/limits"
	"github.com/outposthq/outpost/services/scheduler/internal/pools"
	"github.com/outposthq/outpost/services/scheduler/internal/presence"
	"github.com/outposthq/outpost/services/scheduler/internal/results"
	"github.com/outposthq/outpost/services/scheduler/internal/sources"
)

// Bucket is the KV bucket of the tenants added at run time.
const Bucket = "tenants"

// ErrUnknown is returned by Lookup for a tenant that is neither configured
// nor added.
var ErrUnknown = errors.New("unknown tenant")

// ErrInvalidName is returned for a tenant name that is not a subject token.
var ErrInvalidName = errors.New("invalid tenant name")

// ErrNotReady is returned before the configured tenants are provisioned.
var ErrNotReady = errors.New("tenants not provisioned yet")

// Tenant is a provisioned tenant and what the scheduler keeps of it.
type Tenant struct {
	Name     string
	Jobs     *jobs.Store
	Pools    *pools.Store
	Presence *presence.Tracker
	Results  *results.Store
	Sources  *sources.Store
	// Directory holds the tenant's users, teams, projects, environments
	// and deployments: the polling rules' inputs.
	Directory *directory.Store
	// Limits holds the jobs that hold or wait for a running-job slot.
	Limits *limits.Store

	// maxRunning is the tenant's limits.max_running_jobs (0: none); it
	// changes with PUT /api/v1/tenants/{tenant}, on other replicas at
	// their next refresh.
	maxRunning atomic.Int64
	// submits paces the tenant's submissions (limits.max_submits_per_second);
	// nil admits every one.
	submits atomic.Pointer[rate.Limiter]
}

// SetMaxSubmitsPerSecond changes how many of the tenant's submissions this
// replica admits per second (with a burst of one second's worth); 0 or
// less admits every one.
func (t *Tenant) SetMaxSubmitsPerSecond(r float64) {
	if r <= 0 {
		t.submits.Store(nil)
		return
	}
	burst := max(1, int(math.Ceil(r)))
	if l := t.submits.Load(); l != nil {
		l.SetLimit(rate.Limit(r))
		l.SetBurst(burst)
		return
	}
	t.submits.Store(rate.NewLimiter(rate.Limit(r), burst))
}

// ReserveSubmit takes the tenant's next submission slot: it returns how
// long until that slot (0: now) and a function that gives the slot back,
// for a submission that will not wait for it.
func (t *Tenant) ReserveSubmit() (delay time.Duration, cancel func()) {
	l := t.submits.Load()
	if l == nil {
		return 0, func() {}
	}
	res := l.Reserve()
	return res.Delay(), res.Cancel
}

// MaxRunningJobs is how many of the tenant's jobs may run at once; 0
// means no limit.
func (t *Tenant) MaxRunningJobs() int { return int(t.maxRunning.Load()) }

// SetMaxRunningJobs changes the limit of MaxRunningJobs (tests of the
// engine, and the registry).
func (t *Tenant) SetMaxRunningJobs(n int) { t.maxRunning.Store(int64(n)) }

// Info describes a tenant for the API.
type Info struct {
	Name   string        `json:"name"`
	Limits config.Limits `json:"limits"`
	// Configured tenants come from the configuration; the others were
	// added at run time.
	Configured bool      `json:"configured"`
	CreatedAt  time.Time `json:"created_at,omitzero"`
}

// Provisioner creates a tenant's queues (queue.Broker.EnsureTenant).
type Provisioner = queue.Provisioner

// Starter starts the long-lived parts of a tenant (its consumers) under ctx
// and returns a function that stops them.
type Starter func(ctx context.Context, t *Tenant) (stop func(context.Context) error, err error)

// Options configure a Registry.
type Options struct {
	Configured      []string
	Limits          config.Limits
	RefreshInterval time.Duration
	PresenceWindow  time.Duration
	Logger          *slog.Logger
}

type entry struct {
	tenant *Tenant
	info   Info
	stop   func(context.Context) error
}

// Registry holds the provisioned tenants. It is safe for concurrent use.
type Registry struct {
	opts   Options
	broker Provisioner
	opener kv.Opener
	start  Starter
	log    *slog.Logger

	store kv.Store // the tenants bucket, opened by Run

	provMu sync.Mutex // serialises provisioning
	mu     sync.RWMutex
	byName map[string]*entry
	runCtx context.Context
	ready  atomic.Bool
}

// NewRegistry returns a registry; Run provisions the tenants.
func NewRegistry(opts Options, broker Provisioner, opener kv.Opener, start Starter) *Registry {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Registry{opts: opts, broker: broker, opener: opener, start: start, log: opts.Logger, byName: map[string]*entry{}}
}

// Run provisions the configured tenants and those in the tenants bucket,
// then re-lists the bucket every refresh interval to pick up tenants added
// by other replicas, until ctx is done; then it stops every tenant's
// consumers, giving them until grace passes.
func (r *Registry) Run(ctx context.Context, grace time.Duration) error {
	defer r.stopAll(grace)
	store, err := r.opener.OpenStore(ctx, Bucket)
	if err != nil {
		return fmt.Errorf("open tenants bucket: %w", err)
	}
	r.mu.Lock()
	r.store = store
	r.runCtx = ctx
	r.mu.Unlock()
	// A broker that is up but refuses (or times out) is retried: the
	// service stays unready instead of exiting.
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 10*time.Second) {
		err := r.provisionConfigured(ctx)
		if err == nil {
			break
		}
		r.log.Warn("provision tenants failed", "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	r.ready.Store(true)
	r.log.Info("tenants provisioned", "tenants", r.Names())
	t := time.NewTicker(r.opts.RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.ready.Store(false)
			return nil
		case <-t.C:
			if err := r.refresh(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("refresh tenants failed", "error", err)
			}
		}
	}
}

// Ready reports nil once the tenants are provisioned.
func (r *Registry) Ready() error {
	if !r.ready.Load() {
		return ErrNotReady
	}
	return nil
}

// Lookup returns a provisioned tenant. A tenant added by another replica
// since the last refresh is provisioned here and then.
func (r *Registry) Lookup(ctx context.Context, name string) (*Tenant, error) {
	if !queue.ValidToken(name) {
		return nil, fmt.Errorf("%w: %q must be 1 to 64 characters of [A-Za-z0-9_-]", ErrInvalidName, name)
	}
	r.mu.RLock()
	e, store := r.byName[name], r.store
	r.mu.RUnlock()
	if e != nil {
		return e.tenant, nil
	}
	if store == nil || !r.ready.Load() {
		return nil, ErrNotReady
	}
	kvEntry, err := store.Get(ctx, name)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrUnknown, name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up tenant %s: %w", name, err)
	}
	info, err := decode(kvEntry.Value)
	if err != nil {
		return nil, err
	}
	return r.provision(ctx, info)
}

// Add records a tenant in the tenants bucket (or updates its limits) and
// provisions it. created is false when the tenant existed.
func (r *Registry) Add(ctx context.Context, name string, limits *config.Limits, now time.Time) (Info, bool, error) {
	if !queue.ValidToken(name) {
		return Info{}, false, fmt.Errorf("%w: %q must be 1 to 64 characters of [A-Za-z0-9_-]", ErrInvalidName, name)
	}
	r.mu.RLock()
	e, store := r.byName[name], r.store
	r.mu.RUnlock()
	if store == nil || !r.ready.Load() {
		return Info{}, false, ErrNotReady
	}
	if e != nil && e.info.Configured {
		return r.overrideConfigured(ctx, store, e, limits)
	}
	info := Info{Name: name, Limits: r.opts.Limits, CreatedAt: now}
	if limits != nil {
		info.Limits = *limits
	}
	// Queues first: a tenant in the bucket always has its queues.
	if err := r.broker.EnsureTenant(ctx, name, info.Limits.Queue()); err != nil {
		return Info{}, false, fmt.Errorf("provision tenant %s: %w", name, err)
	}
	b, err := json.Marshal(info)
	if err != nil {
		return Info{}, false, fmt.Errorf("encode tenant %s: %w", name, err)
	}
	created := true
	if _, err := store.Create(ctx, name, b); errors.Is(err, kv.ErrExists) {
		created = false
		cur, err := store.Get(ctx, name)
		if err != nil {
			return Info{}, false, fmt.Errorf("get tenant %s: %w", name, err)
		}
		old, err := decode(cur.Value)
		if err != nil {
			return Info{}, false, err
		}
		info.CreatedAt = old.CreatedAt
		if limits == nil || *limits == old.Limits {
			info = old
		} else if b, err = json.Marshal(info); err != nil {
			return Info{}, false, fmt.Errorf("encode tenant %s: %w", name, err)
		} else if _, err := store.Update(ctx, name, b, cur.Revision); err != nil {
			return Info{}, false, fmt.Errorf("update tenant %s: %w", name, err)
		}
	} else if err != nil {
		return Info{}, false, fmt.Errorf("add tenant %s: %w", name, err)
	}
	if _, err := r.provision(ctx, info); err != nil {
		return Info{}, false, err
	}
	r.applyStored(info)
	return info, created, nil
}

// List returns every provisioned tenant, by name.
func (r *Registry) List() []Info {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]Info, 0, len(r.byName))
	for _, e := range r.byName {
		out = append(out, e.info)
	}
	slices.SortFunc(out, func(a, b Info) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Names returns the names of the provisioned tenants, sorted.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.byName))
}

// Tenants returns every provisioned tenant, by name.
func (r *Registry) Tenants() []*Tenant {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]*Tenant, 0, len(r.byName))
	for _, e := range r.byName {
		out = append(out, e.tenant)
	}
	slices.SortFunc(out, func(a, b *Tenant) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Trackers returns the presence tracker of every tenant, by name.
func (r *Registry) Trackers() map[string]*presence.Tracker {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make(map[string]*presence.Tracker, len(r.byName))
	for n, e := range r.byName {
		out[n] = e.tenant.Presence
	}
	return out
}

func (r *Registry) provisionConfigured(ctx context.Context) error {
	for _, name := range r.opts.Configured {
		if _, err := r.provision(ctx, Info{Name: name, Limits: r.opts.Limits, Configured: true}); err != nil {
			return err
		}
	}
	return r.refresh(ctx)
}

func (r *Registry) refresh(ctx context.Context) error {
	var infos []Info
	err := r.store.List(ctx, func(e kv.Entry) bool {
		info, err := decode(e.Value)
		if err != nil {
			r.log.Warn("skip undecodable tenant entry", "key", e.Key, "error", err)
			return true
		}
		infos = append(infos, info)
		return true
	})
	if err != nil {
		return fmt.Errorf("list tenants: %w", err)
	}
	var errs []error
	for _, info := range infos {
		if r.applyStored(info) {
			continue
		}
		if _, err := r.provision(ctx, info); err != nil {
			errs = append(errs, err) // the others are still provisioned
		}
	}
	return errors.Join(errs...)
}

// applyStored brings a provisioned tenant's limits to what the bucket
// holds (a PUT through another replica), and reports whether the tenant
// was provisioned. A configured tenant takes only its running-job and
// submission-rate limits from the bucket: its broker limits are the
// configuration's.
func (r *Registry) applyStored(info Info) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.byName[info.Name]
	if e == nil {
		return false
	}
	if e.info.Configured {
		e.info.Limits.MaxRunningJobs = info.Limits.MaxRunningJobs
		e.info.Limits.MaxSubmitsPerSecond = info.Limits.MaxSubmitsPerSecond
	} else {
		e.info = info
	}
	e.tenant.SetMaxRunningJobs(e.info.Limits.MaxRunningJobs)
	e.tenant.SetMaxSubmitsPerSecond(e.info.Limits.MaxSubmitsPerSecond)
	return true
}

// overrideConfigured stores a configured tenant's running-job and
// submission-rate limits in
// the tenants bucket, so that every replica and restart applies it; its
// broker limits stay the configuration's.
func (r *Registry) overrideConfigured(ctx context.Context, store kv.Store, e *entry, limits *config.Limits) (Info, bool, error) {
	r.mu.RLock()
	info := e.info
	r.mu.RUnlock()
	if limits == nil || (limits.MaxRunningJobs == info.Limits.MaxRunningJobs && limits.MaxSubmitsPerSecond == info.Limits.MaxSubmitsPerSecond) {
		return info, false, nil
	}
	info.Limits.MaxRunningJobs = limits.MaxRunningJobs
	info.Limits.MaxSubmitsPerSecond = limits.MaxSubmitsPerSecond
	b, err := json.Marshal(info)
	if err != nil {
		return Info{}, false, fmt.Errorf("encode tenant %s: %w", info.Name, err)
	}
	_, err = kv.Mutate(ctx, store, info.Name, 0, func([]byte) ([]byte, bool, error) { return b, true, nil })
	if errors.Is(err, kv.ErrNotFound) {
		_, err = store.Create(ctx, info.Name, b)
	}
	if err != nil {
		return Info{}, false, fmt.Errorf("store the limits of tenant %s: %w", info.Name, err)
	}
	r.applyStored(info)
	return info, false, nil
}

// provision makes the tenant usable here (once): queues, stores, consumers.
func (r *Registry) provision(ctx context.Context, info Info) (*Tenant, error) {
	r.provMu.Lock()
	defer r.provMu.Unlock()
	r.mu.RLock()
	e, runCtx := r.byName[info.Name], r.runCtx
	r.mu.RUnlock()
	if e != nil {
		return e.tenant, nil
	}
	name := info.Name
	if err := r.broker.EnsureTenant(ctx, name, info.Limits.Queue()); err != nil {
		return nil, fmt.Errorf("provision tenant %s: %w", name, err)
	}
	jobsKV, err := r.opener.OpenStore(ctx, "jobs_"+name)
	if err != nil {
		return nil, fmt.Errorf("open jobs bucket of tenant %s: %w", name, err)
	}
	poolsKV, err := r.opener.OpenStore(ctx, "pools_"+name)
	if err != nil {
		return nil, fmt.Errorf("open pools bucket of tenant %s: %w", name, err)
	}
	stores := map[string]kv.Store{}
	for _, b := range []string{"results_", "metadata_", "sources_", "directory_", limits.Bucket} {
		s, err := r.opener.OpenStore(ctx, b+name)
		if err != nil {
			return nil, fmt.Errorf("open %sbucket of tenant %s: %w", b, name, err)
		}
		stores[b] = s
	}
	t := &Tenant{
		Name:      name,
		Jobs:      jobs.NewStore(jobsKV),
		Pools:     pools.NewStore(poolsKV),
		Results:   results.NewStore(stores["results_"], stores["metadata_"]),
		Sources:   sources.NewStore(stores["sources_"]),
		Directory: directory.NewStore(stores["directory_"], name),
		Limits:    limits.NewStore(stores[limits.Bucket]),
		Presence:  presence.NewTracker(r.opts.PresenceWindow, time.Now().Add(-r.opts.PresenceWindow)),
	}
	t.SetMaxRunningJobs(info.Limits.MaxRunningJobs)
	t.SetMaxSubmitsPerSecond(info.Limits.MaxSubmitsPerSecond)
	// Consumers live as long as the registry runs, not as the request
	// that provisioned the tenant.
	stop, err := r.start(runCtx, t)
	if err != nil {
		return nil, fmt.Errorf("start consumers of tenant %s: %w", name, err)
	}
	r.mu.Lock()
	r.byName[name] = &entry{tenant: t, info: info, stop: stop}
	r.mu.Unlock()
	r.log.Info("tenant provisioned", "tenant", name, "configured", info.Configured)
	return t, nil
}

func (r *Registry) stopAll(grace time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	r.mu.Lock()
	entries := slices.Collect(maps.Values(r.byName))
	r.byName = map[string]*entry{}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, e := range entries {
		wg.Go(func() {
			if err := e.stop(ctx); err != nil {
				r.log.Warn("stop tenant consumers failed", "tenant", e.info.Name, "error", err)
			}
		})
	}
	wg.Wait()
}

func decode(b []byte) (Info, error) {
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("decode tenant entry: %w", err)
	}
	if !queue.ValidToken(info.Name) {
		return Info{}, fmt.Errorf("decode tenant entry: %w: %q", ErrInvalidName, info.Name)
	}
	return info, nil
}
