package runner

import (
	"context"
	"log/slog"
	"sync"
	"time"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// runningReport publishes an attempt's RUNNING while the task runs: at once,
// or after the dispatch's running_report_delay, so that an attempt ending
// sooner reports only its outcome (with started_at) and costs the broker
// one event less.
type runningReport struct {
	timer *time.Timer
	sent  chan struct{}

	once    sync.Once
	skipped bool
}

// reportRunning starts the RUNNING report of an attempt of job.
func (r *Runner) reportRunning(ctx context.Context, job *jobsv1.JobDispatched, attempt int, log *slog.Logger) *runningReport {
	rr := &runningReport{sent: make(chan struct{})}
	publish := func() {
		defer close(rr.sent)
		if err := r.publishStatus(ctx, job, attempt, &jobsv1.JobStatus{State: jobsv1.JobState_JOB_STATE_RUNNING}); err != nil {
			log.Warn("job status not published", "state", "RUNNING", "error", err)
		}
	}
	if delay := job.GetRunningReportDelay().AsDuration(); delay > 0 {
		rr.timer = time.AfterFunc(delay, publish)
	} else {
		go publish()
	}
	return rr
}

// settle ends the report: a RUNNING not published yet never is, and settle
// reports true (the outcome then carries the start); else it waits until
// the RUNNING publish has ended, so that the outcome follows it on the
// job's status subject. Later calls return the first one's answer.
func (rr *runningReport) settle() (skipped bool) {
	rr.once.Do(func() {
		if rr.timer != nil && rr.timer.Stop() {
			rr.skipped = true
			close(rr.sent)
			return
		}
		<-rr.sent
	})
	return rr.skipped
}
