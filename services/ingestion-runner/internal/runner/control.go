package runner

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// recentCancelled is how many cancelled job ids a runner remembers for jobs
// that reach it after their cancel (a job still queued when it was
// cancelled, or delivered again later).
const recentCancelled = 10_000

// recentFinished is how many ended dispatches a runner remembers, for the
// deliveries that come back after their Ack was lost (an SQS
// DeleteMessage during an outage, a broker restart).
const recentFinished = 10_000

// cancelSet remembers the last n keys (cancelled job ids, finished
// dispatches) with a value, oldest forgotten first.
// It is not safe for concurrent use; the runner guards it.
type cancelSet struct {
	ids  map[string]string // job id -> reason
	ring []string
	next int
}

func newCancelSet(n int) *cancelSet {
	return &cancelSet{ids: make(map[string]string, n), ring: make([]string, n)}
}

func (s *cancelSet) add(id, reason string) {
	if _, ok := s.ids[id]; ok {
		return
	}
	if old := s.ring[s.next]; old != "" {
		delete(s.ids, old)
	}
	s.ring[s.next] = id
	s.next = (s.next + 1) % len(s.ring)
	s.ids[id] = reason
}

func (s *cancelSet) get(id string) (string, bool) {
	r, ok := s.ids[id]
	return r, ok
}

// Control consumer settings, for a backend without history (SQS), where
// the runner consumes its own control queue.
const (
	controlAckWait       = 30 * time.Second
	controlMaxDeliveries = 5
	controlStopWait      = 5 * time.Second
)

// errBadControl is wrapped by the reasons a control message is refused.
var errBadControl = errors.New("invalid control message")

// followControl receives the cancels for this runner's jobs on its own
// control subject until ctx is done (the scheduler sends a cancel to the
// runner that runs the job). It reads the subject from now on; a broken
// read resumes after the last message seen, so a cancel sent during a
// reconnect is not lost. A backend that keeps no history (SQS: Read fails
// with errors.ErrUnsupported) is consumed instead: there the subject is
// the runner's own queue, which the first Consume creates.
func (r *Runner) followControl(ctx context.Context) {
	subject := r.subjects.RunnerControl(r.cfg.Tenant, r.cfg.Pool, r.cfg.RunnerID)
	var last uint64
	wait := 100 * time.Millisecond
	for {
		opts := queue.ReadOptions{OnlyNew: true, Follow: true}
		if last > 0 {
			opts = queue.ReadOptions{FromSequence: last + 1, Follow: true}
		}
		err := r.broker.Read(ctx, subject, opts, func(m queue.StreamMessage) bool {
			last = m.Sequence
			wait = 100 * time.Millisecond
			if err := r.onControl(m.Subject, m.Header, m.Data); err != nil {
				r.log.Warn("control message ignored", "subject", m.Subject, "sequence", m.Sequence, "error", err)
			}
			return true
		})
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errors.ErrUnsupported) {
			r.consumeControl(ctx, subject)
			return
		}
		r.log.Warn("control subject read stopped; retrying", "subject", subject, "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 5*time.Second)
	}
}

// consumeControl consumes the runner's own control queue until ctx is
// done, retrying the start while the tenant is not provisioned (or SQS is
// away).
func (r *Runner) consumeControl(ctx context.Context, subject string) {
	cc := queue.ConsumerConfig{
		Name:          "runner-" + r.cfg.RunnerID,
		Subject:       subject,
		AckWait:       controlAckWait,
		MaxDeliveries: controlMaxDeliveries,
		Concurrency:   1,
	}
	wait := 250 * time.Millisecond
	for {
		c, err := r.broker.Consume(ctx, cc, r.handleControl)
		if err == nil {
			r.log.Debug("consuming the runner's control queue", "subject", subject)
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), controlStopWait)
			defer cancel()
			if err := c.Stop(sctx); err != nil {
				r.log.Warn("control consumer stop failed", "error", err)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		r.log.Warn("control queue not consumed yet; retrying", "subject", subject, "error", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

// handleControl handles a delivery of the control queue: a message that
// cannot be a cancel for this runner is dead-lettered with the reason.
func (r *Runner) handleControl(_ context.Context, d queue.Delivery) {
	if err := r.onControl(d.Subject(), d.Header(), d.Data()); err != nil {
		r.log.Warn("control message dead-lettered", "subject", d.Subject(), "attempt", d.Attempt(), "error", err)
		r.settle(r.log, "term", func(ctx context.Context) error { return d.Term(ctx, err.Error()) })
		return
	}
	r.settle(r.log, "ack", d.Ack)
}

// onControl carries out a control message, or says why it cannot.
func (r *Runner) onControl(subject string, header map[string]string, data []byte) error {
	c, err := events.DecodeAs[*jobsv1.CancelJob](header, data)
	if err != nil {
		r.metrics.MalformedMessages.WithLabelValues(string(queue.RoleControl)).Inc()
		return err
	}
	if t := c.GetEnvelope().GetTenant(); t != "" && t != r.cfg.Tenant {
		return fmt.Errorf("%w: cancel of tenant %q for a runner of tenant %q", errBadControl, t, r.cfg.Tenant)
	}
	if c.GetJobId() == "" {
		return fmt.Errorf("%w: cancel without job id", errBadControl)
	}
	n := r.cancel(c.GetJobId(), c.GetReason())
	r.log.Info("job cancel received", "subject", subject, "job_id", c.GetJobId(), "reason", c.GetReason(), "running_attempts", n)
	return nil
}

// cancel remembers jobID as cancelled and stops its running attempts; it
// returns how many it stopped.
func (r *Runner) cancel(jobID, reason string) int {
	cause := tasks.ErrCancelled
	if reason != "" {
		cause = fmt.Errorf("%w: %s", tasks.ErrCancelled, reason)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancelled.add(jobID, reason)
	n := 0
	for run := range r.running {
		if run.jobID == jobID {
			run.cancel(cause)
			n++
		}
	}
	return n
}
