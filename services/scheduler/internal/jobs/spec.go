package jobs

import (
	"math"
	"regexp"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// DefaultPool is the executor pool of a job that names none.
const DefaultPool = "default"

// Bounds of a spec that are not configurable.
const (
	maxCommandLen = 4096
	maxArgs       = 1024
	maxEnv        = 256
	maxLabels     = 64
	maxLabelValue = 256
	maxFailLen    = 4096
)

var (
	envName  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelKey = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$`)
)

// Policy holds the defaults and bounds a spec is checked against.
type Policy struct {
	MaxAttempts    int // default retry.max_attempts
	InitialBackoff time.Duration
	MaxBackoff     time.Duration
	Multiplier     float64
	DefaultTimeout time.Duration
	MaxTimeout     time.Duration
	// AttemptsLimit bounds retry.max_attempts.
	AttemptsLimit int
}

// NormalizeSpec checks spec and returns a copy with every default filled in,
// which is what the record keeps and runners receive. The error is a
// *FieldError naming the first wrong field by its JSON path.
func NormalizeSpec(spec *jobsv1.JobSpec, p Policy) (*jobsv1.JobSpec, error) {
	if spec == nil {
		return nil, fieldErr("spec", "is required")
	}
	out := proto.CloneOf(spec)
	if out.Pool == "" {
		out.Pool = DefaultPool
	}
	if !queue.ValidToken(out.Pool) {
		return nil, fieldErr("pool", "must be 1 to 64 characters of [A-Za-z0-9_-]")
	}
	if out.Project != "" && !queue.ValidToken(out.Project) {
		return nil, fieldErr("project", "must be 1 to 64 characters of [A-Za-z0-9_-]")
	}
	if err := checkTask(out.GetTask()); err != nil {
		return nil, err
	}
	retry, err := normalizeRetry(out.GetRetry(), p)
	if err != nil {
		return nil, err
	}
	out.Retry = retry
	timeout, err := optionalDuration(out.GetTimeout(), "timeout", p.DefaultTimeout)
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		return nil, fieldErr("timeout", "must be positive")
	}
	if timeout > p.MaxTimeout {
		return nil, fieldErr("timeout", "must be at most %s", p.MaxTimeout)
	}
	out.Timeout = durationpb.New(timeout)
	if len(out.Labels) > maxLabels {
		return nil, fieldErr("labels", "must have at most %d entries", maxLabels)
	}
	for k, v := range out.Labels {
		if !labelKey.MatchString(k) {
			return nil, fieldErr("labels."+k, "key must be 1 to 63 characters of [A-Za-z0-9._/-], starting and ending alphanumeric")
		}
		if len(v) > maxLabelValue {
			return nil, fieldErr("labels."+k, "value must be at most %d bytes", maxLabelValue)
		}
	}
	return out, nil
}

func checkTask(t *jobsv1.Task) error {
	switch k := t.GetKind().(type) {
	case *jobsv1.Task_Command:
		c := k.Command
		switch {
		case c == nil || c.Command == "":
			return fieldErr("task.command.command", "is required")
		case len(c.Command) > maxCommandLen:
			return fieldErr("task.command.command", "must be at most %d bytes", maxCommandLen)
		case len(c.Args) > maxArgs:
			return fieldErr("task.command.args", "must have at most %d entries", maxArgs)
		case len(c.Env) > maxEnv:
			return fieldErr("task.command.env", "must have at most %d entries", maxEnv)
		}
		for name := range c.Env {
			if !envName.MatchString(name) {
				return fieldErr("task.command.env."+name, "is not a valid environment variable name")
			}
		}
		if c.Recipe != nil {
			return checkIngest(c.Recipe, "task.command.recipe", true)
		}
	case *jobsv1.Task_Ingest:
		return checkIngest(k.Ingest, "task.ingest", false)
	case *jobsv1.Task_Assertion:
		return checkAssertion(k.Assertion)
	case *jobsv1.Task_Kubernetes:
		return checkKubernetes(k.Kubernetes)
	case *jobsv1.Task_Noop:
		n := k.Noop
		if n == nil {
			return nil
		}
		if n.Sleep != nil {
			if err := n.Sleep.CheckValid(); err != nil || n.Sleep.AsDuration() < 0 {
				return fieldErr("task.noop.sleep", "must be a non-negative duration")
			}
		}
		if len(n.FailMessage) > maxFailLen {
			return fieldErr("task.noop.fail_message", "must be at most %d bytes", maxFailLen)
		}
	default:
		return fieldErr("task", "exactly one of command, noop, ingest, assertion, kubernetes is required")
	}
	return nil
}

func normalizeRetry(r *jobsv1.RetryPolicy, p Policy) (*jobsv1.RetryPolicy, error) {
	out := &jobsv1.RetryPolicy{}
	if r != nil {
		out = proto.CloneOf(r)
	}
	if out.MaxAttempts == 0 {
		out.MaxAttempts = uint32(p.MaxAttempts)
	}
	if int(out.MaxAttempts) > p.AttemptsLimit {
		return nil, fieldErr("retry.max_attempts", "must be at most %d", p.AttemptsLimit)
	}
	initial, err := optionalDuration(out.InitialBackoff, "retry.initial_backoff", p.InitialBackoff)
	if err != nil {
		return nil, err
	}
	if initial <= 0 {
		return nil, fieldErr("retry.initial_backoff", "must be positive")
	}
	maxB, err := optionalDuration(out.MaxBackoff, "retry.max_backoff", max(p.MaxBackoff, initial))
	if err != nil {
		return nil, err
	}
	if maxB < initial {
		return nil, fieldErr("retry.max_backoff", "must be at least retry.initial_backoff (%s)", initial)
	}
	if out.Multiplier == 0 {
		out.Multiplier = p.Multiplier
	}
	if math.IsNaN(out.Multiplier) || math.IsInf(out.Multiplier, 0) || out.Multiplier < 1 || out.Multiplier > 100 {
		return nil, fieldErr("retry.multiplier", "must be between 1 and 100")
	}
	out.InitialBackoff = durationpb.New(initial)
	out.MaxBackoff = durationpb.New(maxB)
	return out, nil
}

// optionalDuration returns def for an unset or zero duration.
func optionalDuration(d *durationpb.Duration, field string, def time.Duration) (time.Duration, error) {
	if d == nil {
		return def, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, fieldErr(field, "is not a valid duration")
	}
	v := d.AsDuration()
	if v == 0 {
		return def, nil
	}
	if v < 0 {
		return 0, fieldErr(field, "must be positive")
	}
	return v, nil
}

// NewRecord returns the QUEUED record of a job whose spec went through
// NormalizeSpec. held marks a job of a paused pool.
func NewRecord(id, tenant string, spec *jobsv1.JobSpec, now time.Time, held bool) *Record {
	r := baseRecord(id, tenant, spec, now)
	r.State = StateQueued
	r.Held = held
	r.AttemptToken = NewAttemptToken()
	r.record(&Transition{State: StateQueued, At: now}, 2)
	return r
}

// NewRejectedRecord returns the FAILED record of a queue-submitted job whose
// spec is invalid, so that whoever submitted it finds the reason under its
// id.
func NewRejectedRecord(id, tenant string, spec *jobsv1.JobSpec, reason string, now time.Time) *Record {
	r := baseRecord(id, tenant, spec, now)
	if r.Pool == "" || !queue.ValidToken(r.Pool) {
		r.Pool = DefaultPool
	}
	r.State = StateFailed
	r.Reason = reason
	r.FinishedAt = timePtr(now)
	r.record(&Transition{State: StateFailed, Reason: reason, At: now}, 2)
	return r
}

func baseRecord(id, tenant string, spec *jobsv1.JobSpec, now time.Time) *Record {
	r := &Record{
		ID:        id,
		Tenant:    tenant,
		Pool:      spec.GetPool(),
		Task:      TaskFromProto(spec.GetTask()),
		Timeout:   Duration(spec.GetTimeout().AsDuration()),
		Labels:    spec.GetLabels(),
		Project:   spec.GetProject(),
		CreatedAt: now,
		UpdatedAt: now,
	}
	if rp := spec.GetRetry(); rp != nil {
		r.Retry = Retry{
			MaxAttempts:    int(rp.MaxAttempts),
			InitialBackoff: Duration(rp.GetInitialBackoff().AsDuration()),
			MaxBackoff:     Duration(rp.GetMaxBackoff().AsDuration()),
			Multiplier:     rp.Multiplier,
		}
	}
	return r
}

// TaskFromProto converts a protobuf task.
func TaskFromProto(t *jobsv1.Task) Task {
	switch k := t.GetKind().(type) {
	case *jobsv1.Task_Command:
		return Task{Command: &CommandTask{Command: k.Command.GetCommand(), Args: k.Command.GetArgs(), Env: k.Command.GetEnv(), Recipe: ingestFromProto(k.Command.GetRecipe())}}
	case *jobsv1.Task_Noop:
		return Task{Noop: &NoopTask{Sleep: Duration(k.Noop.GetSleep().AsDuration()), FailMessage: k.Noop.GetFailMessage()}}
	case *jobsv1.Task_Ingest:
		return Task{Ingest: ingestFromProto(k.Ingest)}
	case *jobsv1.Task_Assertion:
		return Task{Assertion: assertionFromProto(k.Assertion)}
	case *jobsv1.Task_Kubernetes:
		return Task{Kubernetes: kubernetesFromProto(k.Kubernetes)}
	}
	return Task{}
}

// Proto converts t.
func (t Task) Proto() *jobsv1.Task {
	out := &jobsv1.Task{}
	switch {
	case t.Command != nil:
		c := t.Command
		out.Kind = &jobsv1.Task_Command{Command: &jobsv1.CommandTask{Command: c.Command, Args: c.Args, Env: c.Env, Recipe: c.Recipe.Proto()}}
	case t.Noop != nil:
		n := t.Noop
		out.Kind = &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{Sleep: durationpb.New(n.Sleep.D()), FailMessage: n.FailMessage}}
	case t.Ingest != nil:
		out.Kind = &jobsv1.Task_Ingest{Ingest: t.Ingest.Proto()}
	case t.Assertion != nil:
		out.Kind = &jobsv1.Task_Assertion{Assertion: t.Assertion.Proto()}
	case t.Kubernetes != nil:
		out.Kind = &jobsv1.Task_Kubernetes{Kubernetes: t.Kubernetes.Proto()}
	}
	return out
}

// Spec rebuilds the protobuf spec a runner receives from the record.
func (r *Record) Spec() *jobsv1.JobSpec {
	spec := &jobsv1.JobSpec{
		Pool:    r.Pool,
		Timeout: durationpb.New(r.Timeout.D()),
		Labels:  r.Labels,
		Project: r.Project,
		Retry: &jobsv1.RetryPolicy{
			MaxAttempts:    uint32(r.Retry.MaxAttempts),
			InitialBackoff: durationpb.New(r.Retry.InitialBackoff.D()),
			MaxBackoff:     durationpb.New(r.Retry.MaxBackoff.D()),
			Multiplier:     r.Retry.Multiplier,
		},
	}
	spec.Task = r.Task.Proto()
	return spec
}
