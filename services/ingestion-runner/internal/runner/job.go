package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/logstream"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/redact"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// ErrInvalidJob is the reason a decodable JobDispatched is still refused
// (no usable job id, another tenant's job): poison, like a malformed one.
var ErrInvalidJob = errors.New("invalid job")

const (
	// statusPublishTimeout bounds the retries of one status event. A
	// terminal status that cannot be stored means the job is nak'd and
	// runs again rather than being acked with its outcome unknown.
	statusPublishTimeout = 30 * time.Second
	// settleTimeout bounds one Ack, Nak, Term or InProgress.
	settleTimeout = 10 * time.Second
	// logFlushTimeout bounds the wait for a job's last log chunks.
	logFlushTimeout = 15 * time.Second
	// unsettledRetry is the redelivery delay of a job whose terminal status
	// could not be published.
	unsettledRetry = time.Second
)

// jobRun is one attempt running on this runner.
type jobRun struct {
	jobID string
	// key names the dispatch the attempt runs (finishedKey).
	key     string
	attempt int
	cancel  context.CancelCauseFunc
	// done is closed when the attempt has ended and its delivery was
	// settled as settled says; a second delivery of the same job, held
	// meanwhile, is then settled the same way.
	done    chan struct{}
	settled settlement
}

// settlement is how an attempt's delivery is to be settled: op "ack" once
// its end is reported (even if the Ack itself failed: the job must not run
// again), "nak" (with delay) when it was handed back for a retry, or ""
// when it was not settled (superseded, not reported, or the Nak failed).
type settlement struct {
	op    string
	delay time.Duration
}

// handle is the queue handler: it settles every delivery it is given.
func (r *Runner) handle(_ context.Context, d queue.Delivery) {
	r.enter()
	defer r.leave()
	if r.draining.Load() {
		// Fetched just before the consumer stopped: straight back, untouched.
		r.settle(r.log, "nak", func(ctx context.Context) error { return d.Nak(ctx, 0) })
		return
	}
	job, err := events.DecodeAs[*jobsv1.JobDispatched](d.Header(), d.Data())
	if err == nil && r.cfg.Verifier != nil {
		// Before anything else looks at the job: only work the control
		// plane signed for this tenant and pool runs.
		if verr := r.verify(job, d.Data()); verr != nil {
			reason := signing.Reason(verr)
			r.metrics.RefusedJobs.WithLabelValues(reason).Inc()
			r.log.Warn("unverified job dead-lettered", "subject", d.Subject(), "reason", reason, "error", verr)
			r.settle(r.log, "term", func(ctx context.Context) error { return d.Term(ctx, "refused: "+verr.Error()) })
			return
		}
	}
	if err == nil {
		err = r.checkJob(job)
	}
	if err != nil {
		r.metrics.MalformedMessages.WithLabelValues(string(queue.RoleJobs)).Inc()
		r.log.Warn("malformed job message dead-lettered", "subject", d.Subject(), "attempt", d.Attempt(), "error", err)
		r.settle(r.log, "term", func(ctx context.Context) error { return d.Term(ctx, err.Error()) })
		return
	}
	if state, ok := r.finishedState(job); ok {
		// Before the budget: a lost Ack must not turn into a dead letter
		// either.
		r.ackFinished(d, state, r.log.With("job_id", job.GetJobId(), "delivery", d.Attempt()))
		return
	}

	// The queue's delivery count is not an attempt count: a delivery lost
	// on its way to a runner (a pull request that expired while JetStream
	// elected a leader, an SQS receive whose answer never arrived) counts
	// too. The control plane owns the budget: the dispatch says how many
	// attempts had started when it was made, and this runner takes each
	// delivery of it as one more, at most. Past the max it hands the
	// dispatch back (dead letter) instead of running it: the scheduler,
	// which counts the attempts that really started (RUNNING reports),
	// fails the job or dispatches it again with its true count.
	b := budgetOf(job, d.Attempt())
	attempt, maxAttempts := b.attempt, b.max
	if attempt > 1 {
		r.metrics.Redeliveries.Inc()
	}
	log := r.log.With("job_id", job.GetJobId(), "attempt", attempt)
	if prev := r.runningRun(job.GetJobId()); prev != nil && b.spent > maxAttempts {
		// Whatever its count, a delivery of a job running here is held
		// and settled like the running attempt's, not handed back.
		r.holdDuplicate(d, prev, log)
		return
	}
	if b.spent > maxAttempts {
		// The deliveries before this one may all have started (their
		// runners died or were cut off) or not; the scheduler tells.
		reason := fmt.Sprintf("max attempts (%d) exhausted by the delivery count: delivery %d of a dispatch made with %d attempts started",
			maxAttempts, d.Attempt(), b.started)
		log.Warn("job delivered past its last attempt; handed back to the control plane",
			"max_attempts", maxAttempts, "started_before_dispatch", b.started, "delivery", d.Attempt())
		r.metrics.JobsFinished.WithLabelValues(outcomeExhausted).Inc()
		r.settle(log, "term", func(ctx context.Context) error { return d.Term(ctx, reason) })
		return
	}

	if superseded(d) {
		// Read only after its ack wait passed (this runner was paused
		// with the message in hand): another runner has it by now.
		log.Warn("delivery superseded before the job started; not run")
		r.metrics.JobsFinished.WithLabelValues(outcomeSuperseded).Inc()
		return
	}
	// The claim span covers this delivery's handling, the child of the
	// dispatch's trace; the task's span is its child.
	claimCtx, claim := startJobSpan(events.TraceContext(r.base, job.GetEnvelope()), "runner.claim", job, attempt)
	defer claim.End()
	jobCtx, cancel := context.WithCancelCause(claimCtx)
	defer cancel(nil)
	run := &jobRun{jobID: job.GetJobId(), key: finishedKey(job), attempt: attempt, cancel: cancel, done: make(chan struct{})}
	prev, reason, cancelled, finished := r.register(run)
	if prev != nil {
		r.holdDuplicate(d, prev, log)
		return
	}
	if finished != "" {
		r.ackFinished(d, finished, log)
		return
	}
	if cancelled {
		if reason == "" {
			reason = "cancelled before it started"
		} else {
			reason = "cancelled before it started: " + reason
		}
		log.Info("job already cancelled; not run", "reason", reason)
		st := &jobsv1.JobStatus{State: jobsv1.JobState_JOB_STATE_CANCELLED, Reason: reason}
		if err := r.publishStatus(claimCtx, job, attempt, st); err != nil {
			log.Error("job status not published; job nak'd", "state", "CANCELLED", "error", err)
			r.settle(log, "nak", func(ctx context.Context) error { return d.Nak(ctx, unsettledRetry) })
			return
		}
		r.metrics.JobsFinished.WithLabelValues(outcomeCancelled).Inc()
		r.settle(log, "ack", d.Ack)
		return
	}
	defer r.unregister(run)
	run.settled = r.execute(jobCtx, d, job, b, log)
}

// budget is where a delivery stands in its job's attempts.
type budget struct {
	// attempt is the number of the attempt the delivery runs: the
	// dispatch's attempt plus the deliveries of its message before it.
	// Numbers only grow; they skip where a delivery started nothing.
	attempt int
	// started is how many attempts had started when the job was
	// dispatched (the control plane's count).
	started int
	// spent is the most attempts this delivery can be: started plus every
	// delivery of the dispatch so far, counted as an attempt whether it
	// started or not.
	spent int
	max   int
}

// budgetOf places delivery number delivery (1-based) of job in its
// attempts.
func budgetOf(job *jobsv1.JobDispatched, delivery int) budget {
	delivery = max(delivery, 1)
	base := max(int(job.GetEnvelope().GetAttempt()), 1)
	started := int(job.GetStartedAttempts())
	return budget{
		attempt: base + delivery - 1,
		started: started,
		spent:   started + delivery,
		max:     MaxAttempts(job.GetSpec().GetRetry()),
	}
}

// last reports whether no attempt may follow this one, as far as this
// dispatch knows.
func (b budget) last() bool { return b.spent >= b.max }

// holdDuplicate handles a delivery of a job this runner is already running
// (the broker lost the running delivery's state, e.g. after a restart, or
// handed it out again): the job is not started twice. The delivery is kept
// with InProgress until the running attempt ends, then settled the way
// that attempt's delivery was, so the message ends once, with the outcome
// of the attempt that ran. If the running attempt's delivery could not be
// settled (superseded), this one is nak'd at once: it is the current one,
// and the job runs again from it.
func (r *Runner) holdDuplicate(d queue.Delivery, prev *jobRun, log *slog.Logger) {
	log.Warn("job already running on this runner; delivery held until that attempt ends", "running_attempt", prev.attempt)
	r.metrics.DuplicateDeliveries.Inc()
	stop := r.keepAlive(d, log, func() {})
	select {
	case <-prev.done:
	case <-r.base.Done():
	}
	stop()
	if r.base.Err() != nil {
		r.settle(log, "nak", func(ctx context.Context) error { return d.Nak(ctx, 0) })
		return
	}
	switch prev.settled.op {
	case "ack":
		r.settle(log, "ack", d.Ack)
	case "nak":
		r.settle(log, "nak", func(ctx context.Context) error { return d.Nak(ctx, prev.settled.delay) })
	default:
		r.settle(log, "nak", func(ctx context.Context) error { return d.Nak(ctx, 0) })
	}
}

// verify checks the control plane's signature of job against this runner's
// tenant and pool.
func (r *Runner) verify(job *jobsv1.JobDispatched, raw []byte) error {
	return r.cfg.Verifier.Verify(job, raw, job.GetEnvelope().GetTenant(), signing.Binding{
		Tenant:  r.cfg.Tenant,
		Scope:   signing.PoolScope(r.cfg.Pool),
		Subject: job.GetJobId(),
		Attempt: job.GetEnvelope().GetAttempt(),
	})
}

func (r *Runner) checkJob(job *jobsv1.JobDispatched) error {
	if !queue.ValidToken(job.GetJobId()) {
		return fmt.Errorf("%w: job id %q is not 1-64 characters of [A-Za-z0-9_-]", ErrInvalidJob, job.GetJobId())
	}
	if t := job.GetEnvelope().GetTenant(); t != "" && t != r.cfg.Tenant {
		return fmt.Errorf("%w: job of tenant %q on tenant %q's queue", ErrInvalidJob, t, r.cfg.Tenant)
	}
	return nil
}

// register records run as running unless its job was cancelled already,
// is running here already (then it returns that run) or its dispatch has
// ended here already (then it returns the state it ended in); one lock for
// all, so a cancel, a second delivery or an attempt's end cannot slip in
// between.
func (r *Runner) register(run *jobRun) (prev *jobRun, reason string, cancelled bool, finished string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for other := range r.running {
		if other.jobID == run.jobID {
			return other, "", false, ""
		}
	}
	if state, ok := r.finished.get(run.key); ok {
		return nil, "", false, state
	}
	if reason, ok := r.cancelled.get(run.jobID); ok {
		return nil, reason, true, ""
	}
	r.running[run] = struct{}{}
	r.metrics.JobsRunning.Set(float64(len(r.running)))
	return nil, "", false, ""
}

// runningRun returns the run of jobID on this runner, or nil.
func (r *Runner) runningRun(jobID string) *jobRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	for run := range r.running {
		if run.jobID == jobID {
			return run
		}
	}
	return nil
}

func (r *Runner) unregister(run *jobRun) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.running, run)
	r.metrics.JobsRunning.Set(float64(len(r.running)))
	close(run.done)
}

// execute runs one attempt, settles it and returns how.
func (r *Runner) execute(ctx context.Context, d queue.Delivery, job *jobsv1.JobDispatched, b budget, log *slog.Logger) settlement {
	attempt, maxAttempts := b.attempt, b.max
	started := time.Now()
	spec := job.GetSpec()
	r.metrics.JobsStarted.Inc()
	ctx, supersede := context.WithCancelCause(ctx)
	defer supersede(nil)
	ctx, span := startJobSpan(ctx, "runner.task", job, attempt)
	defer span.End()
	stopKeepAlive := r.keepAlive(d, log, func() { supersede(ErrSuperseded) })
	defer stopKeepAlive()

	// RUNNING is published while the task starts, not before: the task
	// does not wait for the broker's round trip. The job runs whether it is
	// stored or not (the terminal status supersedes RUNNING); the outcome
	// is published only once RUNNING is settled, so that it follows RUNNING
	// on the job's status subject. A dispatch with a running_report_delay
	// has RUNNING wait that long: a shorter attempt reports its start with
	// its outcome instead.
	running := r.reportRunning(ctx, job, attempt, log)
	defer running.settle()
	log.Info("job attempt started", "max_attempts", maxAttempts, "kind", tasks.Kind(spec.GetTask()))

	redactor := redact.New()
	streamer := logstream.Start(logstream.Options{
		Publisher:    r.broker,
		Subject:      r.subjects.JobLogs(r.cfg.Tenant, job.GetJobId()),
		Tenant:       r.cfg.Tenant,
		JobID:        job.GetJobId(),
		Attempt:      uint32(attempt),
		AttemptToken: job.GetAttemptToken(),
		Limits:       r.cfg.Logs,
		MaxLineBytes: r.cfg.MaxLineBytes,
		Redactor:     redactor,
		Logger:       log,
		OnSent:       func(n int) { r.metrics.LogLinesSent.Add(float64(n)) },
	})
	streamer.Log(fmt.Sprintf("attempt %d of %d on runner %s", b.spent, maxAttempts, r.cfg.RunnerID))

	taskCtx := ctx
	var res tasks.Result
	impl, _, err := r.tasks.For(spec.GetTask())
	if err != nil {
		res = tasks.Result{Err: err}
	} else {
		if timeout := spec.GetTimeout().AsDuration(); timeout > 0 {
			var cancel context.CancelFunc
			taskCtx, cancel = context.WithTimeoutCause(ctx, timeout, fmt.Errorf("%w after %s", tasks.ErrTimedOut, timeout))
			defer cancel()
		}
		in := tasks.Input{Tenant: r.cfg.Tenant, JobID: job.GetJobId(), Attempt: attempt, AttemptToken: job.GetAttemptToken(), Spec: spec, User: job.GetUser()}
		res = impl.Run(taskCtx, in, streamer)
	}
	duration := time.Since(started)

	outcome := tasks.Classify(taskCtx, res)
	// Reasons and outputs leave the customer network too: mask them like
	// the logs, in case a task put a resolved value in an error.
	outcome.Reason = redactor.Redact(outcome.Reason)
	outputs := make(map[string]string, len(res.Outputs))
	for k, v := range res.Outputs {
		outputs[k] = redactor.Redact(v)
	}
	st := &jobsv1.JobStatus{
		State:  outcome.State,
		Reason: outcome.Reason,
		Result: &jobsv1.JobResult{ExitCode: int32(res.ExitCode), Duration: durationpb.New(duration), Outputs: outputs,
			RecordBatches: uint32(max(res.RecordBatches, 0))},
	}
	label := outcomeLabel(outcome.State)
	var nakDelay time.Duration
	nak := false
	switch {
	case errors.Is(context.Cause(taskCtx), ErrShutdown):
		// Not the job's fault: another runner takes it at once.
		st.State, st.Reason, st.RetryAt = jobsv1.JobState_JOB_STATE_QUEUED, ErrShutdown.Error(), timestamppb.Now()
		nak, label = true, outcomeRequeued
	case outcome.State == jobsv1.JobState_JOB_STATE_FAILED && outcome.Retryable && !b.last():
		nakDelay = RetryDelay(spec.GetRetry(), b.spent, r.cfg.RetryJitter)
		st.State, st.RetryAt = jobsv1.JobState_JOB_STATE_QUEUED, timestamppb.New(time.Now().Add(nakDelay))
		nak, label = true, outcomeRetrying
	case outcome.State == jobsv1.JobState_JOB_STATE_FAILED && outcome.Retryable:
		st.Reason = fmt.Sprintf("%s (attempt %d of %d)", outcome.Reason, b.spent, maxAttempts)
	}
	// The last word before reporting: a delivery whose ack wait passed
	// while the task ran (this runner was paused) belongs to a later
	// attempt now, which reports the job; this one must not.
	if errors.Is(context.Cause(ctx), ErrSuperseded) || superseded(d) {
		streamer.Log("attempt superseded by a later attempt (its delivery's ack wait passed); not reported")
		flushCtx, cancelFlush := context.WithTimeout(r.base, logFlushTimeout)
		_ = streamer.Close(flushCtx)
		cancelFlush()
		r.metrics.JobsFinished.WithLabelValues(outcomeSuperseded).Inc()
		log.Warn("job attempt superseded; neither reported nor settled", "duration", duration)
		return settlement{}
	}
	streamer.Log(summary(st, nakDelay))
	flushCtx, cancelFlush := context.WithTimeout(r.base, logFlushTimeout)
	// A short attempt's lines ride with its outcome when the control plane
	// reads them there (the dispatch says how many bytes): one event less
	// per job. Should the outcome not be stored, the job runs again and
	// that attempt logs its own lines.
	inline, err := streamer.CloseInline(flushCtx, int(job.GetInlineLogsMax()))
	if err != nil {
		log.Warn("job logs not all published", "error", err)
	}
	cancelFlush()
	st.Logs = inline

	state := strings.TrimPrefix(st.GetState().String(), "JOB_STATE_")
	if running.settle() {
		st.StartedAt = timestamppb.New(started)
	}
	if err := r.publishStatus(ctx, job, attempt, st); err != nil {
		// Acking now would lose the outcome: run the job again instead.
		log.Error("job status not published; job nak'd to run again", "state", state, "error", err)
		stopKeepAlive()
		r.settle(log, "nak", func(ctx context.Context) error { return d.Nak(ctx, unsettledRetry) })
		return settlement{}
	}
	stopKeepAlive()
	if inline != nil {
		r.metrics.LogLinesSent.Add(float64(len(inline.GetLines())))
	}
	done := settlement{op: "ack"}
	if nak {
		done = settlement{op: "nak", delay: nakDelay}
		if !r.settle(log, "nak", func(ctx context.Context) error { return d.Nak(ctx, nakDelay) }) {
			done = settlement{}
		}
	} else {
		// Remembered before the Ack: if the Ack is lost, the message
		// comes back, and this dispatch has ended.
		r.rememberFinished(finishedKey(job), state)
		r.settle(log, "ack", d.Ack)
	}
	r.metrics.JobsFinished.WithLabelValues(label).Inc()
	r.metrics.JobDuration.WithLabelValues(label).Observe(duration.Seconds())
	log.Info("job attempt finished", "state", state, "reason", st.GetReason(),
		"exit_code", res.ExitCode, "duration", duration, "retry_in", nakDelay)
	return done
}

// superseded asks the queue whether d is still this runner's: an
// InProgress fails with queue.ErrSuperseded, sending nothing, once the
// delivery's ack wait has passed without one.
func superseded(d queue.Delivery) bool {
	ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
	defer cancel()
	return errors.Is(d.InProgress(ctx), queue.ErrSuperseded)
}

func summary(st *jobsv1.JobStatus, retryIn time.Duration) string {
	state := strings.TrimPrefix(st.GetState().String(), "JOB_STATE_")
	var b strings.Builder
	fmt.Fprintf(&b, "attempt ended: %s", state)
	if st.GetReason() != "" {
		fmt.Fprintf(&b, ": %s", st.GetReason())
	}
	if retryIn > 0 {
		fmt.Fprintf(&b, "; retrying in %s", retryIn.Round(time.Millisecond))
	}
	return b.String()
}

func outcomeLabel(s jobsv1.JobState) string {
	switch s {
	case jobsv1.JobState_JOB_STATE_SUCCEEDED:
		return outcomeSucceeded
	case jobsv1.JobState_JOB_STATE_TIMED_OUT:
		return outcomeTimedOut
	case jobsv1.JobState_JOB_STATE_CANCELLED:
		return outcomeCancelled
	default:
		return outcomeFailed
	}
}

// keepAlive extends the delivery's ack wait every third of it (or quarter
// of its fence lease, if shorter) until the returned function is called, so a long job is not handed to another
// runner while this one is alive. If the queue says the delivery was
// superseded (this runner was paused past the ack wait), it calls lost and
// stops.
func (r *Runner) keepAlive(d queue.Delivery, log *slog.Logger, lost func()) (stop func()) {
	ctx, cancel := context.WithCancel(r.base)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// A quarter of the fence lease (the ack wait less its margin) at
		// most, so only a scheduling stall of about half the lease loses it.
		every := r.cfg.AckWait / 3
		if lease := r.cfg.AckWait - queue.FenceMargin(r.cfg.AckWait); lease > 0 {
			every = min(every, lease/4)
		}
		t := time.NewTicker(max(every, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ictx, icancel := context.WithTimeout(ctx, settleTimeout)
			err := d.InProgress(ictx)
			icancel()
			if errors.Is(err, queue.ErrSuperseded) {
				log.Warn("delivery superseded: its ack wait passed without an in-progress; the attempt is stopped", "error", err)
				lost()
				return
			}
			if err != nil && ctx.Err() == nil {
				log.Warn("in-progress ack failed", "error", err)
			}
		}
	}()
	return sync.OnceFunc(func() {
		cancel()
		<-done
	})
}

// publishStatus publishes st for the attempt, retrying for a while: a
// status is what the scheduler records, so it is worth waiting for. The
// dedupe id "<job>-<attempt>-<STATE>" makes the retries harmless. The
// status carries the trace of tctx; the publish itself is bounded by the
// runner's base context, not by tctx.
func (r *Runner) publishStatus(tctx context.Context, job *jobsv1.JobDispatched, attempt int, st *jobsv1.JobStatus) error {
	jobID := job.GetJobId()
	dedupe := fmt.Sprintf("%s-%d-%s", jobID, attempt, strings.TrimPrefix(st.GetState().String(), "JOB_STATE_"))
	st.Envelope = events.NewEnvelope(r.cfg.Tenant, uint32(attempt), dedupe, job.GetEnvelope().GetTraceId())
	events.WithTrace(tctx, st.Envelope)
	st.JobId = jobID
	st.RunnerId = r.cfg.RunnerID
	st.AttemptToken = job.GetAttemptToken()
	msg, err := events.Encode(r.subjects.JobStatus(r.cfg.Tenant, jobID), st, dedupe)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.base, statusPublishTimeout)
	defer cancel()
	// An outcome that carries its start is its attempt's only status: it
	// may share a message with other jobs' outcomes when the dispatch
	// offers it (statusbatch.go). Any other status goes alone, so that an
	// attempt's RUNNING and its outcome keep their order on its subject.
	if n := int(job.GetStatusBatchMax()); n > 1 && st.StartedAt != nil {
		return r.statuses.send(ctx, &statusReq{msg: msg, st: st, max: n})
	}
	return r.statuses.publishRetrying(ctx, msg)
}

// settle runs one of Ack, Nak or Term with a bounded context and reports
// whether it succeeded. A failure is logged only: the queue redelivers an
// unsettled message after the ack wait, and the scheduler fences what the
// next attempt reports.
func (r *Runner) settle(log *slog.Logger, op string, fn func(context.Context) error) bool {
	ctx, cancel := context.WithTimeout(r.base, settleTimeout)
	defer cancel()
	if err := fn(ctx); err != nil {
		log.Warn("delivery not settled", "op", op, "error", err)
		return false
	}
	return true
}
