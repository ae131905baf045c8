package explain

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/pools"
	"github.com/outposthq/outpost/services/scheduler/internal/presence"
)

var now = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func queuedJob() *jobs.Record {
	return &jobs.Record{ID: "j1", Tenant: "t", Pool: "etl", State: jobs.StateQueued, Retry: jobs.Retry{MaxAttempts: 3}}
}

func runner(id string, ago time.Duration, running, capacity int, draining bool) presence.Runner {
	return presence.Runner{ID: id, Pool: "etl", Running: running, Capacity: capacity, Draining: draining, LastSeen: now.Add(-ago)}
}

func TestExplainQueued(t *testing.T) {
	at := func(d time.Duration) *time.Time { v := now.Add(d); return &v }
	cases := []struct {
		name     string
		job      func(*jobs.Record)
		pool     pools.State
		runners  []presence.Runner
		others   []string
		limit    *TenantLimit
		codes    []string
		contains string
	}{
		{name: "never seen a runner", codes: []string{CodeNoRunners}, contains: "none has been seen since 2025-03-01T11:59:45Z"},
		{name: "runner gone", runners: []presence.Runner{runner("r1", time.Minute, 0, 1, false)},
			codes: []string{CodeNoRunners}, contains: "the last one was seen at 2025-03-01T11:59:00Z (1m0s ago)"},
		{name: "runners in another pool", others: []string{"gpu", "cpu"},
			codes: []string{CodeNoRunners}, contains: "runners are live in pools cpu, gpu"},
		{name: "all busy", runners: []presence.Runner{runner("r1", time.Second, 2, 2, false), runner("r2", time.Second, 1, 1, false)},
			codes: []string{CodeRunnersBusy}, contains: "all 2 live runners"},
		{name: "all draining", runners: []presence.Runner{runner("r1", time.Second, 0, 2, true)},
			codes: []string{CodeRunnersDraining}},
		{name: "busy or draining", runners: []presence.Runner{runner("r1", time.Second, 0, 2, true), runner("r2", time.Second, 1, 1, false)},
			codes: []string{CodeRunnersBusy}, contains: "(1 draining)"},
		{name: "free runner", runners: []presence.Runner{runner("r1", time.Second, 1, 2, false)},
			codes: []string{CodeWaitingForRunner}},
		{name: "unlimited capacity is never busy", runners: []presence.Runner{runner("r1", time.Second, 9, 0, false)},
			codes: []string{CodeWaitingForRunner}},
		{name: "paused and held", job: func(r *jobs.Record) { r.Held = true }, pool: pools.State{Pool: "etl", Paused: true, PausedAt: at(-time.Hour)},
			runners: []presence.Runner{runner("r1", time.Second, 0, 1, false)}, codes: []string{CodePoolPaused}, contains: "held"},
		{name: "paused without runners", job: func(r *jobs.Record) { r.Held = true }, pool: pools.State{Pool: "etl", Paused: true},
			codes: []string{CodePoolPaused, CodeNoRunners}},
		{name: "paused after dispatch", pool: pools.State{Pool: "etl", Paused: true},
			runners: []presence.Runner{runner("r1", time.Second, 0, 1, false)}, codes: []string{CodePoolPaused}, contains: "before the pause"},
		{name: "resumed, being released", job: func(r *jobs.Record) { r.Held = true },
			runners: []presence.Runner{runner("r1", time.Second, 0, 1, false)}, codes: []string{CodeHeld}},
		{name: "retry wait", job: func(r *jobs.Record) { r.Attempt, r.Reason, r.RetryAt = 1, "exit status 1", at(30*time.Second) },
			runners: []presence.Runner{runner("r1", time.Second, 0, 1, false)}, codes: []string{CodeRetryWait},
			contains: "attempt 1 of 3 failed: exit status 1; the next attempt is due at 2025-03-01T12:00:30Z (in 30s)"},
		{name: "tenant limit", job: func(r *jobs.Record) { r.Limited = true }, limit: &TenantLimit{Tenant: "t", Limit: 2, Running: 2, Position: 3, Waiting: 7},
			runners: []presence.Runner{runner("r1", time.Second, 0, 1, false)}, codes: []string{CodeTenantLimit},
			contains: `tenant "t" runs 2 jobs of its limit of 2 running jobs (limits.max_running_jobs): the job is not dispatched until one of them ends; it is 3 of 7 jobs waiting, oldest first`},
		{name: "tenant limit without runners", job: func(r *jobs.Record) { r.Limited = true }, limit: &TenantLimit{Tenant: "t", Limit: 1, Running: 1},
			codes: []string{CodeTenantLimit, CodeNoRunners}, contains: "runs 1 jobs of its limit of 1"},
		{name: "tenant limit lifted", job: func(r *jobs.Record) { r.Limited = true }, limit: &TenantLimit{Tenant: "t", Running: 4, Position: 1, Waiting: 1},
			runners: []presence.Runner{runner("r1", time.Second, 0, 1, false)}, codes: []string{CodeTenantLimit}, contains: "no longer limits its running jobs"},
		{name: "retry due without runners", job: func(r *jobs.Record) { r.Attempt, r.RetryAt = 2, at(-time.Second) },
			codes: []string{CodeRetryWait, CodeNoRunners}, contains: "the next attempt is due and waits for a runner"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := queuedJob()
			if c.job != nil {
				c.job(j)
			}
			x := Explain(Input{Job: j, Pool: c.pool, Runners: c.runners, OtherPools: c.others, TenantLimit: c.limit,
				Window: 15 * time.Second, WatchingSince: now.Add(-15 * time.Second), Now: now})
			var got []string
			for _, r := range x.Reasons {
				got = append(got, r.Code)
			}
			require.Equal(t, c.codes, got)
			require.Equal(t, x.Reasons[0].Message, x.Summary)
			if c.contains != "" {
				all := ""
				for _, r := range x.Reasons {
					all += r.Message + "\n"
				}
				require.Contains(t, all, c.contains)
			}
		})
	}
}

func TestExplainOtherStates(t *testing.T) {
	started := now.Add(-time.Minute)
	j := &jobs.Record{ID: "j1", Pool: "etl", State: jobs.StateRunning, Attempt: 2, RunnerID: "r1", StartedAt: &started, Retry: jobs.Retry{MaxAttempts: 3}}
	x := Explain(Input{Job: j, Window: 15 * time.Second, Now: now, Runners: []presence.Runner{runner("r1", time.Minute, 1, 1, false)}})
	require.Equal(t, CodeRunning, x.Reasons[0].Code)
	require.Equal(t, `attempt 2 of 3 is running on runner "r1" since 2025-03-01T11:59:00Z`, x.Summary)
	require.Equal(t, CodeRunnerSilent, x.Reasons[1].Code)

	x = Explain(Input{Job: j, Window: 15 * time.Second, Now: now, Runners: []presence.Runner{runner("r1", time.Second, 1, 1, false)}})
	require.Len(t, x.Reasons, 1, "a runner that heartbeats is not silent")

	// What a silent runner's job is promised depends on its work message.
	yes, no := true, false
	silent := []struct {
		name       string
		queued     *bool
		lostAfter  time.Duration
		contains   string
		notContain string
	}{
		{name: "queue cannot tell", contains: "while it holds the job's work message"},
		{name: "message queued", queued: &yes, lostAfter: 20 * time.Second, contains: "the queue still holds the job's work message", notContain: "dispatches the job again"},
		{name: "message gone", queued: &no, lostAfter: 20 * time.Second,
			contains: "no longer on the queue: the scheduler dispatches the job again as attempt 3 once the runner has been silent for 20s (due 2025-03-01T11:59:20Z)", notContain: "after the ack wait"},
		{name: "message gone, no reaper", queued: &no, contains: "nothing runs the job again", notContain: "after the ack wait"},
	}
	for _, c := range silent {
		t.Run(c.name, func(t *testing.T) {
			x := Explain(Input{Job: j, Window: 15 * time.Second, Now: now, WorkQueued: c.queued, LostAfter: c.lostAfter,
				Runners: []presence.Runner{runner("r1", time.Minute, 1, 1, false)}})
			require.Len(t, x.Reasons, 2)
			require.Equal(t, CodeRunnerSilent, x.Reasons[1].Code)
			require.Contains(t, x.Reasons[1].Message, c.contains)
			if c.notContain != "" {
				require.NotContains(t, x.Reasons[1].Message, c.notContain)
			}
		})
	}

	for _, s := range []jobs.State{jobs.StateSucceeded, jobs.StateFailed, jobs.StateCancelled, jobs.StateTimedOut} {
		x := Explain(Input{Job: &jobs.Record{ID: "j", State: s, Reason: "why"}, Now: now})
		require.Equal(t, string(s), x.Reasons[0].Code)
		require.Equal(t, "job is "+string(s)+": why", x.Summary)
	}
}
