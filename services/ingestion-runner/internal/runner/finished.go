package runner

import (
	"fmt"
	"log/slog"

	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// finishedKey names a dispatch: its job, attempt and attempt token. Every
// delivery of one JobDispatched message shares it; a new dispatch of the
// job (a retry the scheduler makes, a lost job dispatched again) has
// another.
func finishedKey(job *jobsv1.JobDispatched) string {
	return fmt.Sprintf("%s/%d/%s", job.GetJobId(), job.GetEnvelope().GetAttempt(), job.GetAttemptToken())
}

// finishedState returns the state the dispatch of job ended in on this
// runner, if it did.
func (r *Runner) finishedState(job *jobsv1.JobDispatched) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.finished.get(finishedKey(job))
}

// rememberFinished records that the dispatch key ended in state and was
// reported. Only an end settled with an Ack is recorded: the delivery of a
// dispatch handed back for a retry (Nak) must run.
func (r *Runner) rememberFinished(key, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished.add(key, state)
}

// ackFinished settles a delivery of a dispatch this runner has already run
// to a reported end: the attempt's Ack was lost (an SQS DeleteMessage that
// failed during an outage, a broker that forgot it), so the message came
// back. The scheduler has the outcome; running the job again would run it
// twice. It is acked, the way that attempt's delivery was to be.
func (r *Runner) ackFinished(d queue.Delivery, state string, log *slog.Logger) {
	log.Warn("delivery of a job this runner already finished; acked without running again", "state", state, "delivery", d.Attempt())
	r.metrics.FinishedRedeliveries.Inc()
	r.settle(log, "ack", d.Ack)
}
