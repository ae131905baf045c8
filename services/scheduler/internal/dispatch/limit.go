package dispatch

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/outposthq/outpost/services/scheduler/internal/explain"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// A tenant's limits.max_running_jobs bounds its jobs dispatched and not
// ended. A job is given a slot where it would be dispatched (admit, after
// the pause and the polling rules); a job refused one stays QUEUED,
// undispatched: a wait entry is written in the tenant's limits bucket,
// then its record is marked limited (for explain). Its SubmitJob is
// acknowledged only afterwards, so a crash in between submits it again.
//
// Every replica looks at the slots and the waiters after a job of the
// tenant ends through it and every GateInterval: the slots of ended jobs
// are given back (also those a crash kept from being given back), and
// the oldest waiters are dispatched while slots are free. Slots are
// written with compare-and-set, so replicas together never hand out more
// than the limit. A job dispatched while the tenant had no limit holds no
// slot.

// limitState is one tenant's trigger of the limits pass.
type limitState struct {
	kick chan struct{}
	// active: the tenant may hold slots or waiters although it has no
	// limit now (set at start and when a slot is taken); a pass that
	// finds none clears it, so that a tenant without a limit costs no
	// reads.
	mu     sync.Mutex
	active bool
}

func (e *Engine) limitStateOf(t *tenants.Tenant) *limitState {
	return tenantState(&e.limits, t, func() *limitState { return &limitState{kick: make(chan struct{}, 1), active: true} })
}

// jobEnded is called when a job of t reaches a terminal state through this
// replica: its slot, if it held one, goes to the oldest waiter.
func (e *Engine) jobEnded(t *tenants.Tenant) {
	select {
	case e.limitStateOf(t).kick <- struct{}{}:
	default:
	}
}

// takeSlot reports whether rec may be dispatched under its tenant's
// running-job limit; when not, it records the job as waiting.
func (e *Engine) takeSlot(ctx context.Context, t *tenants.Tenant, rec *jobs.Record) (bool, error) {
	limit := t.MaxRunningJobs()
	if limit <= 0 {
		return true, nil
	}
	s := e.limitStateOf(t)
	s.mu.Lock()
	s.active = true
	s.mu.Unlock()
	ok, inUse, err := t.Limits.Take(ctx, rec.ID, limit)
	if err != nil || ok {
		return ok, err
	}
	if err := t.Limits.Wait(ctx, rec.ID, rec.CreatedAt); err != nil {
		return false, err
	}
	_, changed, err := t.Jobs.Update(ctx, rec.ID, func(r *jobs.Record) (bool, error) {
		if r.State != jobs.StateQueued || r.Attempt != 0 || r.Limited {
			return false, nil
		}
		r.Limited = true
		r.UpdatedAt = e.now()
		return true, nil
	})
	if err != nil {
		return false, err
	}
	if changed {
		e.log.Info("job waits for its tenant's running-job limit", "tenant", t.Name, "job_id", rec.ID, "running", inUse, "limit", limit)
	}
	return false, nil
}

// runLimits runs the limits pass of t after each job end through this
// replica and every GateInterval, until ctx is done.
func (e *Engine) runLimits(ctx context.Context, t *tenants.Tenant) {
	s := e.limitStateOf(t)
	tick := time.NewTicker(e.opts.GateInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-s.kick:
		}
		s.mu.Lock()
		active := s.active
		s.mu.Unlock()
		if !active && t.MaxRunningJobs() <= 0 {
			continue
		}
		busy, err := e.passLimits(ctx, t)
		if err != nil && ctx.Err() == nil {
			e.log.Warn("running-job limit pass failed", "tenant", t.Name, "error", err)
			continue
		}
		if !busy {
			s.mu.Lock()
			s.active = false
			s.mu.Unlock()
		}
	}
}

// passLimits gives back the slots of ended jobs and dispatches the oldest
// waiters while slots are free. busy reports slots or waiters left.
func (e *Engine) passLimits(ctx context.Context, t *tenants.Tenant) (busy bool, err error) {
	running, err := t.Limits.Running(ctx)
	if err != nil {
		return true, err
	}
	var ended []string
	for _, id := range running {
		rec, err := t.Jobs.Get(ctx, id)
		switch {
		case errors.Is(err, jobs.ErrNotFound) || errors.Is(err, jobs.ErrCorrupt):
			ended = append(ended, id)
		case err != nil:
			return true, err
		case rec.State.Terminal():
			ended = append(ended, id)
		}
	}
	if err := t.Limits.Release(ctx, ended...); err != nil {
		return true, err
	}
	running = slices.DeleteFunc(running, func(id string) bool { return slices.Contains(ended, id) })
	waiters, err := t.Limits.Waiting(ctx)
	if err != nil {
		return true, err
	}
	var errs []error
	left := len(waiters)
	for _, w := range waiters {
		if limit := t.MaxRunningJobs(); limit > 0 && len(running) >= limit {
			break
		}
		rec, err := t.Jobs.Get(ctx, w.Job)
		if err != nil && !errors.Is(err, jobs.ErrNotFound) && !errors.Is(err, jobs.ErrCorrupt) {
			errs = append(errs, err)
			continue
		}
		if err == nil && rec.State == jobs.StateQueued && rec.Attempt == 0 && !slices.Contains(running, rec.ID) {
			// admit takes the slot (or, were it taken meanwhile by
			// another replica, waits again), dispatches and clears the
			// mark; the polling rules are looked at again too.
			if err := e.admit(ctx, t, rec); err != nil {
				errs = append(errs, err)
				continue
			}
			if cur, err := t.Limits.Running(ctx); err == nil {
				running = cur
			}
			if !slices.Contains(running, rec.ID) && t.MaxRunningJobs() > 0 {
				continue // refused again: still waiting
			}
			e.log.Info("job dispatched under its tenant's running-job limit", "tenant", t.Name, "job_id", rec.ID, "running", len(running), "limit", t.MaxRunningJobs())
		}
		if err := t.Limits.Unwait(ctx, w.Key); err != nil {
			errs = append(errs, err)
			continue
		}
		left--
	}
	return len(running) > 0 || left > 0, errors.Join(errs...)
}

// tenantLimit is what explain says of a job waiting for a slot.
func (e *Engine) tenantLimit(ctx context.Context, t *tenants.Tenant, rec *jobs.Record) (*explain.TenantLimit, error) {
	if !rec.Limited || rec.State != jobs.StateQueued || rec.Attempt != 0 {
		return nil, nil
	}
	running, err := t.Limits.Running(ctx)
	if err != nil {
		return nil, err
	}
	waiters, err := t.Limits.Waiting(ctx)
	if err != nil {
		return nil, err
	}
	l := &explain.TenantLimit{Tenant: t.Name, Limit: t.MaxRunningJobs(), Running: len(running), Waiting: len(waiters)}
	for i, w := range waiters {
		if w.Job == rec.ID {
			l.Position = i + 1
		}
	}
	return l, nil
}
