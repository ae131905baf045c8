package dispatch

import (
	"context"
	"errors"
	"fmt"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/results"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// ConsumerRecords is the durable consumer of the jobs' results.
const ConsumerRecords = "scheduler-records"

// errInvalidRecords is wrapped by the reasons a JobRecords is
// dead-lettered for although it decodes.
var errInvalidRecords = errors.New("invalid JobRecords")

// handleRecords stores the results a job's runner sends back, fenced like
// statuses: a batch of an attempt older than the record's (or than the
// results already kept) is dropped and counted as stale_attempt. A
// message that does not decode, names another job or tenant than its
// subject, or has no attempt is dead-lettered.
func (e *Engine) handleRecords(t *tenants.Tenant) queue.Handler {
	return func(ctx context.Context, d queue.Delivery) {
		m, err := events.DecodeAs[*ingestv1.JobRecords](d.Header(), d.Data())
		if err == nil {
			err = checkRecords(m, d.Subject(), t.Name)
		}
		if err != nil {
			e.poison(ctx, d, queue.RoleJobEvents, err)
			return
		}
		attempt := int(m.GetEnvelope().GetAttempt())
		rec, err := t.Jobs.Get(ctx, m.JobId)
		switch {
		case errors.Is(err, jobs.ErrNotFound) && d.Attempt() < unknownJobRetries:
			e.retryLater(ctx, d, err) // a replica may read a store that lags
			return
		case errors.Is(err, jobs.ErrNotFound):
			e.m.Fenced.WithLabelValues("unknown_job").Inc()
			e.log.Warn("records of an unknown job dropped", "tenant", t.Name, "job_id", m.JobId)
			e.ack(ctx, d)
			return
		case err != nil:
			e.retryLater(ctx, d, err)
			return
		case !rec.TokenMatches(m.GetAttemptToken()):
			e.rejectToken(ctx, t, d, m.JobId, attempt)
			return
		case rec.Attempt > attempt:
			e.fenceRecords(ctx, t, d, m, rec.Attempt)
			return
		}
		now := e.now()
		err = t.Results.Add(ctx, m, attempt, now)
		if errors.Is(err, results.ErrStale) {
			e.fenceRecords(ctx, t, d, m, rec.Attempt)
			return
		}
		if err == nil {
			err = t.Results.PutMetadata(ctx, m, attempt, now)
		}
		if err != nil {
			e.retryLater(ctx, d, err)
			return
		}
		e.log.Debug("job records stored", "tenant", t.Name, "job_id", m.JobId, "attempt", attempt, "first_seq", m.FirstSeq, "records", len(m.Records), "checks", len(m.Checks))
		e.ack(ctx, d)
	}
}

func (e *Engine) fenceRecords(ctx context.Context, t *tenants.Tenant, d queue.Delivery, m *ingestv1.JobRecords, current int) {
	e.m.Fenced.WithLabelValues(jobs.FencedStale.String()).Inc()
	e.log.Info("records of a stale attempt dropped", "tenant", t.Name, "job_id", m.JobId, "attempt", m.GetEnvelope().GetAttempt(), "current_attempt", current)
	e.ack(ctx, d)
}

func checkRecords(m *ingestv1.JobRecords, subject, tenant string) error {
	if !queue.ValidToken(m.JobId) {
		return fmt.Errorf("%w: job_id %q must be 1 to 64 characters of [A-Za-z0-9_-]", errInvalidRecords, m.JobId)
	}
	if p, err := queue.ParseSubject(subject); err == nil && p.Key != "" && p.Key != m.JobId+".records" {
		return fmt.Errorf("%w: job %q on subject %s", errInvalidRecords, m.JobId, subject)
	}
	if tn := m.GetEnvelope().GetTenant(); tn != "" && tn != tenant {
		return fmt.Errorf("%w: envelope tenant %q on a subject of tenant %q", errInvalidRecords, tn, tenant)
	}
	if m.GetEnvelope().GetAttempt() == 0 {
		return fmt.Errorf("%w: the envelope's attempt is 0", errInvalidRecords)
	}
	return nil
}
