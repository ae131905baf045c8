// Package explain says why a job is where it is, above all why a QUEUED job
// has not started: the scheduler's answer to "my job is stuck".
package explain

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/pools"
	"github.com/outposthq/outpost/services/scheduler/internal/presence"
)

// Reason codes.
const (
	// CodePoolPaused: the pool is paused; new jobs are held undispatched.
	CodePoolPaused = "POOL_PAUSED"
	// CodeHeld: the job was held by a pause that has ended and is being
	// dispatched.
	CodeHeld = "HELD"
	// CodeRetryWait: the last attempt failed; the next one is due at At.
	CodeRetryWait = "RETRY_WAIT"
	// CodeNoRunners: no runner of the pool sent a heartbeat within the
	// presence window.
	CodeNoRunners = "NO_RUNNERS"
	// CodeRunnersDraining: every live runner of the pool is draining.
	CodeRunnersDraining = "RUNNERS_DRAINING"
	// CodeRunnersBusy: every live runner of the pool is at capacity.
	CodeRunnersBusy = "RUNNERS_BUSY"
	// CodeWaitingForRunner: runners are live with free capacity; the job is
	// on the pool's queue and should be taken shortly.
	CodeWaitingForRunner = "WAITING_FOR_RUNNER"
	// CodeDeploymentRules: the polling rules of the pool's deployment do
	// not let it take the job (its user, team and project); the job stays
	// QUEUED, undispatched, until a change to the directory does.
	CodeDeploymentRules = "DEPLOYMENT_RULES"
	// CodeTenantLimit: the tenant runs as many jobs as its
	// limits.max_running_jobs allows; the job stays QUEUED, undispatched,
	// and is dispatched (oldest first) when one of them ends.
	CodeTenantLimit = "TENANT_LIMIT"
	// CodeRunning: an attempt is running.
	CodeRunning = "RUNNING"
	// CodeRunnerSilent: the runner of the running attempt stopped sending
	// heartbeats. If it died, the queue hands the job to another runner
	// after the ack wait while it holds the job's work message; once that
	// message is gone, the scheduler dispatches the job again as the next
	// attempt after runners.lost_after.
	CodeRunnerSilent = "RUNNER_SILENT"
)

// Reason is one reason, with a machine-readable code.
type Reason struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// At is the time the reason refers to: retry_at, the last heartbeat,
	// the pause, the end of the job.
	At *time.Time `json:"at,omitempty"`
}

// Runners summarises the pool's runners.
type Runners struct {
	Live     int        `json:"live"`
	Busy     int        `json:"busy"`
	Draining int        `json:"draining"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
}

// Explanation is the answer of GET /api/v1/jobs/{id}/explain.
type Explanation struct {
	ID      string     `json:"id"`
	Tenant  string     `json:"tenant"`
	Pool    string     `json:"pool"`
	State   jobs.State `json:"state"`
	Attempt int        `json:"attempt"`
	Summary string     `json:"summary"`
	Reasons []Reason   `json:"reasons"`
	Runners Runners    `json:"runners"`
	// Deployments is the outcome of the polling rules for each deployment
	// that could take the job (its pool's), while it has not been
	// dispatched; absent for a pool without a registered deployment.
	Deployments []directory.Check `json:"deployments,omitempty"`
	// TenantLimit is set while the job waits for one of its tenant's
	// running-job slots.
	TenantLimit *TenantLimit `json:"tenant_limit,omitempty"`
}

// Input is what Explain looks at.
type Input struct {
	Job  *jobs.Record
	Pool pools.State
	// Deployments are the polling rules' outcomes for the job.
	Deployments []directory.Check
	// Runners are the pool's runners ever seen, live or not.
	Runners []presence.Runner
	// OtherPools are the tenant's other pools with live runners.
	OtherPools []string
	// Window is the presence window; WatchingSince the oldest heartbeat
	// the scheduler has read.
	Window        time.Duration
	WatchingSince time.Time
	Now           time.Time
	// WorkQueued says, for a RUNNING job, whether its pool's queue still
	// holds its work message; nil when the queue cannot tell (SQS) or it
	// was not asked.
	WorkQueued *bool
	// LostAfter is runners.lost_after: how long a silent runner's job
	// whose work message is gone waits to be dispatched again (0: never).
	LostAfter time.Duration
	// TenantLimit is set while the job waits for a running-job slot.
	TenantLimit *TenantLimit
}

// TenantLimit is the state of the tenant's running-job limit seen by a job
// that waits for a slot.
type TenantLimit struct {
	Tenant string `json:"tenant"`
	// Limit is limits.max_running_jobs (0: none any more: the job is
	// about to be dispatched).
	Limit int `json:"limit"`
	// Running is how many of the tenant's jobs hold a slot.
	Running int `json:"running"`
	// Position is the job's place among the Waiting jobs, oldest first
	// (0 when its entry is being written or dropped).
	Position int `json:"position"`
	Waiting  int `json:"waiting"`
}

// Explain returns why the job is in its state.
func Explain(in Input) Explanation {
	j := in.Job
	x := Explanation{ID: j.ID, Tenant: j.Tenant, Pool: j.Pool, State: j.State, Attempt: j.Attempt, Runners: summarise(in), Deployments: in.Deployments, TenantLimit: in.TenantLimit}
	switch j.State {
	case jobs.StateQueued:
		x.Reasons = queued(in, x.Runners)
	case jobs.StateRunning:
		x.Reasons = running(in)
	default:
		msg := fmt.Sprintf("job is %s", j.State)
		if j.Reason != "" {
			msg += ": " + j.Reason
		}
		x.Reasons = []Reason{{Code: string(j.State), Message: msg, At: j.FinishedAt}}
	}
	x.Summary = x.Reasons[0].Message
	return x
}

func summarise(in Input) Runners {
	var s Runners
	for _, r := range in.Runners {
		if s.LastSeen == nil || r.LastSeen.After(*s.LastSeen) {
			s.LastSeen = ptr(r.LastSeen)
		}
		if in.Now.Sub(r.LastSeen) > in.Window {
			continue
		}
		s.Live++
		if r.Draining {
			s.Draining++
		} else if r.Busy() {
			s.Busy++
		}
	}
	return s
}

func queued(in Input, rs Runners) []Reason {
	j := in.Job
	var out []Reason
	switch {
	case in.Pool.Paused && j.Held:
		out = append(out, Reason{Code: CodePoolPaused, At: in.Pool.PausedAt,
			Message: fmt.Sprintf("pool %q is paused: the job is held and is dispatched when the pool is resumed", j.Pool)})
	case in.Pool.Paused:
		out = append(out, Reason{Code: CodePoolPaused, At: in.Pool.PausedAt,
			Message: fmt.Sprintf("pool %q is paused, but the job was put on its queue before the pause: runners of the pool may still take it", j.Pool)})
	case j.Held:
		out = append(out, Reason{Code: CodeHeld,
			Message: fmt.Sprintf("the job was held while pool %q was paused; the pool is resumed and the job is being dispatched", j.Pool)})
	}
	if j.Gated && !j.Held {
		out = append(out, gated(in))
	}
	if l := in.TenantLimit; l != nil {
		out = append(out, tenantLimit(l))
	}
	if j.Attempt > 0 {
		msg := fmt.Sprintf("attempt %d of %d failed", j.Attempt, j.Retry.MaxAttempts)
		if j.Reason != "" {
			msg += ": " + j.Reason
		}
		if j.RetryAt != nil && j.RetryAt.After(in.Now) {
			msg += fmt.Sprintf("; the next attempt is due at %s (in %s)", j.RetryAt.UTC().Format(time.RFC3339), round(j.RetryAt.Sub(in.Now)))
		} else {
			msg += "; the next attempt is due and waits for a runner"
		}
		out = append(out, Reason{Code: CodeRetryWait, Message: msg, At: j.RetryAt})
	}
	switch {
	case rs.Live == 0:
		out = append(out, noRunners(in, rs))
	case rs.Draining == rs.Live:
		out = append(out, Reason{Code: CodeRunnersDraining,
			Message: fmt.Sprintf("all %d live runners of pool %q are draining and take no new jobs", rs.Live, j.Pool)})
	case rs.Busy+rs.Draining == rs.Live:
		out = append(out, Reason{Code: CodeRunnersBusy,
			Message: fmt.Sprintf("all %d live runners of pool %q are busy (%d draining); the job runs when one has a free slot", rs.Live, j.Pool, rs.Draining)})
	case len(out) == 0:
		out = append(out, Reason{Code: CodeWaitingForRunner,
			Message: fmt.Sprintf("%d runners of pool %q are live with free capacity: the job is on the pool's queue and should be taken shortly", rs.Live-rs.Busy-rs.Draining, j.Pool)})
	}
	return out
}

// gated names, for each candidate deployment, the rules that failed.
func gated(in Input) Reason {
	var refused []string
	for _, c := range in.Deployments {
		if !c.Allowed {
			refused = append(refused, c.Summary())
		}
	}
	if len(refused) == 0 {
		return Reason{Code: CodeDeploymentRules,
			Message: fmt.Sprintf("the job was kept back by the polling rules of pool %q, which now admit it: it is dispatched at the next check", in.Job.Pool)}
	}
	return Reason{Code: CodeDeploymentRules,
		Message: "no deployment may take the job, so it is not dispatched: " + strings.Join(refused, "; ")}
}

func noRunners(in Input, rs Runners) Reason {
	j := in.Job
	msg := fmt.Sprintf("no runner of pool %q has sent a heartbeat within the last %s", j.Pool, in.Window)
	if rs.LastSeen != nil {
		msg += fmt.Sprintf("; the last one was seen at %s (%s ago)", rs.LastSeen.UTC().Format(time.RFC3339), round(in.Now.Sub(*rs.LastSeen)))
	} else {
		msg += fmt.Sprintf("; none has been seen since %s", in.WatchingSince.UTC().Format(time.RFC3339))
	}
	if len(in.OtherPools) > 0 {
		others := slices.Clone(in.OtherPools)
		slices.Sort(others)
		msg += fmt.Sprintf("; runners are live in pools %s: check the job's pool and the runners' pool setting", strings.Join(others, ", "))
	} else {
		msg += "; check that a runner of this pool is deployed for this tenant and can reach the broker"
	}
	return Reason{Code: CodeNoRunners, Message: msg, At: rs.LastSeen}
}

func running(in Input) []Reason {
	j := in.Job
	msg := fmt.Sprintf("attempt %d of %d is running", j.Attempt, j.Retry.MaxAttempts)
	if j.RunnerID != "" {
		msg += fmt.Sprintf(" on runner %q", j.RunnerID)
	}
	if j.StartedAt != nil {
		msg += fmt.Sprintf(" since %s", j.StartedAt.UTC().Format(time.RFC3339))
	}
	out := []Reason{{Code: CodeRunning, Message: msg, At: j.StartedAt}}
	for _, r := range in.Runners {
		if r.ID == j.RunnerID && in.Now.Sub(r.LastSeen) > in.Window {
			out = append(out, Reason{Code: CodeRunnerSilent, At: ptr(r.LastSeen),
				Message: fmt.Sprintf("runner %q has sent no heartbeat for %s; %s", r.ID, round(in.Now.Sub(r.LastSeen)), silentNext(in, r.LastSeen))})
		}
	}
	return out
}

// silentNext says what happens to the job of a silent runner: a promise
// of a redelivery only while the queue holds the work message.
func silentNext(in Input, lastSeen time.Time) string {
	next := in.Job.Attempt + 1
	switch {
	case in.WorkQueued == nil:
		return "if it is gone the queue hands the job to another runner after the ack wait while it holds the job's work message"
	case *in.WorkQueued:
		return "the queue still holds the job's work message: if the runner is gone it hands the job to another runner after the ack wait"
	case in.LostAfter > 0:
		return fmt.Sprintf("the job's work message is no longer on the queue: the scheduler dispatches the job again as attempt %d once the runner has been silent for %s (due %s)",
			next, in.LostAfter, lastSeen.Add(in.LostAfter).UTC().Format(time.RFC3339))
	default:
		return "the job's work message is no longer on the queue and runners.lost_after is 0: nothing runs the job again; cancel it and submit it again"
	}
}

func round(d time.Duration) time.Duration {
	if d > time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}

func ptr[T any](v T) *T { return &v }

// tenantLimit says that the job waits for one of its tenant's running-job
// slots, with the numbers.
func tenantLimit(l *TenantLimit) Reason {
	msg := fmt.Sprintf("tenant %q runs %d jobs of its limit of %d running jobs (limits.max_running_jobs): the job is not dispatched until one of them ends", l.Tenant, l.Running, l.Limit)
	if l.Limit <= 0 {
		msg = fmt.Sprintf("tenant %q no longer limits its running jobs: the job is being dispatched", l.Tenant)
	}
	if l.Position > 0 {
		msg += fmt.Sprintf("; it is %d of %d jobs waiting, oldest first", l.Position, l.Waiting)
	}
	return Reason{Code: CodeTenantLimit, Message: msg}
}
