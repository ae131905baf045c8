package dispatch

import (
	"context"
	"errors"
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
		if err := e.failDeadLettered(ctx, t, m.JobId, m.GetAttemptToken(), dl.Reason, dl.Attempts); err != nil {
			e.retryLater(ctx, d, err)
			return
		}
		e.m.DeadLetter(dl)
		e.ack(ctx, d)
	}
}

// failDeadLettered fails the job of a dead-lettered JobDispatched, unless
// the message does not carry the job's attempt token: then it is not the
// job's dispatch (a forged or tampered copy a runner refused), and the job
// is left alone.
func (e *Engine) failDeadLettered(ctx context.Context, t *tenants.Tenant, id, token, reason string, attempts int) error {
	if reason == "" {
		reason = "no reason given"
	}
	foreign := false
	rec, changed, err := t.Jobs.Update(ctx, id, func(r *jobs.Record) (bool, error) {
		if foreign = !r.TokenMatches(token); foreign {
			return false, nil
		}
		why := "dead-lettered: " + reason
		if r.State == jobs.StateQueued && r.Reason != "" {
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
	case foreign:
		e.m.Fenced.WithLabelValues("attempt_token").Inc()
		e.log.Warn("dead-lettered job message is not the job's dispatch; job unchanged", "tenant", t.Name, "job_id", id, "reason", reason)
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
