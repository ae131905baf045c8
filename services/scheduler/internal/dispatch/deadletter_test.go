package dispatch

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/presence"
)

// A dispatch dead-lettered for its delivery count ends the job only once
// every attempt the job allows has started (reported RUNNING); the control
// plane, not the queue's count, decides.
func TestDeadLetterForDeliveryCount(t *testing.T) {
	const lostAfter = time.Minute
	exhausted := queue.DeadLetter{
		Reason: "max attempts (3) exhausted by the delivery count: delivery 7 of a dispatch made with 0 attempts started",
		Class:  queue.ClassRejected, Attempts: 7,
	}
	tests := []struct {
		name string
		// set puts the record where the test needs it.
		set func(r *jobs.Record)
		// dispatchAttempt is the attempt the dead-lettered dispatch opened.
		dispatchAttempt uint32
		// heartbeat: the record's runner was heard from just now.
		heartbeat   bool
		dl          queue.DeadLetter
		wantErr     error
		wantState   jobs.State
		wantReason  string
		wantAttempt int
		// wantDispatch is the attempt of the dispatch published, 0 for none.
		wantDispatch uint32
		wantStarted  uint32
		wantDedupe   string
	}{
		{
			name: "nothing started: dispatched again as attempt 1", dispatchAttempt: 1, dl: exhausted,
			wantState: jobs.StateQueued, wantReason: "its work message ran out of deliveries (7) with 0 of 3 attempts started; dispatched again as attempt 1",
			wantDispatch: 1, wantDedupe: "dispatch/a/1/1",
		},
		{
			name: "the consumer's backstop, one attempt lost", dispatchAttempt: 1,
			set:       func(r *jobs.Record) { r.State, r.Attempt, r.Started, r.RunnerID = jobs.StateRunning, 2, 1, "gone" },
			dl:        queue.DeadLetter{Reason: "max deliveries (10) exceeded", Class: queue.ClassMaxDeliveries, Attempts: 10},
			wantState: jobs.StateQueued, wantReason: "its work message ran out of deliveries (10) with 1 of 3 attempts started; dispatched again as attempt 3",
			wantAttempt: 2, wantDispatch: 3, wantStarted: 1, wantDedupe: "dispatch/a/3/1",
		},
		{
			name: "every attempt started and the last runner is gone", dispatchAttempt: 1,
			set: func(r *jobs.Record) { r.State, r.Attempt, r.Started, r.RunnerID = jobs.StateRunning, 3, 3, "gone" },
			dl:  exhausted, wantState: jobs.StateFailed, wantAttempt: 3,
			wantReason: "dead-lettered: max attempts (3) exhausted; the runner of attempt 3 was lost",
		},
		{
			name: "every attempt started, the last one's job handed back by the reaper", dispatchAttempt: 4,
			set: func(r *jobs.Record) {
				r.State, r.Attempt, r.Started, r.Redispatched, r.RunnerID = jobs.StateQueued, 3, 3, 4, "gone"
				r.Reason = "runner gone of attempt 3 went silent and the job's work message is gone; dispatched again as attempt 4"
			},
			dl: exhausted, wantState: jobs.StateFailed, wantAttempt: 3,
			wantReason: "dead-lettered: max attempts (3) exhausted; the runner of attempt 3 was lost",
		},
		{
			name: "every attempt started, the last one failed", dispatchAttempt: 1,
			set: func(r *jobs.Record) {
				r.State, r.Attempt, r.Started, r.Reason = jobs.StateQueued, 3, 3, "exit status 1"
			},
			dl: exhausted, wantState: jobs.StateFailed, wantAttempt: 3,
			wantReason: "dead-lettered: max attempts (3) exhausted (last failure: exit status 1)",
		},
		{
			name: "a dispatch superseded by a later one changes nothing", dispatchAttempt: 1,
			set: func(r *jobs.Record) {
				r.State, r.Attempt, r.Started, r.Redispatched, r.RunnerID = jobs.StateRunning, 2, 1, 2, "gone"
			},
			dl: exhausted, wantState: jobs.StateRunning, wantAttempt: 2,
		},
		{
			name: "its runner still heartbeats: decided later", dispatchAttempt: 1, heartbeat: true,
			set: func(r *jobs.Record) { r.State, r.Attempt, r.Started, r.RunnerID = jobs.StateRunning, 1, 1, "r1" },
			dl:  exhausted, wantErr: errAttemptRunning, wantState: jobs.StateRunning, wantAttempt: 1,
		},
		{
			name: "a refusal fails the job at once", dispatchAttempt: 1,
			dl:        queue.DeadLetter{Reason: "refused: signing: expired", Class: queue.ClassRejected, Attempts: 1},
			wantState: jobs.StateFailed, wantReason: "dead-lettered: refused: signing: expired", wantAttempt: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			f := newFixture(t)
			f.e.opts.LostAfter = lostAfter
			f.t.Presence = presence.NewTracker(time.Second, t0.Add(-time.Hour))
			f.create(t, "a")
			if tt.set != nil {
				_, _, err := f.t.Jobs.Update(ctx, "a", func(r *jobs.Record) (bool, error) { tt.set(r); return true, nil })
				require.NoError(t, err)
			}
			if tt.heartbeat {
				f.t.Presence.Observe(presence.Runner{ID: "r1", Pool: "default", LastSeen: t0})
			}
			m := &jobsv1.JobDispatched{Envelope: events.NewEnvelope("acme", tt.dispatchAttempt, "a", ""), JobId: "a", AttemptToken: f.token(t, "a")}
			err := f.e.failDeadLettered(ctx, f.t, m, tt.dl)
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
			} else {
				require.NoError(t, err)
			}
			rec, err := f.t.Jobs.Get(ctx, "a")
			require.NoError(t, err)
			require.Equal(t, tt.wantState, rec.State)
			require.Equal(t, tt.wantAttempt, rec.Attempt)
			if tt.wantReason != "" {
				require.Equal(t, tt.wantReason, rec.Reason)
			}
			msgs := f.b.published()
			if tt.wantDispatch == 0 {
				require.Empty(t, msgs)
				return
			}
			require.Len(t, msgs, 1)
			require.Equal(t, tt.wantDedupe, msgs[0].DedupeID)
			job, err := events.DecodeAs[*jobsv1.JobDispatched](msgs[0].Header, msgs[0].Data)
			require.NoError(t, err)
			require.Equal(t, tt.wantDispatch, job.GetEnvelope().GetAttempt())
			require.Equal(t, tt.wantStarted, job.GetStartedAttempts())

			// The same dead letter handled again (its ack was lost): the
			// same dispatch is published again, deduplicated, and the job
			// is not reissued twice.
			require.NoError(t, f.e.failDeadLettered(ctx, f.t, m, tt.dl))
			again, err := f.t.Jobs.Get(ctx, "a")
			require.NoError(t, err)
			require.Equal(t, 1, again.Reissued)
			msgs = f.b.published()
			require.Len(t, msgs, 2)
			require.Equal(t, tt.wantDedupe, msgs[1].DedupeID)
		})
	}
}
