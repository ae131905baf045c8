// Package tasks holds what a runner can execute. A Task is looked up by the
// kind of the job's Task oneof ("command", "noop"; later "ingest",
// "assertion"), runs with the job's context and reports through Output.
package tasks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// ErrTimedOut is the context cause the runner sets when a job's timeout
// passes; Classify turns it into TIMED_OUT.
var ErrTimedOut = errors.New("timed out")

// ErrCancelled is the context cause the runner sets when a job is cancelled;
// Classify turns it into CANCELLED.
var ErrCancelled = errors.New("cancelled")

// ErrInvalidTask is returned for a task the runner cannot run as given: an
// unknown kind, a missing field. It is permanent.
var ErrInvalidTask = errors.New("invalid task")

// Input is what a task gets to run.
type Input struct {
	Tenant  string
	JobID   string
	Attempt int
	// AttemptToken is the dispatch's attempt token, echoed on every event
	// the task publishes.
	AttemptToken string
	Spec         *jobsv1.JobSpec
	// User submitted the job, as the scheduler recorded it ("" for none);
	// the kubernetes task maps it to a ServiceAccount.
	User string
}

// Output is where a task reports while it runs. Everything written is
// redacted of the values given to Mask before it leaves the runner.
type Output interface {
	// Stream returns a writer whose bytes become log lines of the named
	// stream ("stdout", "stderr"). Close it to flush a last partial line.
	Stream(name string) io.WriteCloser
	// Log writes one line from the runner about the task.
	Log(text string)
	// Mask adds values (resolved secrets) to redact from every later line.
	Mask(values ...string)
}

// Result is how an attempt ended as far as the task knows. The runner's
// context decides first (timeout, cancel), see Classify.
type Result struct {
	// ExitCode of a process; 0 for tasks without one unless they fail.
	ExitCode int
	// Err is nil on success. Wrap it with Permanent when a retry cannot fix
	// it.
	Err error
	// Outputs are small named results for JobResult.outputs.
	Outputs map[string]string
	// RecordBatches is how many JobRecords batches the attempt published
	// (JobResult.record_batches): the scheduler ends the job only once it
	// has stored them.
	RecordBatches int
}

// Task runs one kind of work.
type Task interface {
	Run(ctx context.Context, in Input, out Output) Result
}

// Func adapts a function to Task.
type Func func(ctx context.Context, in Input, out Output) Result

// Run implements Task.
func (f Func) Run(ctx context.Context, in Input, out Output) Result { return f(ctx, in, out) }

// Registry maps task kinds to their implementation.
type Registry struct {
	tasks map[string]Task
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{tasks: map[string]Task{}} }

// Register adds t under kind, the name of the field in the Task oneof.
func (r *Registry) Register(kind string, t Task) { r.tasks[kind] = t }

// Kinds lists the registered kinds, sorted.
func (r *Registry) Kinds() []string {
	out := make([]string, 0, len(r.tasks))
	for k := range r.tasks {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// For returns the task that runs t.
func (r *Registry) For(t *jobsv1.Task) (Task, string, error) {
	kind := Kind(t)
	if kind == "" {
		return nil, "", Permanent(fmt.Errorf("%w: the job has no task", ErrInvalidTask))
	}
	impl, ok := r.tasks[kind]
	if !ok {
		return nil, kind, Permanent(fmt.Errorf("%w: task kind %q is not supported by this runner", ErrInvalidTask, kind))
	}
	return impl, kind, nil
}

// Kind is the name of the field set in t's oneof, "" when none is. Reading
// it from the descriptor keeps new task types from needing a switch here.
func Kind(t *jobsv1.Task) string {
	if t == nil {
		return ""
	}
	m := t.ProtoReflect()
	od := m.Descriptor().Oneofs().ByName("kind")
	if od == nil {
		return ""
	}
	fd := m.WhichOneof(od)
	if fd == nil {
		return ""
	}
	return string(fd.Name())
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that a retry cannot fix, so the job fails at
// once instead of using up its attempts.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err: err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

// Outcome is the state an attempt ends in.
type Outcome struct {
	State     jobsv1.JobState
	Reason    string
	Retryable bool
}

// Classify decides the outcome of an attempt. The context wins over the
// task's result: a command that exits 0 on SIGTERM was still cancelled.
func Classify(ctx context.Context, r Result) Outcome {
	if ctx.Err() != nil {
		cause := context.Cause(ctx)
		if errors.Is(cause, ErrTimedOut) {
			return Outcome{State: jobsv1.JobState_JOB_STATE_TIMED_OUT, Reason: cause.Error()}
		}
		return Outcome{State: jobsv1.JobState_JOB_STATE_CANCELLED, Reason: cause.Error()}
	}
	if r.Err == nil {
		return Outcome{State: jobsv1.JobState_JOB_STATE_SUCCEEDED}
	}
	return Outcome{State: jobsv1.JobState_JOB_STATE_FAILED, Reason: r.Err.Error(), Retryable: !IsPermanent(r.Err)}
}
