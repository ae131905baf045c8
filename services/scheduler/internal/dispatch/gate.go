package dispatch

import (
	"context"
	"errors"
	"time"

	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// The polling rules (package directory) decide whether a pool's
// deployment may take a job. A job they refuse is not failed: it stays
// QUEUED, marked gated in its record and indexed in the directory bucket
// ("gated.<job>"), and every replica looks at the gated jobs again when a
// directory write goes through it and every GateInterval, so a change
// made through another replica is seen too. A pool without a registered
// deployment takes every job of its tenant, as before deployments existed.
//
// The record is marked before the index is written: an index entry whose
// record is not gated (any more) is a job admitted since, and is dropped.
// A crash between the two leaves a gated record without an index entry;
// the submit is then redelivered (it is acknowledged only afterwards) and
// gates the job again, and a tenant's start indexes every gated record it
// finds (a resume's release cut short).

// admit dispatches a QUEUED job that has not run, unless the polling rules
// of its pool's deployment refuse it; then it gates the job. The rules are
// read as this replica saw them within the last second: a job costs no
// read of the directory, and regate re-checks gated jobs on a fresh read.
func (e *Engine) admit(ctx context.Context, t *tenants.Tenant, rec *jobs.Record) error {
	c, err := t.Directory.GateCached(ctx, rec.Pool, rec.User, rec.Project)
	if err != nil {
		return err
	}
	return e.admitChecked(ctx, t, rec, c)
}

func (e *Engine) admitChecked(ctx context.Context, t *tenants.Tenant, rec *jobs.Record, c *directory.Check) error {
	if c != nil && !c.Allowed {
		return e.gate(ctx, t, rec, c)
	}
	// The tenant's running-job limit (limit.go).
	if ok, err := e.takeSlot(ctx, t, rec); err != nil || !ok {
		return err
	}
	// The dispatch comes first: a crash before the marks are cleared
	// leaves the job held or gated, to be dispatched again (and
	// deduplicated) later.
	if err := e.dispatch(ctx, t, rec); err != nil {
		return err
	}
	if !rec.Held && !rec.Gated && !rec.Limited {
		return nil
	}
	wasGated := false
	_, _, err := t.Jobs.Update(ctx, rec.ID, func(r *jobs.Record) (bool, error) {
		wasGated = r.Gated
		if !r.Held && !r.Gated && !r.Limited {
			return false, nil
		}
		r.Held, r.Gated, r.Limited = false, false, false
		r.UpdatedAt = e.now()
		return true, nil
	})
	if err != nil {
		return err
	}
	if wasGated || rec.Gated {
		rule := "no deployment"
		if c != nil {
			rule = c.Rule
		}
		e.log.Info("gated job admitted", "tenant", t.Name, "job_id", rec.ID, "pool", rec.Pool, "user", rec.User, "project", rec.Project, "rule", rule)
		return t.Directory.UnmarkGated(ctx, rec.ID)
	}
	return nil
}

// gate marks a job no deployment may take: gated in its record (no longer
// held: the rules, not a pause, keep it), then in the index.
func (e *Engine) gate(ctx context.Context, t *tenants.Tenant, rec *jobs.Record, c *directory.Check) error {
	cur, changed, err := t.Jobs.Update(ctx, rec.ID, func(r *jobs.Record) (bool, error) {
		if r.State != jobs.StateQueued || r.Attempt != 0 || (r.Gated && !r.Held) {
			return false, nil
		}
		r.Gated, r.Held = true, false
		r.UpdatedAt = e.now()
		return true, nil
	})
	if err != nil {
		return err
	}
	if !cur.Gated || cur.State != jobs.StateQueued || cur.Attempt != 0 {
		return nil // it ran or ended meanwhile
	}
	if err := t.Directory.MarkGated(ctx, directory.Gated{Job: rec.ID, Pool: rec.Pool, At: e.now()}); err != nil {
		return err
	}
	if changed {
		e.log.Info("job gated by the polling rules", "tenant", t.Name, "job_id", rec.ID, "pool", rec.Pool, "user", rec.User, "project", rec.Project, "why", c.Summary())
	}
	return nil
}

// runGate looks at the tenant's gated jobs again after each directory
// write through this replica and every GateInterval, until ctx is done.
func (e *Engine) runGate(ctx context.Context, t *tenants.Tenant) {
	tick := time.NewTicker(e.opts.GateInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-t.Directory.Changed():
		}
		if err := e.regate(ctx, t); err != nil && ctx.Err() == nil {
			e.log.Warn("re-check gated jobs failed", "tenant", t.Name, "error", err)
		}
	}
}

// regate dispatches the gated jobs the polling rules now admit, oldest
// first, and drops the index entries of jobs that are no longer gated.
func (e *Engine) regate(ctx context.Context, t *tenants.Tenant) error {
	gated, err := t.Directory.ListGated(ctx)
	if err != nil || len(gated) == 0 {
		return err
	}
	snap, err := t.Directory.Snapshot(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, g := range gated {
		if err := e.regateOne(ctx, t, snap, g.Job); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) regateOne(ctx context.Context, t *tenants.Tenant, snap *directory.Snapshot, id string) error {
	rec, err := t.Jobs.Get(ctx, id)
	if errors.Is(err, jobs.ErrNotFound) || errors.Is(err, jobs.ErrCorrupt) {
		return t.Directory.UnmarkGated(ctx, id)
	}
	if err != nil {
		return err
	}
	if !rec.Gated || rec.State != jobs.StateQueued || rec.Attempt != 0 {
		return t.Directory.UnmarkGated(ctx, id)
	}
	if paused, err := t.Pools.PausedCached(ctx, rec.Pool); err != nil || paused {
		return err // a paused pool's jobs wait for the resume, gated or not
	}
	c := snap.Check(rec.Pool, rec.User, rec.Project)
	if c != nil && !c.Allowed {
		return nil
	}
	return e.admitChecked(ctx, t, rec, c)
}

// indexGated indexes the gated records rs (a tenant's start): a gate cut
// short between its record and its index would leave the job unseen.
func (e *Engine) indexGated(ctx context.Context, t *tenants.Tenant, rs []*jobs.Record) error {
	var errs []error
	for _, r := range rs {
		if err := t.Directory.MarkGated(ctx, directory.Gated{Job: r.ID, Pool: r.Pool, At: r.UpdatedAt}); err != nil {
			errs = append(errs, err)
		}
	}
	if len(rs) > 0 {
		t.Directory.Kick()
	}
	return errors.Join(errs...)
}
