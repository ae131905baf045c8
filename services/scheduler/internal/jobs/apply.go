package jobs

import (
	"crypto/subtle"
	"fmt"
	"maps"
	"time"
)

// Event is a runner's report about one attempt of a job (a decoded
// JobStatus).
type Event struct {
	State State
	// Attempt is the envelope's attempt: the dispatch's attempt plus the
	// deliveries of its message before the one the runner took. It fences
	// the event.
	Attempt  int
	Reason   string
	RunnerID string
	RetryAt  *time.Time
	ExitCode *int32
	Outputs  map[string]string
	// At is when the event happened (the envelope's occurred_at), or zero.
	At time.Time
	// Token is the attempt token the runner echoed from the dispatch.
	Token string
}

// TokenMatches reports whether an event carrying token may change r: its
// token is r's current one, or r predates attempt tokens.
func (r *Record) TokenMatches(token string) bool {
	return r.AttemptToken == "" || subtle.ConstantTimeCompare([]byte(r.AttemptToken), []byte(token)) == 1
}

// Check reports whether a runner could have sent e at all.
func (e Event) Check() error {
	if !e.State.Valid() {
		return fmt.Errorf("%w: state %q", ErrInvalidEvent, e.State)
	}
	if e.Attempt < 1 {
		return fmt.Errorf("%w: attempt %d (it is 1-based)", ErrInvalidEvent, e.Attempt)
	}
	return nil
}

// Outcome says what Apply did with an event.
type Outcome int

// Outcomes of Apply.
const (
	// Applied: the record changed.
	Applied Outcome = iota
	// Duplicate: the record already says what the event says.
	Duplicate
	// Backfilled: a RUNNING that arrived after its attempt's outcome was
	// added to the history; the state did not change.
	Backfilled
	// FencedStale: the event belongs to an attempt that was superseded, or
	// comes after a later event of its own attempt.
	FencedStale
	// FencedTerminal: the job has ended; nothing moves it any more.
	FencedTerminal
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Duplicate:
		return "duplicate"
	case Backfilled:
		return "backfilled"
	case FencedStale:
		return "stale_attempt"
	case FencedTerminal:
		return "terminal"
	}
	return "unknown"
}

// Fenced reports whether the event was refused by fencing.
func (o Outcome) Fenced() bool { return o == FencedStale || o == FencedTerminal }

// Result describes what an applied event did, for metrics.
type Result struct {
	Outcome Outcome
	From    State
	To      State
	// FirstStart is set when the job reached RUNNING for the first time.
	FirstStart bool
	// Redelivery is set when the job reached RUNNING with attempt > 1.
	Redelivery bool
}

// Apply moves r by e, or leaves r unchanged when fencing refuses e:
//
//   - a terminal record never changes (a runner's own CANCELLED after a
//     cancel is a Duplicate, anything else FencedTerminal);
//   - an event of an older attempt than the record's is FencedStale;
//   - within one attempt the order is RUNNING, then QUEUED (failed, retry
//     due) or a terminal state: a RUNNING that arrives after the outcome of
//     its own attempt only fills in the history (Backfilled) - except for a
//     cancelled job, where it is FencedTerminal so that the runner is told
//     again;
//   - an event of a newer attempt is applied from QUEUED or RUNNING.
//
// now stamps updated_at; limit bounds the history.
func (r *Record) Apply(e Event, now time.Time, limit int) (Result, error) {
	if err := e.Check(); err != nil {
		return Result{}, err
	}
	res := Result{From: r.State, To: r.State}
	lateRunning := e.State == StateRunning && e.Attempt == r.Attempt && r.State != StateRunning && r.State != StateCancelled
	switch {
	case lateRunning:
		// The attempt's outcome was applied first (status deliveries are
		// handled concurrently, so they can overtake each other): the
		// RUNNING only fills in the history.
		return r.backfillRunning(e, now, limit), nil
	case r.State.Terminal():
		if e.State == r.State && (e.Attempt == r.Attempt || e.State == StateCancelled) {
			res.Outcome = Duplicate
		} else {
			res.Outcome = FencedTerminal
		}
		return res, nil
	case e.Attempt < r.Attempt:
		res.Outcome = FencedStale
		return res, nil
	case e.Attempt == r.Attempt:
		switch {
		case r.State == StateRunning && e.State == StateRunning:
			res.Outcome = Duplicate
			return res, nil
		case r.State == StateQueued && e.State == StateQueued && r.Reason == e.Reason && equalTime(r.RetryAt, e.RetryAt):
			res.Outcome = Duplicate
			return res, nil
		}
	}

	at := e.At
	if at.IsZero() {
		at = now
	}
	r.State = e.State
	r.Attempt = e.Attempt
	r.UpdatedAt = now
	if e.RunnerID != "" {
		r.RunnerID = e.RunnerID
	}
	switch {
	case e.State == StateRunning:
		// A RUNNING is applied once per attempt (an attempt's second one is
		// a Duplicate, one after its outcome is backfilled).
		r.Started++
		res.FirstStart = r.StartedAt == nil
		res.Redelivery = e.Attempt > 1
		r.StartedAt = timePtr(at)
		r.RetryAt = nil
		r.Reason = ""
	case e.State == StateQueued:
		r.Reason = e.Reason
		r.RetryAt = e.RetryAt
	default: // terminal
		r.Reason = e.Reason
		r.RetryAt = nil
		r.FinishedAt = timePtr(at)
		r.ExitCode = e.ExitCode
		if len(e.Outputs) > 0 {
			r.Outputs = maps.Clone(e.Outputs)
		}
	}
	r.record(&Transition{State: e.State, Attempt: e.Attempt, Reason: e.Reason, RunnerID: e.RunnerID, At: at}, limit)
	res.Outcome = Applied
	res.To = r.State
	return res, nil
}

// Cancel ends a live job as CANCELLED; it returns ErrTerminal for a job that
// has already ended.
func (r *Record) Cancel(reason string, now time.Time, limit int) error {
	if r.State.Terminal() {
		return fmt.Errorf("%w: job %s is %s", ErrTerminal, r.ID, r.State)
	}
	r.State = StateCancelled
	r.Reason = reason
	r.RetryAt = nil
	r.Held = false
	r.UpdatedAt = now
	r.FinishedAt = timePtr(now)
	r.record(&Transition{State: StateCancelled, Attempt: r.Attempt, Reason: reason, At: now}, limit)
	return nil
}

// Fail ends a live job as FAILED with reason, e.g. when its work item was
// dead-lettered after attempts deliveries (0 if unknown). It reports false,
// leaving r unchanged, for a job that has already ended.
func (r *Record) Fail(reason string, attempts int, now time.Time, limit int) bool {
	if r.State.Terminal() {
		return false
	}
	r.State = StateFailed
	r.Reason = reason
	r.Attempt = max(r.Attempt, attempts)
	r.RetryAt = nil
	r.Held = false
	r.UpdatedAt = now
	r.FinishedAt = timePtr(now)
	r.record(&Transition{State: StateFailed, Attempt: r.Attempt, Reason: reason, At: now}, limit)
	return true
}

// Lost moves a RUNNING job whose runner went silent and whose work message
// is gone back to QUEUED, to be dispatched again as attempt Attempt+1. The
// attempt stays that of the lost run, so that run's late outcome still
// counts and a late RUNNING only fills in the history; the next attempt's
// events supersede it. It reports false, leaving r unchanged, unless r is
// RUNNING at attempt.
func (r *Record) Lost(attempt int, reason string, now time.Time, limit int) bool {
	if r.State != StateRunning || r.Attempt != attempt {
		return false
	}
	r.State = StateQueued
	r.Reason = reason
	r.RetryAt = nil
	r.Redispatched = attempt + 1
	r.UpdatedAt = now
	r.record(&Transition{State: StateQueued, Attempt: attempt, Reason: reason, At: now}, limit)
	return true
}

// AttemptsLeft reports whether fewer attempts of r started than its retry
// policy allows.
func (r *Record) AttemptsLeft() bool {
	return r.Started < r.Retry.MaxAttempts
}

// Reissue moves a live job whose work message ran out of deliveries (it
// was dead-lettered as past its last attempt) back to QUEUED, to be
// dispatched again as attempt Attempt+1, when the deliveries did not all
// start: fewer attempts started than the retry policy allows. Reissues are
// bounded by the max attempts, so a job whose deliveries keep being lost
// before they start still ends. It reports false, leaving r unchanged,
// when r has ended, has no attempt left, or was reissued as often as that.
// dispatch is the event id of the dead-lettered dispatch (see
// ReissuedFor).
func (r *Record) Reissue(dispatch, reason string, now time.Time, limit int) bool {
	if !r.Live() || !r.AttemptsLeft() || r.Reissued >= r.Retry.MaxAttempts {
		return false
	}
	r.State = StateQueued
	r.Reason = reason
	r.RetryAt = nil
	r.Reissued++
	r.ReissuedFor = dispatch
	r.Redispatched = r.Attempt + 1
	r.UpdatedAt = now
	r.record(&Transition{State: StateQueued, Attempt: r.Attempt, Reason: reason, At: now}, limit)
	return true
}

// ReissueAnswered reports whether the dead letter of dispatch (its event
// id) was answered by a reissue already, and whether that reissue's
// dispatch is still due: the record is QUEUED for it and no attempt of it
// has reported since.
func (r *Record) ReissueAnswered(dispatch string) (answered, due bool) {
	if dispatch == "" || dispatch != r.ReissuedFor {
		return false, false
	}
	return true, r.State == StateQueued && r.Redispatched == r.Attempt+1
}

func equalTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

// backfillRunning records a RUNNING that arrived after the outcome of its
// attempt: its history entry goes before the outcome's, and started_at is
// filled in if it was missing.
func (r *Record) backfillRunning(e Event, now time.Time, limit int) Result {
	res := Result{From: r.State, To: r.State, Outcome: Duplicate}
	pos := len(r.History)
	for i, h := range r.History {
		if h.Attempt == e.Attempt && h.State == StateRunning {
			return res // already there
		}
		if h.Attempt >= e.Attempt && pos == len(r.History) && i > 0 {
			pos = i
		}
	}
	at := e.At
	if at.IsZero() {
		at = now
	}
	entry := Transition{State: StateRunning, Attempt: e.Attempt, RunnerID: e.RunnerID, At: at}
	r.History = append(r.History[:pos], append([]Transition{entry}, r.History[pos:]...)...)
	r.record(nil, limit)
	r.Started++
	res.FirstStart = r.StartedAt == nil
	res.Redelivery = e.Attempt > 1
	if r.StartedAt == nil {
		r.StartedAt = timePtr(at)
	}
	if r.RunnerID == "" {
		r.RunnerID = e.RunnerID
	}
	r.UpdatedAt = now
	res.Outcome = Backfilled
	return res
}
