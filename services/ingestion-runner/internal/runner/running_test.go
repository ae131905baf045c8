package runner

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// TestRunningReportDelay: a dispatch's running_report_delay holds RUNNING
// back; an attempt that ends within it reports only its outcome, with its
// start.
func TestRunningReportDelay(t *testing.T) {
	retry := func(s *jobsv1.JobSpec) {
		s.Retry = &jobsv1.RetryPolicy{MaxAttempts: 3, InitialBackoff: durationpb.New(time.Second)}
	}
	tests := []struct {
		name        string
		job         *jobsv1.JobDispatched
		delay       time.Duration
		wantStates  []jobsv1.JobState
		wantStarted bool
	}{
		{name: "no delay: RUNNING as it starts", job: noopJob("now", 0, ""), wantStates: []jobsv1.JobState{running, succeeded}},
		{name: "ends within the delay: the outcome carries the start", job: noopJob("short", 0, ""), delay: time.Hour,
			wantStates: []jobsv1.JobState{succeeded}, wantStarted: true},
		{name: "a retry within the delay too", job: noopJob("retry", 0, "boom", retry), delay: time.Hour,
			wantStates: []jobsv1.JobState{queued}, wantStarted: true},
		{name: "runs past the delay: RUNNING, then the outcome", job: noopJob("long", 300*time.Millisecond, ""), delay: 20 * time.Millisecond,
			wantStates: []jobsv1.JobState{running, succeeded}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := startRunner(t, nil)
			if tt.delay > 0 {
				tt.job.RunningReportDelay = durationpb.New(tt.delay)
			}
			before := time.Now()
			_, _, _ = h.b.deliverJob(t, tt.job, 1).wait(t)
			require.Equal(t, tt.wantStates, h.b.states(t, tt.job.GetJobId()))
			sts := h.b.statuses(t, tt.job.GetJobId())
			final := sts[len(sts)-1]
			if !tt.wantStarted {
				require.Nil(t, final.GetStartedAt())
				return
			}
			started := final.GetStartedAt().AsTime()
			require.False(t, started.Before(before.Truncate(time.Microsecond)), "started %s before the delivery at %s", started, before)
			require.False(t, started.After(final.GetEnvelope().GetOccurredAt().AsTime()), "started after its outcome")
		})
	}
}
