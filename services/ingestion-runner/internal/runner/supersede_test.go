package runner

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// A second delivery of a job this runner is running is not started: it is
// held with InProgress and settled like the running attempt's delivery.
func TestDuplicateDeliveryHeld(t *testing.T) {
	tests := []struct {
		name   string
		fail   string
		wantOp string
		// delivery is the second delivery's count.
		delivery int
	}{
		{name: "running attempt succeeds", wantOp: "ack", delivery: 1},
		{name: "running attempt retries", fail: "boom", wantOp: "nak", delivery: 1},
		{name: "a count past the max attempts is held too, not handed back", wantOp: "ack", delivery: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startRunner(t, func(c *Config) { c.AckWait = 90 * time.Millisecond })
			job := noopJob("dup", 600*time.Millisecond, tt.fail)
			first := h.b.deliverJob(t, job, 1)
			require.Eventually(t, func() bool { return len(h.b.statuses(t, "dup")) == 1 }, 5*time.Second, 5*time.Millisecond)
			second := h.b.deliverJob(t, job, tt.delivery)
			require.Eventually(t, func() bool { return second.progressCount() >= 2 }, 5*time.Second, 5*time.Millisecond,
				"the held delivery is kept with InProgress")
			require.Empty(t, second.settledOp(), "held delivery settled while the job runs")

			op, _, _ := first.wait(t)
			require.Equal(t, tt.wantOp, op)
			op2, _, _ := second.wait(t)
			require.Equal(t, tt.wantOp, op2, "the held delivery is settled like the running one")
			states := h.b.states(t, "dup")
			require.Len(t, states, 2, "one run: RUNNING and its outcome")
			require.Equal(t, jobsv1.JobState_JOB_STATE_RUNNING, states[0])
			require.InDelta(t, 1, testutil.ToFloat64(h.metrics.JobsStarted), 0)
			require.InDelta(t, 1, testutil.ToFloat64(h.metrics.DuplicateDeliveries), 0)
		})
	}
}

// An attempt whose delivery was superseded (its runner paused past the ack
// wait) is stopped and neither reports an outcome nor settles.
func TestSupersededAttemptStoppedUnreported(t *testing.T) {
	tests := []struct {
		name  string
		sleep time.Duration
	}{
		{name: "noticed by the keep-alive while running", sleep: time.Hour},
		{name: "noticed when the task ends", sleep: 300 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ackWait := 90 * time.Millisecond
			if tt.sleep < time.Hour {
				ackWait = time.Hour // no keep-alive tick before the end
			}
			h := startRunner(t, func(c *Config) { c.AckWait = ackWait })
			d := h.b.deliverJob(t, noopJob("stale", tt.sleep, ""), 2)
			require.Eventually(t, func() bool { return len(h.b.statuses(t, "stale")) == 1 }, 5*time.Second, 5*time.Millisecond)
			d.supersede()
			require.Eventually(t, func() bool {
				return testutil.ToFloat64(h.metrics.JobsFinished.WithLabelValues(outcomeSuperseded)) == 1
			}, 10*time.Second, 5*time.Millisecond, "the superseded attempt did not end")
			require.Equal(t, []jobsv1.JobState{jobsv1.JobState_JOB_STATE_RUNNING}, h.b.states(t, "stale"), "a superseded attempt reported an outcome")
			require.Empty(t, d.settledOp())
			require.Eventually(t, func() bool {
				h.r.mu.Lock()
				defer h.r.mu.Unlock()
				return len(h.r.running) == 0
			}, 5*time.Second, 5*time.Millisecond, "the superseded attempt is still registered")
		})
	}
}
