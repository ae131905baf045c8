package dispatch

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/outposthq/outpost/services/scheduler/internal/results"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// DefaultResultsWait is the default of Options.ResultsWait: with the
// retry delays of retryLater, about 25 seconds of waiting for results
// before a terminal status is applied anyway.
const DefaultResultsWait = 8

// errResultsPending is why a terminal status goes back to its queue: its
// attempt's results are not all stored yet.
var errResultsPending = errors.New("the attempt's results are not all stored yet")

// awaitResults returns the items to apply now. A runner publishes an
// attempt's JobRecords before its terminal status, but the two go to
// different consumers, so the status can come first: a terminal status
// that names more result batches (JobResult.record_batches) than the
// results store holds for its attempt is handed back to its queue and
// applied on a later delivery, so that a job that has ended has its
// results. From delivery Options.ResultsWait on it is applied whatever the
// store holds (a lost or dead-lettered batch must not keep a job from
// ending), and the missing results are logged and counted. A status
// without a count (an older runner, or no results) does not wait.
func (e *Engine) awaitResults(ctx context.Context, t *tenants.Tenant, id string, items []statusItem, settle *settlements) []statusItem {
	out := make([]statusItem, 0, len(items))
	for _, it := range items {
		if it.batches <= 0 || !it.ev.State.Terminal() {
			out = append(out, it)
			continue
		}
		stored, err := storedBatches(ctx, t.Results, id, it.ev.Attempt)
		last := it.d.Attempt() >= e.opts.ResultsWait
		switch {
		case err == nil && stored >= it.batches:
			out = append(out, it)
		case !last:
			if err == nil {
				e.m.ResultsWaits.WithLabelValues("retried").Inc()
				err = fmt.Errorf("%w: %d of %d batches of attempt %d", errResultsPending, stored, it.batches, it.ev.Attempt)
				e.log.Debug("terminal status waits for its results", "tenant", t.Name, "job_id", id, "attempt", it.ev.Attempt,
					"state", string(it.ev.State), "batches", it.batches, "stored", stored, "delivery", it.d.Attempt())
			}
			settle.add(func() { e.retryLater(ctx, it.d, err) })
		default:
			e.m.ResultsWaits.WithLabelValues("incomplete").Inc()
			e.log.Warn("job ends with results missing", "tenant", t.Name, "job_id", id, "attempt", it.ev.Attempt,
				"state", string(it.ev.State), "batches", it.batches, "stored", stored, "delivery", it.d.Attempt(), "error", err)
			out = append(out, it)
		}
	}
	return out
}

// storedBatches is how many result batches of attempt the store holds for
// job. A store that holds a later attempt's results, or a truncated index,
// counts as complete: the status is stale, or no more batches are kept.
func storedBatches(ctx context.Context, s *results.Store, job string, attempt int) (int, error) {
	idx, err := s.Index(ctx, job)
	switch {
	case errors.Is(err, results.ErrNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("results of job %s: %w", job, err)
	case idx.Attempt > attempt:
		return math.MaxInt, nil
	case idx.Attempt < attempt:
		return 0, nil
	case idx.Truncated:
		return math.MaxInt, nil
	}
	return len(idx.Batches), nil
}
