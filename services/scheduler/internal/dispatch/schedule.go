package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outposthq/outpost/libs/auth"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/sources"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// runSchedules fires the tenant's scheduled sources until ctx is done,
// looking every ScheduleTick. Every replica runs it: a fire's job id is
// the same on each (sources.FireJobID), so they submit one job.
func (e *Engine) runSchedules(ctx context.Context, t *tenants.Tenant) {
	tick := time.NewTicker(e.opts.ScheduleTick)
	defer tick.Stop()
	for {
		if err := e.fireDue(ctx, t); err != nil && ctx.Err() == nil {
			e.log.Warn("fire schedules failed", "tenant", t.Name, "error", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// fireDue fires every source whose schedule is due: the latest due time
// only, however many passed (a scheduler down for a day runs a missed
// hourly source once, on start).
func (e *Engine) fireDue(ctx context.Context, t *tenants.Tenant) error {
	now := e.now()
	var due []*sources.Source
	err := t.Sources.List(ctx, func(s *sources.Source) bool {
		if s.Enabled && s.Schedule != nil {
			due = append(due, s)
		}
		return true
	})
	if err != nil {
		return err
	}
	// One source that cannot fire (its job too large for the queue, a
	// broker hiccup) does not hold back the others.
	var errs []error
	for _, s := range due {
		sch, err := sources.ParseSchedule(s.Schedule.Cron, s.Schedule.TimeZone)
		if err != nil {
			e.log.Warn("source schedule invalid", "tenant", t.Name, "source", s.ID, "error", err)
			continue
		}
		at, ok := sch.Due(s.LastFire, now)
		if !ok {
			continue
		}
		if err := e.fire(ctx, t, s, at); err != nil {
			errs = append(errs, fmt.Errorf("fire source %s at %s: %w", s.ID, at.Format(time.RFC3339), err))
		}
	}
	return errors.Join(errs...)
}

// fire submits the job of source s's fire at `at`, then moves LastFire to
// at. The submit comes first: a crash in between fires again, with the
// same job id, which the submit deduplication and the record's create
// absorb.
func (e *Engine) fire(ctx context.Context, t *tenants.Tenant, s *sources.Source, at time.Time) error {
	id := sources.FireJobID(s.ID, at)
	if err := e.submitAs(ctx, t, id, SourceSpec(s, sources.TriggerSchedule, at), s.User); err != nil {
		return err
	}
	_, err := t.Sources.Update(ctx, s.ID, func(cur *sources.Source) (bool, error) {
		if !cur.LastFire.Before(at) {
			return false, nil // another replica got there first
		}
		cur.LastFire = at
		return true, nil
	})
	if err != nil {
		return err
	}
	e.log.Info("source fired", "tenant", t.Name, "source", s.ID, "scheduled_at", at, "job_id", id)
	return nil
}

// RunSource submits a run of source s now (POST /api/v1/sources/{id}/run)
// and returns its job id. The run's user is the request's principal, or
// the source's user without one.
func (e *Engine) RunSource(ctx context.Context, t *tenants.Tenant, s *sources.Source) (string, error) {
	now := e.now()
	id := jobs.NewID(now)
	user := directory.UserOf(auth.PrincipalFrom(ctx))
	if user == "" {
		user = s.User
	}
	if err := e.submitAs(ctx, t, id, SourceSpec(s, sources.TriggerManual, now), user); err != nil {
		return "", err
	}
	return id, nil
}

// SourceSpec is the job spec of a run of s, labelled with the source, the
// trigger and the scheduled time.
func SourceSpec(s *sources.Source, trigger string, at time.Time) *jobsv1.JobSpec {
	labels := make(map[string]string, len(s.Labels)+3)
	for k, v := range s.Labels {
		labels[k] = v
	}
	labels[sources.LabelSource] = s.ID
	labels[sources.LabelTrigger] = trigger
	labels[sources.LabelScheduledAt] = at.UTC().Format(time.RFC3339)
	spec := &jobsv1.JobSpec{Pool: s.Pool, Task: s.Task.Proto(), Labels: labels, Project: s.Project}
	if s.Timeout > 0 {
		spec.Timeout = durationpb.New(s.Timeout.D())
	}
	return spec
}
