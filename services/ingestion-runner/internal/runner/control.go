package runner

import (
	"context"
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

// cancelSet remembers the last n cancelled job ids, oldest forgotten first.
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

// followControl reads the pool's control subject from now on until ctx is
// done. A broken read resumes after the last message seen, so a cancel sent
// during a reconnect is not lost.
func (r *Runner) followControl(ctx context.Context) {
	subject := r.subjects.Control(r.cfg.Tenant, r.cfg.Pool)
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
			r.onControl(m)
			return true
		})
		if ctx.Err() != nil {
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

func (r *Runner) onControl(m queue.StreamMessage) {
	c, err := events.DecodeAs[*jobsv1.CancelJob](m.Header, m.Data)
	if err != nil {
		r.metrics.MalformedMessages.WithLabelValues(string(queue.RoleControl)).Inc()
		r.log.Warn("malformed control message ignored", "subject", m.Subject, "sequence", m.Sequence, "error", err)
		return
	}
	if t := c.GetEnvelope().GetTenant(); t != "" && t != r.cfg.Tenant {
		r.log.Warn("control message for another tenant ignored", "subject", m.Subject, "envelope_tenant", t)
		return
	}
	if c.GetJobId() == "" {
		r.log.Warn("control message without job id ignored", "subject", m.Subject)
		return
	}
	n := r.cancel(c.GetJobId(), c.GetReason())
	r.log.Info("job cancel received", "job_id", c.GetJobId(), "reason", c.GetReason(), "running_attempts", n)
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
