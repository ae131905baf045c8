package jobs

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Record is what the scheduler keeps for one job, as JSON in the tenant's
// jobs bucket under the job id. The API returns it as is.
type Record struct {
	ID      string            `json:"id"`
	Tenant  string            `json:"tenant"`
	Pool    string            `json:"pool"`
	Task    Task              `json:"task"`
	Retry   Retry             `json:"retry"`
	Timeout Duration          `json:"timeout"`
	Labels  map[string]string `json:"labels,omitempty"`
	// TraceID is the trace of the submission, carried to the runners.
	TraceID string `json:"trace_id,omitempty"`
	// TraceContext is the W3C trace context the dispatches continue
	// (libs/telemetry); internal, not in the API's answers.
	TraceContext map[string]string `json:"trace_context,omitempty"`
	// User submitted the job: the API request's principal, or the user a
	// SubmitJob published on the broker names. Project is the job's
	// project. The polling rules of the pool's deployment look at both.
	User    string `json:"user,omitempty"`
	Project string `json:"project,omitempty"`

	State State `json:"state"`
	// Attempt is the attempt the state belongs to: 0 until a runner first
	// reports, then the number the runner gave it (the dispatch's attempt
	// plus the message's deliveries before it). Numbers only grow, and
	// may skip: a delivery lost on its way to a runner uses one up.
	Attempt int `json:"attempt"`
	// Started counts the attempts that started (reported RUNNING): the
	// retry budget is spent by these, not by the queue's deliveries.
	Started int `json:"started,omitempty"`
	// Reissued counts the dispatches made again because a dispatch ran out
	// of deliveries while the job still had attempts left; bounded by the
	// max attempts, so deliveries that never start cannot go on forever.
	Reissued int `json:"reissued,omitempty"`
	// ReissuedFor is the event id of the dispatch whose dead letter the
	// last reissue answered: the dead letter handled again (its first
	// handling failed after the write) does not reissue twice.
	ReissuedFor string `json:"reissued_for,omitempty"`
	// Reason says why the job is in its state: the failure of the last
	// attempt (also while it waits for a retry), the cancel reason, ...
	Reason   string            `json:"reason,omitempty"`
	ExitCode *int32            `json:"exit_code,omitempty"`
	Outputs  map[string]string `json:"outputs,omitempty"`
	RunnerID string            `json:"runner_id,omitempty"`
	// AttemptToken is the token of the job's current dispatch, issued by
	// the scheduler in the signed JobDispatched: status, log and records
	// events that do not carry it are dropped. Empty for a record written
	// before attempt tokens existed, until its dispatch.
	AttemptToken string `json:"attempt_token,omitempty"`
	// Held is true while a job created in a paused pool waits for the pool
	// to resume; it has not been put on the pool's queue yet.
	Held bool `json:"held,omitempty"`
	// Gated is true while no deployment of the job's pool may take it by
	// the polling rules; it has not been put on the pool's queue yet, and
	// is once a change to the directory lets the deployment take it.
	Gated bool `json:"gated,omitempty"`
	// Limited is true while the job waits for one of its tenant's
	// running-job slots (limits.max_running_jobs); it has not been put on
	// the pool's queue yet, and is when a running job of the tenant ends.
	Limited bool `json:"limited,omitempty"`
	// Redispatched is the attempt of the work message the scheduler put on
	// the queue again after the job's runner went silent and its message
	// was gone (0 when it never did). While the record is QUEUED with
	// Redispatched = Attempt + 1, that message is due on the queue.
	Redispatched int `json:"redispatched,omitempty"`
	// Direct is true for a job the API created and dispatched itself
	// (no SubmitJob on the queue to submit it again): while it is QUEUED
	// and has not run, the scheduler's sweep makes sure its dispatch was
	// published (dispatch/direct.go).
	Direct bool `json:"direct,omitempty"`

	CreatedAt  time.Time  `json:"created_at"`
	UpdatedAt  time.Time  `json:"updated_at"`
	StartedAt  *time.Time `json:"started_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	RetryAt    *time.Time `json:"retry_at,omitempty"`
	// History lists the transitions, oldest first; the first (creation)
	// and the latest ones are kept when it is trimmed.
	History []Transition `json:"history"`
	// Logs holds the log lines short attempts sent with their outcome
	// (JobStatus.logs) instead of on the job's log subject, oldest
	// attempt first; the logs API shows them with the subject's chunks.
	// Internal: not in the API's record answers.
	Logs []AttemptLogs `json:"logs,omitempty"`
}

// Transition is one entry of a record's history.
type Transition struct {
	State    State     `json:"state"`
	Attempt  int       `json:"attempt"`
	Reason   string    `json:"reason,omitempty"`
	RunnerID string    `json:"runner_id,omitempty"`
	At       time.Time `json:"at"`
}

// Task is what the job runs: exactly one of its fields is set.
type Task struct {
	Command   *CommandTask   `json:"command,omitempty"`
	Noop      *NoopTask      `json:"noop,omitempty"`
	Ingest    *IngestTask    `json:"ingest,omitempty"`
	Assertion *AssertionTask `json:"assertion,omitempty"`
	// Kubernetes runs a container as a Job in the runner's cluster.
	Kubernetes *KubernetesTask `json:"kubernetes,omitempty"`
}

// CommandTask runs an executable the runner allows.
type CommandTask struct {
	Command string            `json:"command"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// Recipe, when set, is written (secrets resolved) to a private file
	// whose path the command receives in OUTPOST_RECIPE_FILE.
	Recipe *IngestTask `json:"recipe,omitempty"`
}

// NoopTask does nothing for Sleep, then fails with FailMessage if set.
type NoopTask struct {
	Sleep       Duration `json:"sleep,omitempty"`
	FailMessage string   `json:"fail_message,omitempty"`
}

// Retry is a job's retry policy with defaults filled in.
type Retry struct {
	MaxAttempts    int      `json:"max_attempts"`
	InitialBackoff Duration `json:"initial_backoff"`
	MaxBackoff     Duration `json:"max_backoff"`
	Multiplier     float64  `json:"multiplier"`
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("1m30s").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON implements json.Marshaler. A duration's text needs no
// escaping, so it is quoted directly instead of through a second
// json.Marshal: six allocations fewer per record encoded
// (BenchmarkRecordEncode).
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(make([]byte, 0, 16), time.Duration(d).String()), nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string such as \"90s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Public returns a copy of r without its attempt token, for the API: the
// token authenticates the runner's events and is shown to no one else
// (nor are ReissuedFor and Direct, bookkeeping; the logs API shows Logs).
func (r *Record) Public() *Record {
	c := *r
	c.AttemptToken = ""
	c.ReissuedFor = ""
	c.TraceContext = nil
	c.Direct = false
	c.Logs = nil
	return &c
}

// Expired reports whether the job finished more than retention before now
// (its record may then be deleted). A finished record without a finish
// time counts from its last update.
func (r *Record) Expired(now time.Time, retention time.Duration) bool {
	if r.Live() {
		return false
	}
	at := r.UpdatedAt
	if r.FinishedAt != nil {
		at = *r.FinishedAt
	}
	return now.Sub(at) > retention
}

// Live reports whether the job can still change state.
func (r *Record) Live() bool { return !r.State.Terminal() }

// Marshal encodes r for the store.
func (r *Record) Marshal() ([]byte, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", r.ID, err)
	}
	return b, nil
}

// Unmarshal decodes a stored record.
func Unmarshal(b []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if r.ID == "" || !r.State.Valid() {
		return nil, fmt.Errorf("%w: missing id or state", ErrCorrupt)
	}
	return &r, nil
}

// record appends t (when not nil) to the history and trims it to limit.
func (r *Record) record(t *Transition, limit int) {
	if t != nil {
		r.History = append(r.History, *t)
	}
	if limit < 2 {
		limit = 2
	}
	if n := len(r.History); n > limit {
		// Keep the creation entry and the latest limit-1.
		r.History = append(r.History[:1], r.History[n-limit+1:]...)
	}
}

func timePtr(t time.Time) *time.Time { return &t }
