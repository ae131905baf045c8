package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/time/rate"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/telemetry"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// The control plane owns liveness. Normally the queue does: a dead
// runner's delivery comes back after the ack wait. But the work message can
// be gone while the job is RUNNING - settled by an attempt that was
// superseded (a runner paused past the ack wait, whose late Ack or Nak
// the broker honoured), or lost with a broker's state - and then nothing
// would ever run the job again once the runner of the current attempt
// dies. The reaper finds such jobs and dispatches them again.

// runReaper checks the tenant's live jobs every quarter of LostAfter (at
// most half DirectGrace with direct submission: the defaults give the same
// 5s, so listing the records costs no more) until ctx is done; the first
// check, at the tenant's start, sweeps every direct job (direct.go). Lost
// jobs need a broker that can list a work subject's messages
// (queue.WorkLister); on others the queue's redelivery is all there is.
// The same passes delete the records of jobs that finished longer than
// Retention ago; with neither check to make, they run every
// retentionEvery for that alone.
func (e *Engine) runReaper(ctx context.Context, t *tenants.Tenant) {
	lister, _ := e.broker.(queue.WorkLister)
	if (lister == nil || e.opts.LostAfter <= 0) && !e.direct && e.opts.Retention <= 0 {
		return
	}
	every := e.opts.LostAfter / 4
	if lister == nil {
		every = 0
	}
	if e.direct && (every <= 0 || every > e.opts.DirectGrace/2) {
		every = e.opts.DirectGrace / 2
	}
	if every <= 0 {
		every = retentionEvery
	}
	every = max(every, 50*time.Millisecond)
	tick := time.NewTicker(every)
	defer tick.Stop()
	st := &reapState{every: every}
	for start := true; ; start = false {
		if err := e.reap(ctx, t, lister, start, st); err != nil && ctx.Err() == nil {
			e.log.Warn("reaper pass failed", "tenant", t.Name, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// A pass looks at the tenant's live records (QUEUED, RUNNING). Reading
// every record in each pass made a pass grow with the tenant's history
// (jobs.retention keeps 30 days of it): a pass now reads the records
// written since the last one, from the bucket's revision it read up to,
// into the live records it keeps (reapState); every fullListEvery, and at
// the tenant's start, it lists the whole bucket instead, which is also
// when the records past their retention are deleted, and which rebuilds
// the live records from scratch (a record purged without trace, a
// bucket's stream that lost its state).
//
// Read at once, a listing of a few thousand records took the CPU of the
// scheduler (the decoding) and the broker (the deliveries) for a tenth of
// a second, and every job submitted meanwhile waited: at 1,000 jobs/s it
// made the p99 of the time to the claim (docs/benchmarks.md). So a pass
// after the first reads at a pace that spreads it over about half the
// time between passes (listPace), taken from the last read of the same
// kind: the same work, without the burst. The first pass, the tenant's
// start, reads at once.
const (
	// retentionEvery is the time between passes that only delete the
	// records past their retention.
	retentionEvery = time.Minute
	// fullListEvery is the most time between two full listings.
	fullListEvery = 5 * time.Minute
	// maxExpiredPerPass bounds the records a pass deletes: 400 a second
	// at the default 5s between passes.
	maxExpiredPerPass = 2_000
	// minListRate is the slowest pace, records a second.
	minListRate = 2_000
	// listBurst records are read at once, and the pace is taken for as
	// many at a time: a bucket of fewer is read at once.
	listBurst = 100
)

// reapState is what one tenant's reaper keeps between its passes.
type reapState struct {
	every time.Duration
	// live holds the live records as last read.
	live jobs.Follower[*jobs.Record]
	// listed and changed are how many records the last full listing and
	// the last read of changes read: the pace of the next of each kind.
	listed, changed int
	// expiring are the records past their retention that the last full
	// listing found and no pass has deleted yet.
	expiring []string
}

// fullListing reports whether the pass at now lists the whole bucket: the
// first, then one every fullListEvery, or every tenth of the retention
// when that is shorter (records expire at most that late), and never
// more often than the passes.
func (e *Engine) fullListing(st *reapState, now time.Time) bool {
	if st.live.ListedAt.IsZero() {
		return true
	}
	every := fullListEvery
	if r := e.opts.Retention / 10; r > 0 && r < every {
		every = r
	}
	return now.Sub(st.live.ListedAt) >= max(every, st.every)
}

// listPace returns the pace of the next pass's reads: the last one's
// count of records over half the time between passes, at least
// minListRate a second.
func listPace(listed int, every time.Duration) *rate.Limiter {
	return halfPassPace(listed, every, minListRate, listBurst)
}

// halfPassPace spreads n operations of a pass over half the time to the
// next one, so that a pass's work never lands on the job path at once:
// at least floor a second, the first burst at once.
func halfPassPace(n int, every time.Duration, floor float64, burst int) *rate.Limiter {
	return rate.NewLimiter(rate.Limit(max(float64(n)/(every.Seconds()/2), floor)), burst)
}

// reap dispatches again every job of t that is lost:
//
//   - RUNNING, its record unchanged and its runner without a heartbeat for
//     LostAfter, and no work message of the job on its pool's queue: it is
//     moved to QUEUED (compare-and-set, so one replica does it) and
//     dispatched as the next attempt;
//   - QUEUED after such a move, with that dispatch not on the queue (the
//     publish failed): dispatched again (same deduplication id).
//
// With direct submission, the same pass finds the direct jobs whose
// dispatch may be missing (direct.go); start is the tenant's first pass.
// lister is nil where the broker cannot list (SQS): then only the direct
// jobs are looked at. Last, a pass that lists the whole bucket deletes the
// records of the jobs that finished longer than Retention ago.
func (e *Engine) reap(ctx context.Context, t *tenants.Tenant, lister queue.WorkLister, start bool, st *reapState) error {
	now := e.now()
	lost := lister != nil && e.opts.LostAfter > 0
	var candidates, direct []*jobs.Record
	var ds *directState
	if e.direct {
		ds = e.directStateOf(t)
	}
	check := func(r *jobs.Record) {
		switch {
		case lost && r.State == jobs.StateRunning && now.Sub(r.UpdatedAt) > e.opts.LostAfter && e.runnerSilent(t, r, now):
			candidates = append(candidates, r)
		case lost && r.State == jobs.StateQueued && !r.Held && !r.Gated && r.Redispatched > 0 && r.Redispatched == r.Attempt+1:
			candidates = append(candidates, r)
		case ds != nil && undispatched(r) && ds.due(r, now, e.opts.DirectGrace, start):
			direct = append(direct, r)
		}
	}
	if err := e.readLive(ctx, t, st, start, now); err != nil {
		return err
	}
	for _, r := range st.live.Records {
		check(r)
	}
	if ds != nil {
		if err := e.sweepDirect(ctx, t, lister, direct, now); err != nil {
			return err
		}
	}
	for _, r := range candidates {
		queued, err := e.workQueued(ctx, t, lister, r)
		if err != nil {
			return err
		}
		if queued {
			continue
		}
		if r.State == jobs.StateRunning {
			reason := fmt.Sprintf("runner %s of attempt %d went silent and the job's work message is gone; dispatched again as attempt %d", r.RunnerID, r.Attempt, r.Attempt+1)
			rec, changed, err := t.Jobs.Update(ctx, r.ID, func(cur *jobs.Record) (bool, error) {
				if !cur.UpdatedAt.Equal(r.UpdatedAt) {
					return false, nil // moved meanwhile: not lost after all
				}
				return cur.Lost(r.Attempt, reason, e.now(), e.opts.HistoryLimit), nil
			})
			if err != nil {
				return err
			}
			if !changed {
				continue
			}
			e.m.Jobs.WithLabelValues(string(jobs.StateQueued)).Inc()
			e.log.Warn("lost job dispatched again", "tenant", t.Name, "job_id", r.ID, "runner_id", r.RunnerID, "attempt", rec.Redispatched)
			r = rec
		}
		if err := e.redispatch(ctx, t, r); err != nil {
			return err
		}
	}
	// Last: the checks above are what a pass is for, the deletions can
	// wait for the next one.
	return e.expire(ctx, t, st)
}

// readLive brings st.live up to date, with a full listing or with the
// writes since its revision; a full listing also finds the records past
// their retention (st.expiring).
func (e *Engine) readLive(ctx context.Context, t *tenants.Tenant, st *reapState, start bool, now time.Time) error {
	full := start || e.fullListing(st, now)
	var pace *rate.Limiter // none for the start's pass: recovery first
	if !start {
		pace = listPace(st.changed, st.every)
		if full {
			pace = listPace(st.listed, st.every)
		}
	}
	read := 0
	// The pace is taken listBurst records at a time: one wait (and timer)
	// per hundred records, not per record.
	paced := func() bool {
		read++
		return pace == nil || read%listBurst != 0 || pace.WaitN(ctx, listBurst) == nil
	}
	live := jobs.Keep((*jobs.Record).Live)
	if !full {
		if err := st.live.Update(ctx, t.Jobs, live, paced); err != nil {
			return err
		}
		st.changed = read
		return nil
	}
	var expired []string
	err := st.live.List(ctx, t.Jobs, now, live, func(r *jobs.Record) bool {
		if e.opts.Retention > 0 && r.Expired(now, e.opts.Retention) {
			expired = append(expired, r.ID)
		}
		return paced()
	})
	if err != nil {
		return err
	}
	st.listed, st.expiring = read, expired
	return nil
}

// expire deletes the records the last full listing found past their
// retention, with their results: at most maxExpiredPerPass a pass, the
// rest in the passes after it. Each is a few requests to the broker, so
// a pass's deletions are spread over half the time between passes, as
// the reads are. A full listing comes every fullListEvery; deleting only
// then, a tenant finishing more than maxExpiredPerPass jobs in that time
// (under 7 a second) would pile up records its retention never caught up
// with. A record another replica deleted first is not an error.
func (e *Engine) expire(ctx context.Context, t *tenants.Tenant, st *reapState) error {
	ids := st.expiring[:min(len(st.expiring), maxExpiredPerPass)]
	if len(ids) == 0 {
		return nil
	}
	pace := halfPassPace(len(ids), st.every, 0, 1)
	deleted := 0
	defer func() {
		st.expiring = st.expiring[deleted:]
		if deleted > 0 {
			e.log.Debug("finished jobs past their retention deleted", "tenant", t.Name, "jobs", deleted, "left", len(st.expiring), "retention", e.opts.Retention)
		}
	}()
	for _, id := range ids {
		if err := pace.Wait(ctx); err != nil {
			return err
		}
		// The results first: a pass cut short in between leaves the
		// record, which the next pass expires again.
		if err := t.Results.Delete(ctx, id); err != nil {
			return err
		}
		err := t.Jobs.Delete(ctx, id)
		if err != nil && !errors.Is(err, jobs.ErrNotFound) {
			return err
		}
		if err == nil {
			e.m.JobsExpired.Inc()
		}
		deleted++
	}
	return nil
}

// runnerSilent reports whether the runner of r has sent no heartbeat for
// LostAfter (or none since this replica started reading them).
func (e *Engine) runnerSilent(t *tenants.Tenant, r *jobs.Record, now time.Time) bool {
	for _, run := range t.Presence.Pool(r.Pool, now) {
		if run.ID == r.RunnerID {
			return now.Sub(run.LastSeen) > e.opts.LostAfter
		}
	}
	return now.Sub(t.Presence.WatchingSince()) > e.opts.LostAfter
}

// workQueued reports whether the pool's queue still holds a work message
// of r's job (waiting, being handled, or waiting for its retry).
func (e *Engine) workQueued(ctx context.Context, t *tenants.Tenant, lister queue.WorkLister, r *jobs.Record) (bool, error) {
	want := map[string]*jobs.Record{r.ID: r}
	if err := e.dropQueued(ctx, t, lister, r.Pool, want); err != nil {
		return false, err
	}
	return len(want) == 0, nil
}

// dropQueued removes from want (by job id) the jobs whose work message the
// pool's queue still holds, in one pass over the queue that stops once
// want is empty.
func (e *Engine) dropQueued(ctx context.Context, t *tenants.Tenant, lister queue.WorkLister, pool string, want map[string]*jobs.Record) error {
	err := lister.ListWork(ctx, e.subjects.Jobs(t.Name, pool), func(m queue.StreamMessage) bool {
		if job, err := events.DecodeAs[*jobsv1.JobDispatched](m.Header, m.Data); err == nil {
			delete(want, job.GetJobId())
		}
		return len(want) > 0
	})
	if err != nil {
		return fmt.Errorf("look for the work messages of pool %s: %w", pool, err)
	}
	return nil
}

// redispatch puts r on its pool's queue as attempt r.Redispatched, with
// the deduplication id "dispatch/<job id>/<attempt>" ("/<reissues>" added
// once the job was reissued, whose attempt may not have moved): replicas
// that both do it make one message. The runner numbers the message's
// deliveries from that attempt.
func (e *Engine) redispatch(ctx context.Context, t *tenants.Tenant, r *jobs.Record) error {
	if err := e.ensurePool(ctx, t.Name, r.Pool); err != nil {
		return err
	}
	if r.AttemptToken == "" {
		var err error
		if r, err = e.issueToken(ctx, t, r.ID); err != nil {
			return err
		}
	}
	m, err := e.jobMessage(telemetry.Extract(ctx, r.TraceContext), t, r, r.Redispatched)
	if err != nil {
		return err
	}
	dedupe := fmt.Sprintf("%s/%d", dispatchDedupeID(r.ID), r.Redispatched)
	if r.Reissued > 0 {
		dedupe += fmt.Sprintf("/%d", r.Reissued)
	}
	return e.publish(ctx, e.subjects.Jobs(t.Name, r.Pool), m, dedupe)
}
