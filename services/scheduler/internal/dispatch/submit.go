package dispatch

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/telemetry"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// errInvalidSubmit is wrapped by the reasons a SubmitJob is dead-lettered
// for although it decodes.
var errInvalidSubmit = errors.New("invalid SubmitJob")

// handleSubmit creates the record of a submitted job and dispatches it.
//
//   - A message that does not decode, or has an id that cannot be a job id,
//     or names another tenant, is dead-lettered (there is no id to keep a
//     record under, or it is not this tenant's to keep).
//   - A job without an id gets one derived from the message, the same on
//     every redelivery.
//   - An invalid spec creates the job FAILED with "invalid spec: <field>:
//     <problem>": whoever submitted it on the queue finds the reason under
//     the job id rather than in the dead-letter queue.
//   - A job of a paused pool is created QUEUED and held; resume dispatches it.
//   - A second submit of an id is acknowledged without effect, except when
//     it is the redelivery of a submit whose processing was cut short: then
//     the dispatch is repeated (the broker drops it if it had happened).
func (e *Engine) handleSubmit(t *tenants.Tenant) queue.Handler {
	return func(ctx context.Context, d queue.Delivery) {
		// A tenant's submission rate holds its SubmitJobs on the durable
		// queue: the consumer takes no more than its handlers, and one
		// waiting keeps its delivery; stopped while waiting, the delivery
		// is not settled and comes back.
		if delay, cancel := t.ReserveSubmit(); delay > 0 {
			e.m.SubmitsThrottled.WithLabelValues("queue").Inc()
			if !e.hold(ctx, d, delay) {
				cancel()
				return
			}
		}
		m, err := events.DecodeAs[*jobsv1.SubmitJob](d.Header(), d.Data())
		if err != nil {
			e.poison(ctx, d, queue.RoleSubmit, err)
			return
		}
		id, err := submitID(m, d.Data())
		if err != nil {
			e.poison(ctx, d, queue.RoleSubmit, err)
			return
		}
		if tn := m.GetEnvelope().GetTenant(); tn != "" && tn != t.Name {
			e.poison(ctx, d, queue.RoleSubmit, fmt.Errorf("%w: envelope tenant %q on a subject of tenant %q", errInvalidSubmit, tn, t.Name))
			return
		}
		ctx, span := startSpan(events.TraceContext(ctx, m.GetEnvelope()), "scheduler.record", t, id)
		defer span.End()
		rec, err := e.createRecord(ctx, t, id, m.GetSpec(), m.GetUser(), m.GetEnvelope().GetTraceId())
		switch {
		case errors.Is(err, jobs.ErrExists) && d.Attempt() == 1:
			e.log.Debug("duplicate submit ignored", "tenant", t.Name, "job_id", id)
			e.ack(ctx, d)
			return
		case errors.Is(err, jobs.ErrExists):
			rec, err = t.Jobs.Get(ctx, id)
		}
		if errors.Is(err, jobs.ErrCorrupt) {
			e.poison(ctx, d, queue.RoleSubmit, err)
			return
		}
		if err != nil {
			e.retryLater(ctx, d, err)
			return
		}
		if rec.State == jobs.StateQueued && rec.Attempt == 0 {
			if err := e.dispatchOrHold(ctx, t, rec); err != nil {
				e.retryLater(ctx, d, err)
				return
			}
		}
		e.ack(ctx, d)
	}
}

func submitID(m *jobsv1.SubmitJob, data []byte) (string, error) {
	if m.JobId != "" {
		if !queue.ValidToken(m.JobId) {
			return "", fmt.Errorf("%w: job_id %q must be 1 to 64 characters of [A-Za-z0-9_-]", errInvalidSubmit, m.JobId)
		}
		return m.JobId, nil
	}
	env := m.GetEnvelope()
	key := []byte(env.GetEventId())
	if len(key) == 0 {
		key = data
	}
	return jobs.DeriveID(env.GetOccurredAt().AsTime(), key), nil
}

// createRecord validates the spec and stores the job's first record:
// QUEUED (held when the pool is paused), or FAILED when the spec is invalid.
func (e *Engine) createRecord(ctx context.Context, t *tenants.Tenant, id string, spec *jobsv1.JobSpec, user, traceID string) (*jobs.Record, error) {
	norm, verr := jobs.NormalizeSpec(spec, e.opts.Policy)
	return e.storeRecord(ctx, t, id, spec, norm, verr, user, traceID, false)
}

// storeRecord stores the first record of a job whose spec was normalised
// to norm, or failed to with verr; direct marks a job the API created
// itself (direct.go).
func (e *Engine) storeRecord(ctx context.Context, t *tenants.Tenant, id string, spec, norm *jobsv1.JobSpec, verr error, user, traceID string, direct bool) (*jobs.Record, error) {
	now := e.now()
	var rec *jobs.Record
	if verr == nil && user != "" {
		verr = directory.CheckUserID(user, "user")
	}
	if verr != nil {
		rec = jobs.NewRejectedRecord(id, t.Name, spec, "invalid spec: "+verr.Error(), now)
	} else {
		paused, err := t.Pools.PausedCached(ctx, norm.Pool)
		if err != nil {
			return nil, err
		}
		rec = jobs.NewRecord(id, t.Name, norm, now, paused)
	}
	rec.TraceID = traceID
	// The dispatch, now or after a hold, continues the trace from here.
	rec.TraceContext = telemetry.Inject(ctx)
	if tid := telemetry.TraceID(ctx); tid != "" {
		rec.TraceID = tid
	}
	rec.User = user
	rec.Direct = direct && verr == nil
	if err := t.Jobs.Create(ctx, rec); err != nil {
		return nil, err
	}
	e.m.Jobs.WithLabelValues(string(rec.State)).Inc()
	if verr != nil {
		e.log.Info("job rejected", "tenant", t.Name, "job_id", id, "reason", rec.Reason)
	} else {
		e.log.Debug("job created", "tenant", t.Name, "job_id", id, "pool", rec.Pool, "held", rec.Held)
	}
	return rec, nil
}

// dispatchOrHold dispatches a QUEUED job that has not run, if the polling
// rules of its pool's deployment admit it (gate.go). A held job is
// released only if its pool is no longer paused: the pause is read again
// after the record was written, so that a resume between the submit
// consumer's first look and its write cannot strand the job.
func (e *Engine) dispatchOrHold(ctx context.Context, t *tenants.Tenant, rec *jobs.Record) error {
	if !rec.Held {
		return e.admit(ctx, t, rec)
	}
	paused, err := t.Pools.Paused(ctx, rec.Pool)
	if err != nil || paused {
		return err
	}
	return e.release(ctx, t, rec)
}

// release dispatches a held job, if the polling rules admit it (else it
// gates it), and clears its hold. The dispatch comes first: a crash in
// between leaves the job held, to be dispatched again (and deduplicated)
// by the next release.
func (e *Engine) release(ctx context.Context, t *tenants.Tenant, rec *jobs.Record) error {
	return e.admit(ctx, t, rec)
}

// releaseHeld dispatches the held jobs of pool ("" for every pool that is
// not paused), oldest first, and returns how many it dispatched.
func (e *Engine) releaseHeld(ctx context.Context, t *tenants.Tenant, pool string) (int, error) {
	var held, gated []*jobs.Record
	err := t.Jobs.List(ctx, func(r *jobs.Record) bool {
		if r.Held && r.State == jobs.StateQueued && (pool == "" || r.Pool == pool) {
			held = append(held, r)
		}
		if pool == "" && r.Gated && !r.Held && r.State == jobs.StateQueued && r.Attempt == 0 {
			gated = append(gated, r)
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	if err := e.indexGated(ctx, t, gated); err != nil {
		return 0, err
	}
	slices.SortFunc(held, func(a, b *jobs.Record) int { return a.CreatedAt.Compare(b.CreatedAt) })
	paused := map[string]bool{}
	n := 0
	for _, r := range held {
		p, seen := paused[r.Pool]
		if !seen {
			if p, err = t.Pools.Paused(ctx, r.Pool); err != nil {
				return n, err
			}
			paused[r.Pool] = p
		}
		if p {
			continue
		}
		if err := e.release(ctx, t, r); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// releaseAllHeld runs once when a tenant starts: it dispatches jobs left
// held by a resume that did not finish (a replica that died mid-way), and
// indexes the gated jobs (gate.go).
func (e *Engine) releaseAllHeld(ctx context.Context, t *tenants.Tenant) {
	n, err := e.releaseHeld(ctx, t, "")
	if err != nil && ctx.Err() == nil {
		e.log.Warn("release held jobs failed", "tenant", t.Name, "error", err)
	}
	if n > 0 {
		e.log.Info("held jobs released", "tenant", t.Name, "count", n)
	}
}

// AdmitSubmit admits a submission of t that will not wait (the API's) by
// its tenant's submission rate, limits.max_submits_per_second: it returns
// 0, or how long until a submission would be admitted, and then counts the
// refusal and takes nothing of the rate.
func (e *Engine) AdmitSubmit(t *tenants.Tenant) time.Duration {
	wait, cancel := t.ReserveSubmit()
	if wait > 0 {
		cancel()
		e.m.SubmitsThrottled.WithLabelValues("api").Inc()
	}
	return wait
}

// hold keeps d for delay, telling the queue it is in progress every third
// of the ack wait; it reports false if ctx ended first.
func (e *Engine) hold(ctx context.Context, d queue.Delivery, delay time.Duration) bool {
	timer := time.NewTimer(delay)
	defer timer.Stop()
	tick := time.NewTicker(max(e.opts.AckWait/3, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-timer.C:
			return true
		case <-ctx.Done():
			return false
		case <-tick.C:
			if err := d.InProgress(ctx); err != nil && ctx.Err() == nil {
				e.log.Warn("in-progress of a held submit failed", "subject", d.Subject(), "error", err)
			}
		}
	}
}
