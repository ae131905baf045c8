package jobs

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// rec returns a record in state s at attempt a.
func rec(s State, a int) *Record {
	r := &Record{ID: "j1", State: s, Attempt: a, CreatedAt: t0, History: []Transition{{State: StateQueued, At: t0}}}
	if s == StateQueued && a > 0 {
		r.Reason = "boom"
		r.RetryAt = timePtr(t0.Add(time.Minute))
	}
	if s == StateRunning {
		r.StartedAt = timePtr(t0)
	}
	return r
}

func ev(s State, a int) Event {
	return Event{State: s, Attempt: a, RunnerID: "r1", At: t0.Add(time.Second)}
}

func TestApplyTransitions(t *testing.T) {
	live := []State{StateQueued, StateRunning}
	terminal := []State{StateSucceeded, StateFailed, StateCancelled, StateTimedOut}
	type tc struct {
		name    string
		rec     *Record
		ev      Event
		outcome Outcome
	}
	var cases []tc
	// From a fresh QUEUED record (attempt 0) every state of attempt 1 applies.
	for _, s := range States {
		cases = append(cases, tc{"fresh queued to " + string(s), rec(StateQueued, 0), ev(s, 1), Applied})
	}
	// From RUNNING(1): same attempt RUNNING is a duplicate, others apply.
	for _, s := range States {
		want := Applied
		if s == StateRunning {
			want = Duplicate
		}
		cases = append(cases, tc{"running(1) to " + string(s) + "(1)", rec(StateRunning, 1), ev(s, 1), want})
		cases = append(cases, tc{"running(1) to " + string(s) + "(2)", rec(StateRunning, 1), ev(s, 2), Applied})
	}
	// Waiting for a retry after attempt 1 failed: RUNNING(1) came late.
	cases = append(cases,
		tc{"retry wait(1) then a late running(1)", rec(StateQueued, 1), ev(StateRunning, 1), Backfilled},
		tc{"retry wait(1) to running(2)", rec(StateQueued, 1), ev(StateRunning, 2), Applied},
		tc{"retry wait(1) to failed(1)", rec(StateQueued, 1), ev(StateFailed, 1), Applied},
		tc{"retry wait(1) repeated", rec(StateQueued, 1), Event{State: StateQueued, Attempt: 1, Reason: "boom", RetryAt: timePtr(t0.Add(time.Minute))}, Duplicate},
		tc{"retry wait(1) new reason", rec(StateQueued, 1), Event{State: StateQueued, Attempt: 1, Reason: "other"}, Applied},
	)
	// Older attempts are fenced from every live state.
	for _, from := range live {
		for _, s := range States {
			cases = append(cases, tc{"stale " + string(s) + "(1) on " + string(from) + "(2)", rec(from, 2), ev(s, 1), FencedStale})
		}
	}
	// Terminal records never change.
	for _, from := range terminal {
		for _, s := range States {
			for _, a := range []int{1, 2, 3} {
				want := FencedTerminal
				switch {
				case s == from && (a == 2 || s == StateCancelled):
					want = Duplicate
				case s == StateRunning && a == 2 && from != StateCancelled:
					want = Backfilled // arrived after the outcome of its attempt
				}
				cases = append(cases, tc{string(from) + "(2) then " + string(s) + "(" + string(rune('0'+a)) + ")", rec(from, 2), ev(s, a), want})
			}
		}
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := *c.rec
			res, err := c.rec.Apply(c.ev, t0.Add(2*time.Second), 10)
			require.NoError(t, err)
			require.Equal(t, c.outcome, res.Outcome)
			if c.outcome == Backfilled {
				require.Equal(t, before.State, c.rec.State)
				require.Equal(t, before.Attempt, c.rec.Attempt)
				require.Len(t, c.rec.History, len(before.History)+1)
				return
			}
			if c.outcome != Applied {
				require.Equal(t, before, *c.rec, "a refused event must not change the record")
				return
			}
			require.Equal(t, c.ev.State, c.rec.State)
			require.Equal(t, c.ev.Attempt, c.rec.Attempt)
			require.Equal(t, t0.Add(2*time.Second), c.rec.UpdatedAt)
			last := c.rec.History[len(c.rec.History)-1]
			require.Equal(t, c.ev.State, last.State)
			require.Equal(t, c.ev.Attempt, last.Attempt)
			if c.ev.State.Terminal() {
				require.NotNil(t, c.rec.FinishedAt)
				require.Nil(t, c.rec.RetryAt)
			}
		})
	}
}

func TestApplyEffects(t *testing.T) {
	t.Run("first start and redelivery", func(t *testing.T) {
		r := rec(StateQueued, 0)
		res, err := r.Apply(ev(StateRunning, 1), t0, 10)
		require.NoError(t, err)
		require.True(t, res.FirstStart)
		require.False(t, res.Redelivery)
		require.Equal(t, "r1", r.RunnerID)

		res, err = r.Apply(Event{State: StateRunning, Attempt: 2, RunnerID: "r2"}, t0.Add(time.Minute), 10)
		require.NoError(t, err)
		require.False(t, res.FirstStart)
		require.True(t, res.Redelivery)
		require.Equal(t, "r2", r.RunnerID)
		require.Equal(t, t0.Add(time.Minute), *r.StartedAt, "an event without time is stamped now")
	})
	t.Run("retry wait keeps reason and retry_at, next run clears them", func(t *testing.T) {
		r := rec(StateRunning, 1)
		at := t0.Add(10 * time.Second)
		_, err := r.Apply(Event{State: StateQueued, Attempt: 1, Reason: "exit 1", RetryAt: &at}, t0, 10)
		require.NoError(t, err)
		require.Equal(t, "exit 1", r.Reason)
		require.Equal(t, at, *r.RetryAt)
		_, err = r.Apply(ev(StateRunning, 2), t0, 10)
		require.NoError(t, err)
		require.Empty(t, r.Reason)
		require.Nil(t, r.RetryAt)
	})
	t.Run("terminal result", func(t *testing.T) {
		r := rec(StateRunning, 1)
		code := int32(3)
		_, err := r.Apply(Event{State: StateFailed, Attempt: 1, Reason: "exit 3", ExitCode: &code, Outputs: map[string]string{"k": "v"}}, t0, 10)
		require.NoError(t, err)
		require.Equal(t, int32(3), *r.ExitCode)
		require.Equal(t, map[string]string{"k": "v"}, r.Outputs)
		require.Equal(t, t0, *r.FinishedAt)
	})
	t.Run("invalid events", func(t *testing.T) {
		for _, e := range []Event{{State: "", Attempt: 1}, {State: "DONE", Attempt: 1}, {State: StateRunning, Attempt: 0}} {
			_, err := rec(StateQueued, 0).Apply(e, t0, 10)
			require.ErrorIs(t, err, ErrInvalidEvent)
		}
	})
}

func TestLateRunningIsBackfilled(t *testing.T) {
	r := rec(StateQueued, 0)
	_, err := r.Apply(ev(StateRunning, 1), t0, 10)
	require.NoError(t, err)
	at := t0.Add(time.Minute)
	// Attempt 2's outcome overtook its RUNNING.
	_, err = r.Apply(Event{State: StateQueued, Attempt: 1, Reason: "boom"}, t0, 10)
	require.NoError(t, err)
	_, err = r.Apply(Event{State: StateSucceeded, Attempt: 2, At: at.Add(time.Second)}, t0, 10)
	require.NoError(t, err)
	res, err := r.Apply(Event{State: StateRunning, Attempt: 2, RunnerID: "r2", At: at}, t0, 10)
	require.NoError(t, err)
	require.Equal(t, Backfilled, res.Outcome)
	require.True(t, res.Redelivery)
	require.False(t, res.FirstStart)
	require.Equal(t, StateSucceeded, r.State)
	var got []string
	for _, h := range r.History {
		got = append(got, string(h.State)+"("+string(rune('0'+h.Attempt))+")")
	}
	require.Equal(t, []string{"QUEUED(0)", "RUNNING(1)", "QUEUED(1)", "RUNNING(2)", "SUCCEEDED(2)"}, got)

	res, err = r.Apply(Event{State: StateRunning, Attempt: 2, At: at}, t0, 10)
	require.NoError(t, err)
	require.Equal(t, Duplicate, res.Outcome, "backfilled once")

	// The only start of a job: the latency is still measured.
	r = rec(StateQueued, 0)
	_, err = r.Apply(ev(StateSucceeded, 1), t0, 10)
	require.NoError(t, err)
	res, err = r.Apply(ev(StateRunning, 1), t0, 10)
	require.NoError(t, err)
	require.True(t, res.FirstStart)
	require.NotNil(t, r.StartedAt)
}

func TestHistoryBounded(t *testing.T) {
	r := rec(StateQueued, 0)
	for a := 1; a <= 20; a++ {
		_, err := r.Apply(ev(StateRunning, a), t0, 5)
		require.NoError(t, err)
	}
	require.Len(t, r.History, 5)
	require.Equal(t, StateQueued, r.History[0].State, "the creation entry is kept")
	require.Equal(t, 20, r.History[4].Attempt)
	require.Equal(t, 17, r.History[1].Attempt)
}

func TestCancelAndFail(t *testing.T) {
	for _, s := range States {
		t.Run("cancel "+string(s), func(t *testing.T) {
			r := rec(s, 1)
			err := r.Cancel("by user", t0, 10)
			if s.Terminal() {
				require.ErrorIs(t, err, ErrTerminal)
				require.Equal(t, s, r.State)
				return
			}
			require.NoError(t, err)
			require.Equal(t, StateCancelled, r.State)
			require.Equal(t, "by user", r.Reason)
			require.NotNil(t, r.FinishedAt)
		})
		t.Run("fail "+string(s), func(t *testing.T) {
			r := rec(s, 1)
			ok := r.Fail("dead-lettered: too many", 4, t0, 10)
			require.Equal(t, !s.Terminal(), ok)
			if ok {
				require.Equal(t, StateFailed, r.State)
				require.Equal(t, 4, r.Attempt)
				require.Equal(t, "dead-lettered: too many", r.Reason)
			}
		})
	}
}

func TestParseState(t *testing.T) {
	for in, want := range map[string]State{"queued": StateQueued, "JOB_STATE_RUNNING": StateRunning, " timed_out ": StateTimedOut} {
		got, err := ParseState(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.Equal(t, want, StateFromProto(want.Proto()))
	}
	_, err := ParseState("done")
	require.Error(t, err)
}

// Started counts the attempts that reported RUNNING, whatever their
// numbers: the duplicates, late and stale RUNNINGs of one attempt count
// once, and a number skipped by a lost delivery counts for nothing.
func TestStartedCountsAttemptsThatRan(t *testing.T) {
	tests := []struct {
		name   string
		events []Event
		want   int
	}{
		{name: "none", want: 0},
		{name: "one attempt", events: []Event{ev(StateRunning, 1), ev(StateSucceeded, 1)}, want: 1},
		{name: "a duplicate running", events: []Event{ev(StateRunning, 1), ev(StateRunning, 1)}, want: 1},
		{name: "numbers that skip", events: []Event{ev(StateRunning, 2), ev(StateRunning, 5)}, want: 2},
		{name: "a late running is backfilled once", events: []Event{ev(StateQueued, 1), ev(StateRunning, 1), ev(StateRunning, 1)}, want: 1},
		{name: "a stale running", events: []Event{ev(StateRunning, 2), ev(StateRunning, 1)}, want: 1},
		{name: "retries", events: []Event{ev(StateRunning, 1), ev(StateQueued, 1), ev(StateRunning, 2), ev(StateFailed, 2)}, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := rec(StateQueued, 0)
			for _, e := range tt.events {
				_, err := r.Apply(e, t0, 50)
				require.NoError(t, err)
			}
			require.Equal(t, tt.want, r.Started)
		})
	}
}

// Reissue moves a live job back to QUEUED for the next attempt number
// while fewer attempts started than allowed, a bounded number of times.
func TestReissue(t *testing.T) {
	withRetry := func(r *Record, started, reissued int) *Record {
		r.Retry.MaxAttempts, r.Started, r.Reissued = 3, started, reissued
		return r
	}
	tests := []struct {
		name   string
		rec    *Record
		want   bool
		wantAt int // Redispatched
	}{
		{name: "nothing started", rec: withRetry(rec(StateQueued, 0), 0, 0), want: true, wantAt: 1},
		{name: "attempt 2 lost with one left", rec: withRetry(rec(StateRunning, 2), 2, 0), want: true, wantAt: 3},
		{name: "every attempt started", rec: withRetry(rec(StateRunning, 3), 3, 0), want: false},
		{name: "reissued as often as allowed", rec: withRetry(rec(StateQueued, 0), 0, 3), want: false},
		{name: "ended", rec: withRetry(rec(StateSucceeded, 1), 1, 0), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := *tt.rec
			got := tt.rec.Reissue("dispatch-1", "ran out of deliveries", t0, 50)
			require.Equal(t, tt.want, got)
			if !tt.want {
				require.Equal(t, before.State, tt.rec.State)
				require.Equal(t, before.Reissued, tt.rec.Reissued)
				return
			}
			require.Equal(t, StateQueued, tt.rec.State)
			require.Equal(t, before.Attempt, tt.rec.Attempt, "the attempt stays the last one that reported")
			require.Equal(t, tt.wantAt, tt.rec.Redispatched)
			require.Equal(t, before.Reissued+1, tt.rec.Reissued)
			require.Equal(t, "ran out of deliveries", tt.rec.Reason)
			answered, due := tt.rec.ReissueAnswered("dispatch-1")
			require.True(t, answered)
			require.True(t, due)
			answered, _ = tt.rec.ReissueAnswered("dispatch-2")
			require.False(t, answered)
			_, err := tt.rec.Apply(ev(StateRunning, tt.wantAt), t0, 50)
			require.NoError(t, err)
			_, due = tt.rec.ReissueAnswered("dispatch-1")
			require.False(t, due, "no longer due once its attempt runs")
		})
	}
}

func TestExpired(t *testing.T) {
	now := time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC)
	finished := now.Add(-48 * time.Hour)
	tests := []struct {
		name      string
		r         Record
		retention time.Duration
		want      bool
	}{
		{name: "finished before the retention", r: Record{State: StateSucceeded, FinishedAt: &finished}, retention: 24 * time.Hour, want: true},
		{name: "finished within it", r: Record{State: StateFailed, FinishedAt: &finished, UpdatedAt: finished}, retention: 72 * time.Hour},
		{name: "no finish time: its last update counts", r: Record{State: StateCancelled, UpdatedAt: finished}, retention: 24 * time.Hour, want: true},
		{name: "live, however old", r: Record{State: StateQueued, UpdatedAt: finished}, retention: time.Hour},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.r.Expired(now, tc.retention))
		})
	}
}
