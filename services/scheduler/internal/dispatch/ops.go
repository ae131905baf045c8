package dispatch

import (
	"context"
	"fmt"
	"time"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/explain"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/pools"
	"github.com/outposthq/outpost/services/scheduler/internal/presence"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// DefaultCancelReason is the reason of a cancel that gives none.
const DefaultCancelReason = "cancelled by user"

// Cancel ends a QUEUED or RUNNING job as CANCELLED at once. A RUNNING job's
// runner (the record's runner_id) is told to stop it on its own control
// subject. A QUEUED job has no runner to tell: a runner that takes it later
// reports it RUNNING, and the status consumer then tells that runner (see
// applyJobStatus). It returns jobs.ErrTerminal for a job that has ended and
// jobs.ErrNotFound for an unknown one. If the cancel cannot be published
// the record stays CANCELLED and the error says so; the runner is told
// again when it next reports the job RUNNING.
func (e *Engine) Cancel(ctx context.Context, t *tenants.Tenant, id, reason string) (*jobs.Record, error) {
	if reason == "" {
		reason = DefaultCancelReason
	}
	var running bool
	var runnerID string
	rec, _, err := t.Jobs.Update(ctx, id, func(r *jobs.Record) (bool, error) {
		running, runnerID = r.State == jobs.StateRunning, r.RunnerID
		return true, r.Cancel(reason, e.now(), e.opts.HistoryLimit)
	})
	if err != nil {
		return nil, err
	}
	e.m.Jobs.WithLabelValues(string(jobs.StateCancelled)).Inc()
	e.log.Info("job cancelled", "tenant", t.Name, "job_id", id, "attempt", rec.Attempt, "runner_id", runnerID, "running", running, "reason", reason)
	if !running {
		return rec, nil
	}
	if err := e.sendCancel(ctx, t, rec, runnerID, rec.Attempt, reason); err != nil {
		return rec, fmt.Errorf("job cancelled, but the cancel was not sent to runner %q: %w", runnerID, err)
	}
	return rec, nil
}

// SetPaused pauses or resumes a pool. Resuming dispatches the jobs held
// while it was paused and returns how many.
func (e *Engine) SetPaused(ctx context.Context, t *tenants.Tenant, pool string, paused bool) (pools.State, int, error) {
	st, err := t.Pools.Set(ctx, pool, paused, e.now())
	if err != nil {
		return pools.State{}, 0, err
	}
	e.log.Info("pool state set", "tenant", t.Name, "pool", pool, "paused", paused)
	if paused {
		return st, 0, nil
	}
	n, err := e.releaseHeld(ctx, t, pool)
	if err != nil {
		return st, n, fmt.Errorf("pool resumed, but dispatching its held jobs failed after %d (resume again to retry): %w", n, err)
	}
	return st, n, nil
}

// Explain says why a job is in its state.
func (e *Engine) Explain(ctx context.Context, t *tenants.Tenant, id string) (explain.Explanation, error) {
	rec, err := t.Jobs.Get(ctx, id)
	if err != nil {
		return explain.Explanation{}, err
	}
	st, err := t.Pools.Get(ctx, rec.Pool)
	if err != nil {
		return explain.Explanation{}, err
	}
	// The polling rules matter to a job not yet on its pool's queue.
	var checks []directory.Check
	if rec.State == jobs.StateQueued && rec.Attempt == 0 {
		c, err := t.Directory.Gate(ctx, rec.Pool, rec.User, rec.Project)
		if err != nil {
			return explain.Explanation{}, err
		}
		if c != nil {
			checks = append(checks, *c)
		}
	}
	now := e.now()
	var others []string
	for pool, n := range t.Presence.Counts(now) {
		if pool != rec.Pool && n > 0 {
			others = append(others, pool)
		}
	}
	runners := t.Presence.Pool(rec.Pool, now)
	// A silent runner's job is promised a redelivery only while the
	// queue holds its work message (looked up for a silent runner only:
	// it walks the pool's queue).
	var queued *bool
	if lister, ok := e.broker.(queue.WorkLister); ok && rec.State == jobs.StateRunning && silent(runners, rec.RunnerID, now, t.Presence.Window()) {
		q, err := e.workQueued(ctx, t, lister, rec)
		if err != nil {
			return explain.Explanation{}, err
		}
		queued = &q
	}
	limit, err := e.tenantLimit(ctx, t, rec)
	if err != nil {
		return explain.Explanation{}, err
	}
	return explain.Explain(explain.Input{
		TenantLimit:   limit,
		WorkQueued:    queued,
		LostAfter:     e.opts.LostAfter,
		Job:           rec,
		Pool:          st,
		Deployments:   checks,
		Runners:       runners,
		OtherPools:    others,
		Window:        t.Presence.Window(),
		WatchingSince: t.Presence.WatchingSince(),
		Now:           now,
	}), nil
}

// silent reports whether runner id is among runners and sent no heartbeat
// within window, as explain's RUNNER_SILENT says.
func silent(runners []presence.Runner, id string, now time.Time, window time.Duration) bool {
	for _, r := range runners {
		if r.ID == id {
			return now.Sub(r.LastSeen) > window
		}
	}
	return false
}

func presenceRunner(hb *jobsv1.RunnerHeartbeat, pool string, seen time.Time) presence.Runner {
	return presence.Runner{
		ID:       hb.RunnerId,
		Pool:     pool,
		Version:  hb.Version,
		Running:  int(hb.Running),
		Capacity: int(hb.Capacity),
		Draining: hb.Draining,
		LastSeen: seen,
	}
}
