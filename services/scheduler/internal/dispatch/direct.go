package dispatch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/telemetry"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// Direct submission (POST /api/v1/jobs). The API creates the job's record
// and dispatches it within the request, instead of publishing a SubmitJob
// for the submit consumer and polling until the record appears: a round
// trip through the broker, two of its writes and the poll fewer per job.
// Other clients still submit on the queue.
//
// The record is the job. What the direct path gives up is the SubmitJob
// that a crash between the record and its dispatch would have left on the
// queue to be handled again. The record is marked Direct instead, and a
// direct job still QUEUED that has not run (and is not held, gated or
// limited: their own passes dispatch those) may be one whose dispatch was
// never published. Three things make sure it is:
//
//   - a dispatch that fails in the request (broker unreachable, tenant's
//     queue full) is retried by that replica's sweep every tick, until it
//     succeeds or the job moved on;
//   - every replica's sweep publishes again, once, the dispatch of each
//     direct job QUEUED for between DirectGrace and DirectGrace+directBand:
//     the replicas that live cover one that died mid-submit;
//   - a tenant's start does it for every such job QUEUED past DirectGrace,
//     however long: a replica that starts again covers the time every
//     replica was down.
//
// Publishing again is safe within the broker's deduplication window
// (queue.Deduplicator: 2 minutes on JetStream, 5 on SQS FIFO queues): the
// dispatch's id is "dispatch/<job id>", so the broker drops it if the
// first was published, even if a runner took and acknowledged it since (a
// job whose statuses have not been applied yet). Past the window, which
// only a start sees (every replica was down longer), the job is
// dispatched again only if its pool's queue does not hold its message,
// where the queue can be listed (queue.WorkLister, JetStream); on SQS it
// is dispatched again. Either may run a job twice in a case the
// queue-driven path shares, since a SubmitJob redelivered past the window
// dispatches again too: on JetStream, a job run and acknowledged while no
// scheduler applied its statuses for longer than the window; on SQS, also
// a job still waiting on its queue.
//
// SQS standard queues deduplicate per process only: the API submits on
// the queue there.

// DefaultDirectGrace is the default of Options.DirectGrace.
const DefaultDirectGrace = 10 * time.Second

// directBand is how long after DirectGrace every replica's sweep still
// publishes a QUEUED direct job's dispatch again: several ticks, well
// inside a deduplication window.
const directBand = 30 * time.Second

// directMargin keeps a dispatch published again this far inside the
// deduplication window, for the clocks of the replica and the broker.
const directMargin = 15 * time.Second

// directState is one tenant's sweep bookkeeping on this replica.
type directState struct {
	mu sync.Mutex
	// retry holds the jobs whose dispatch failed on this replica.
	retry map[string]struct{}
	// swept holds, by creation time, the jobs whose dispatch the sweep
	// published again: once per replica is enough.
	swept map[string]time.Time
	// full: a dispatch found the tenant's queue full, and no retry has
	// succeeded since. Create refuses new jobs meanwhile, as the queue
	// refuses a SubmitJob, instead of recording jobs it cannot dispatch.
	full bool
}

// failed records that the dispatch of id failed with err.
func (s *directState) failed(id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retry[id] = struct{}{}
	if errors.Is(err, queue.ErrLimitExceeded) {
		s.full = true
	}
}

func (s *directState) isFull() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.full
}

func (e *Engine) directStateOf(t *tenants.Tenant) *directState {
	return tenantState(&e.directs, t, func() *directState {
		return &directState{retry: map[string]struct{}{}, swept: map[string]time.Time{}}
	})
}

// DirectSubmit reports whether the API creates and dispatches jobs itself
// (Create) rather than publishing a SubmitJob (Submit).
func (e *Engine) DirectSubmit() bool { return e.direct }

// Create creates the record of a job the API accepted and dispatches it:
// direct submission. spec is normalised (jobs.NormalizeSpec); the user is
// the principal of ctx. It returns the record and whether this call
// created it (a job of id that exists is returned as it is). A dispatch
// that fails is logged and left to the sweep: the job exists once its
// record does. While a dispatch of the tenant's found its queue full and
// none has succeeded since, Create refuses the job with an error wrapping
// queue.ErrLimitExceeded.
func (e *Engine) Create(ctx context.Context, t *tenants.Tenant, id string, spec *jobsv1.JobSpec) (_ *jobs.Record, created bool, err error) {
	ctx, span := startSpan(ctx, "scheduler.submit", t, id)
	defer func() { telemetry.End(span, err) }()
	ctx, rspan := startSpan(ctx, "scheduler.record", t, id)
	defer rspan.End()
	s := e.directStateOf(t)
	if s.isFull() {
		// A job that exists is still answered with its record.
		if rec, err := t.Jobs.Get(ctx, id); err == nil {
			return rec, false, nil
		}
		return nil, false, fmt.Errorf("%w: the tenant's queue is full", queue.ErrLimitExceeded)
	}
	rec, err := e.storeRecord(ctx, t, id, spec, spec, nil, directory.UserOf(auth.PrincipalFrom(ctx)), "", true)
	if errors.Is(err, jobs.ErrExists) {
		rec, err = t.Jobs.Get(ctx, id)
		return rec, false, err
	}
	if err != nil {
		return nil, false, err
	}
	if rec.State == jobs.StateQueued {
		if err := e.dispatchOrHold(ctx, t, rec); err != nil {
			s.failed(id, err)
			e.log.Warn("dispatch failed; the sweep retries it", "tenant", t.Name, "job_id", id, "error", err)
		}
	}
	return rec, true, nil
}

// undispatched reports whether r is a direct job whose dispatch the sweep
// may have to publish: QUEUED, never run, and waiting for nothing else.
func undispatched(r *jobs.Record) bool {
	return r.Direct && r.State == jobs.StateQueued && r.Attempt == 0 && r.Redispatched == 0 && r.Reissued == 0 &&
		!r.Held && !r.Gated && !r.Limited
}

// due reports whether the sweep publishes the dispatch of r (undispatched)
// now; start is the tenant's first sweep on this replica.
func (s *directState) due(r *jobs.Record, now time.Time, grace time.Duration, start bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.retry[r.ID]; ok {
		return true
	}
	age := now.Sub(r.CreatedAt)
	switch {
	case age < grace:
		return false
	case start:
		return true
	case age >= grace+directBand:
		return false
	}
	_, done := s.swept[r.ID]
	return !done
}

// forget drops what s holds of jobs that no longer need it: retries of
// jobs not among due (moved on), sweeps older than the band.
func (s *directState) forget(due []*jobs.Record, now time.Time, grace time.Duration) {
	keep := make(map[string]bool, len(due))
	for _, r := range due {
		keep[r.ID] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.retry {
		if !keep[id] {
			delete(s.retry, id)
		}
	}
	if len(s.retry) == 0 {
		s.full = false
	}
	for id, at := range s.swept {
		if now.Sub(at) >= grace+directBand {
			delete(s.swept, id)
		}
	}
}

// sweepDirect publishes the dispatch of the direct jobs in due (found by
// the tenant's record pass, reap.go) that may lack one.
func (e *Engine) sweepDirect(ctx context.Context, t *tenants.Tenant, lister queue.WorkLister, due []*jobs.Record, now time.Time) error {
	s := e.directStateOf(t)
	s.forget(due, now, e.opts.DirectGrace)
	var old []*jobs.Record
	for _, r := range due {
		if now.Sub(r.CreatedAt) >= e.dedupeWindow-directMargin {
			old = append(old, r)
			continue
		}
		e.directAgain(ctx, t, s, r)
	}
	if len(old) == 0 {
		return nil
	}
	if lister == nil {
		// A queue that cannot be listed (SQS): dispatched, as a SubmitJob
		// redelivered past the window would be.
		for _, r := range old {
			e.log.Warn("direct job past the deduplication window dispatched again", "tenant", t.Name, "job_id", r.ID, "created_at", r.CreatedAt)
			e.directAgain(ctx, t, s, r)
		}
		return nil
	}
	// Past the window: only the jobs their pool's queue does not hold.
	byPool := map[string]map[string]*jobs.Record{}
	for _, r := range old {
		if byPool[r.Pool] == nil {
			byPool[r.Pool] = map[string]*jobs.Record{}
		}
		byPool[r.Pool][r.ID] = r
	}
	for pool, want := range byPool {
		if err := e.dropQueued(ctx, t, lister, pool, want); err != nil {
			return err
		}
		for _, r := range want {
			e.log.Warn("direct job without a dispatch past the deduplication window; dispatched", "tenant", t.Name, "job_id", r.ID, "created_at", r.CreatedAt)
			e.directAgain(ctx, t, s, r)
		}
	}
	return nil
}

// directAgain publishes r's dispatch (dropped by the broker if it was
// published within its window) and records the outcome in s.
func (e *Engine) directAgain(ctx context.Context, t *tenants.Tenant, s *directState, r *jobs.Record) {
	err := e.dispatchOrHold(ctx, t, r)
	if err != nil {
		s.failed(r.ID, err)
		if ctx.Err() == nil {
			e.log.Warn("dispatch of a direct job failed; retried", "tenant", t.Name, "job_id", r.ID, "error", err)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.retry, r.ID)
	s.full = false
	s.swept[r.ID] = r.CreatedAt
	e.log.Debug("direct job's dispatch published again", "tenant", t.Name, "job_id", r.ID)
}
