package dispatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

var jobDispatchedType = events.TypeName(&jobsv1.JobDispatched{})

// handleDeadLetter handles a message of the tenant's dead-letter queue. A
// dead-lettered JobDispatched ends its job FAILED with
// "dead-lettered: <reason>" when it carries the job's attempt token (a
// message without it is not the job's dispatch); any other message is logged and counted, by
// role and reason class. A message published straight to a dead-letter
// subject, without the dead-letter headers, gets the reason
// queue.ReasonPublishedDirectly and fails no job: nothing took it out of a
// queue. A dead letter is acknowledged, or retried on a store error; it
// stays in the dead-letter stream either way (JetStream), where the API
// lists it, and past its deliveries it is only terminated, never copied to
// the dead-letter queue again.
func (e *Engine) handleDeadLetter(t *tenants.Tenant) queue.Handler {
	return func(ctx context.Context, d queue.Delivery) {
		h := d.Header()
		dl := queue.ParseDeadLetter(t.Name, "", queue.StreamMessage{Subject: d.Subject(), Data: d.Data(), Header: h})
		log := e.log.With("tenant", t.Name, "subject", dl.OriginalSubject, "dlq_subject", d.Subject(), "role", string(dl.Role),
			"type", h[queue.HeaderType], "attempts", dl.Attempts, "reason", dl.Reason, "class", dl.Class)
		if dl.Direct || h[queue.HeaderType] != jobDispatchedType {
			e.m.DeadLetter(dl)
			log.Warn("dead letter")
			e.ack(ctx, d)
			return
		}
		m, err := events.DecodeAs[*jobsv1.JobDispatched](h, d.Data())
		if err != nil {
			e.m.DeadLetter(dl)
			log.Warn("undecodable dead-lettered job", "error", err)
			e.ack(ctx, d)
			return
		}
		if err := e.failDeadLettered(ctx, t, m, dl); err != nil {
			e.retryLater(ctx, d, err)
			return
		}
		e.m.DeadLetter(dl)
		e.ack(ctx, d)
	}
}

// reasonAttemptsExhausted starts the reason a runner dead-letters a
// dispatch with when the dispatch's started attempts plus its deliveries
// pass the job's max attempts (services/ingestion-runner writes it).
const reasonAttemptsExhausted = "max attempts ("

// errAttemptRunning is why a dead letter for a dispatch's delivery count
// waits: the job's current attempt may still be running.
var errAttemptRunning = errors.New("the job's attempt is running on a runner that still heartbeats")

// reasonReissued starts the reason of a job dispatched again by
// failDeadLettered.
const reasonReissued = "its work message ran out of deliveries"

// ranOutOfDeliveries reports whether a dead-lettered dispatch was taken out
// of its queue for its delivery count (by its runner against the job's max
// attempts, by the consumer's max deliveries, or by SQS's redrive policy)
// rather than refused for its content.
func ranOutOfDeliveries(dl queue.DeadLetter) bool {
	return dl.Class == queue.ClassMaxDeliveries || dl.Class == queue.ClassRedrive ||
		strings.HasPrefix(dl.Reason, reasonAttemptsExhausted)
}

// failDeadLettered ends the job of a dead-lettered JobDispatched, unless
// the message does not carry the job's attempt token: then it is not the
// job's dispatch (a forged or tampered copy a runner refused), and the job
// is left alone.
//
// The control plane owns the attempt budget. A queue's delivery count is
// not an attempt count (a delivery lost on its way to a runner counts too),
// so a dispatch that ran out of deliveries fails the job only if as many
// attempts started - reported RUNNING - as the job's max attempts; with
// attempts left the job is dispatched again as the next attempt (a bounded
// number of times, Record.Reissue). Any other dead letter fails the job.
func (e *Engine) failDeadLettered(ctx context.Context, t *tenants.Tenant, m *jobsv1.JobDispatched, dl queue.DeadLetter) error {
	id, reason, attempts := m.GetJobId(), dl.Reason, dl.Attempts
	if reason == "" {
		reason = "no reason given"
	}
	exhausted := ranOutOfDeliveries(dl)
	if exhausted {
		// The deliveries are not attempts: the record's attempt stays
		// that of the last attempt that started.
		attempts = 0
	}
	foreign, reissued, again, stale := false, false, false, false
	rec, changed, err := t.Jobs.Update(ctx, id, func(r *jobs.Record) (bool, error) {
		reissued, again, stale = false, false, false
		if foreign = !r.TokenMatches(m.GetAttemptToken()); foreign {
			return false, nil
		}
		if answered, due := r.ReissueAnswered(m.GetEnvelope().GetEventId()); answered {
			// Handled before, up to a publish that failed: publish the
			// same dispatch again if it is still due.
			reissued, again = due, true
			return false, nil
		}
		if exhausted && int(m.GetEnvelope().GetAttempt()) < max(r.Redispatched, 1) {
			// A dispatch the job was dispatched again after (by the
			// reaper, or a reissue): the later one stands.
			stale = true
			return false, nil
		}
		if exhausted && r.State == jobs.StateRunning && !e.runnerSilent(t, r, e.now()) {
			// Its runner still heartbeats: the attempt may still run (a
			// duplicate delivery went elsewhere). Decide once it reports
			// or goes silent, not beside it.
			return false, fmt.Errorf("%w: attempt %d on runner %s", errAttemptRunning, r.Attempt, r.RunnerID)
		}
		if exhausted {
			why := fmt.Sprintf("%s (%d) with %d of %d attempts started; dispatched again as attempt %d",
				reasonReissued, dl.Attempts, r.Started, r.Retry.MaxAttempts, r.Attempt+1)
			if reissued = r.Reissue(m.GetEnvelope().GetEventId(), why, e.now(), e.opts.HistoryLimit); reissued {
				return true, nil
			}
		}
		// The last attempt never reported an end: RUNNING, or moved back
		// to QUEUED by the reaper (a redispatch due that is no reissue).
		redispatchDue := r.State == jobs.StateQueued && r.Redispatched == r.Attempt+1
		lost := r.State == jobs.StateRunning || (redispatchDue && !strings.HasPrefix(r.Reason, reasonReissued))
		why := "dead-lettered: " + reason
		switch {
		case exhausted && r.AttemptsLeft():
			why = fmt.Sprintf("dead-lettered: its work message ran out of deliveries %d times with %d of %d attempts started",
				r.Reissued+1, r.Started, r.Retry.MaxAttempts)
		case exhausted && lost:
			why = fmt.Sprintf("dead-lettered: max attempts (%d) exhausted; the runner of attempt %d was lost", r.Retry.MaxAttempts, r.Attempt)
		case exhausted:
			why = fmt.Sprintf("dead-lettered: max attempts (%d) exhausted", r.Retry.MaxAttempts)
		}
		if r.State == jobs.StateQueued && r.Reason != "" && !redispatchDue {
			why += " (last failure: " + r.Reason + ")"
		}
		return r.Fail(why, attempts, e.now(), e.opts.HistoryLimit), nil
	})
	switch {
	case errors.Is(err, jobs.ErrNotFound), errors.Is(err, jobs.ErrCorrupt):
		e.log.Warn("dead-lettered job has no usable record", "tenant", t.Name, "job_id", id, "reason", reason, "error", err)
		return nil
	case err != nil:
		return err
	case stale:
		e.log.Info("dead letter of a dispatch superseded by a later one; job unchanged", "tenant", t.Name, "job_id", id,
			"dispatch_attempt", m.GetEnvelope().GetAttempt(), "attempt", rec.Attempt, "reason", reason)
	case foreign:
		e.m.Fenced.WithLabelValues("attempt_token").Inc()
		e.log.Warn("dead-lettered job message is not the job's dispatch; job unchanged", "tenant", t.Name, "job_id", id, "reason", reason)
	case reissued:
		if !again {
			e.m.Jobs.WithLabelValues(string(jobs.StateQueued)).Inc()
		}
		e.log.Warn("dispatch ran out of deliveries with attempts left; job dispatched again", "tenant", t.Name, "job_id", id,
			"deliveries", dl.Attempts, "started", rec.Started, "max_attempts", rec.Retry.MaxAttempts, "attempt", rec.Redispatched, "reason", reason)
		// A failed publish leaves the record QUEUED with its redispatch
		// due: the reaper publishes it again.
		return e.redispatch(ctx, t, rec)
	case changed:
		e.m.Jobs.WithLabelValues(string(jobs.StateFailed)).Inc()
		e.log.Info("job failed by dead letter", "tenant", t.Name, "job_id", id, "attempt", rec.Attempt, "reason", rec.Reason)
	default:
		e.log.Debug("dead letter of an ended job", "tenant", t.Name, "job_id", id, "state", string(rec.State))
	}
	return nil
}

// watchRunners follows the tenant's heartbeats into its presence tracker,
// from one presence window back, until ctx is done; a failed read is
// resumed where it stopped.
func (e *Engine) watchRunners(ctx context.Context, t *tenants.Tenant) {
	since := t.Presence.WatchingSince()
	var from uint64
	subject := e.subjects.All(t.Name, queue.RoleRunners)
	for wait := 100 * time.Millisecond; ctx.Err() == nil; wait = min(2*wait, 10*time.Second) {
		opts := queue.ReadOptions{Since: since, Follow: true}
		if from > 0 {
			opts = queue.ReadOptions{FromSequence: from, Follow: true}
		}
		err := e.broker.Read(ctx, subject, opts, func(m queue.StreamMessage) bool {
			from = m.Sequence + 1
			wait = 100 * time.Millisecond
			e.observeHeartbeat(t, m)
			return true
		})
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("runner presence read failed", "tenant", t.Name, "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (e *Engine) observeHeartbeat(t *tenants.Tenant, m queue.StreamMessage) {
	hb, err := events.DecodeAs[*jobsv1.RunnerHeartbeat](m.Header, m.Data)
	if err != nil {
		e.m.MalformedMessage(queue.RoleRunners)
		e.log.Warn("malformed heartbeat ignored", "tenant", t.Name, "subject", m.Subject, "error", err)
		return
	}
	pool := hb.Pool
	if p, err := queue.ParseSubject(m.Subject); err == nil && p.Key != "" {
		pool = p.Key // the subject is what the runner is authorised for
	}
	seen := m.Time
	if seen.IsZero() {
		seen = e.now()
	}
	t.Presence.Observe(presenceRunner(hb, pool, seen))
}
