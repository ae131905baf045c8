package api

import (
	"fmt"
	"math"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
)

// submitRequest is the body of POST /api/v1/jobs. Durations are Go duration
// strings ("90s", "1m30s").
type submitRequest struct {
	ID      string            `json:"id"`
	Pool    string            `json:"pool"`
	Task    *taskRequest      `json:"task"`
	Retry   *retryRequest     `json:"retry"`
	Timeout string            `json:"timeout"`
	Labels  map[string]string `json:"labels"`
	// Project is the job's project, for the polling rules of the pool's
	// deployment. The job's user is the request's principal, never a
	// field of the body.
	Project string `json:"project"`
}

type taskRequest struct {
	Command   *commandRequest     `json:"command"`
	Noop      *noopRequest        `json:"noop"`
	Ingest    *jobs.IngestTask    `json:"ingest"`
	Assertion *jobs.AssertionTask `json:"assertion"`
	// Kubernetes: strict like the rest of the body (unknown keys refused);
	// jobs.NormalizeSpec checks the values.
	Kubernetes *kubernetesRequest `json:"kubernetes"`
}

// kubernetesRequest is jobs.KubernetesTask with its timeout a string, so a
// bad duration is reported with its field.
type kubernetesRequest struct {
	Image     string                    `json:"image"`
	Command   []string                  `json:"command"`
	Args      []string                  `json:"args"`
	Env       map[string]string         `json:"env"`
	Resources *jobs.KubernetesResources `json:"resources"`
	Timeout   string                    `json:"timeout"`
}

type commandRequest struct {
	Command string            `json:"command"`
	Args    []string          `json:"args"`
	Env     map[string]string `json:"env"`
	Recipe  *jobs.IngestTask  `json:"recipe"`
}

type noopRequest struct {
	Sleep       string `json:"sleep"`
	FailMessage string `json:"fail_message"`
}

type retryRequest struct {
	MaxAttempts    int64   `json:"max_attempts"`
	InitialBackoff string  `json:"initial_backoff"`
	MaxBackoff     string  `json:"max_backoff"`
	Multiplier     float64 `json:"multiplier"`
}

// cancelRequest is the optional body of POST /api/v1/jobs/{id}/cancel.
type cancelRequest struct {
	Reason string `json:"reason"`
}

// tenantRequest is the optional body of PUT /api/v1/tenants/{tenant}.
type tenantRequest struct {
	Limits *config.Limits `json:"limits"`
}

// spec checks the request's own fields and converts it to a JobSpec;
// jobs.NormalizeSpec then checks the values.
func (r *submitRequest) spec() (*jobsv1.JobSpec, error) {
	if r.ID != "" && !queue.ValidToken(r.ID) {
		return nil, &jobs.FieldError{Field: "id", Message: "must be 1 to 64 characters of [A-Za-z0-9_-]"}
	}
	task, err := r.Task.proto()
	if err != nil {
		return nil, err
	}
	spec := &jobsv1.JobSpec{Pool: r.Pool, Labels: r.Labels, Task: task, Project: r.Project}
	if rr := r.Retry; rr != nil {
		if rr.MaxAttempts < 0 || rr.MaxAttempts > math.MaxUint32 {
			return nil, &jobs.FieldError{Field: "retry.max_attempts", Message: "must be at least 1 (0 or absent means the default)"}
		}
		initial, err := duration(rr.InitialBackoff, "retry.initial_backoff")
		if err != nil {
			return nil, err
		}
		maxB, err := duration(rr.MaxBackoff, "retry.max_backoff")
		if err != nil {
			return nil, err
		}
		spec.Retry = &jobsv1.RetryPolicy{MaxAttempts: uint32(rr.MaxAttempts), InitialBackoff: initial, MaxBackoff: maxB, Multiplier: rr.Multiplier}
	}
	timeout, err := duration(r.Timeout, "timeout")
	if err != nil {
		return nil, err
	}
	spec.Timeout = timeout
	return spec, nil
}

// proto checks that at most one kind is set and converts the task; an
// absent task gives an empty one, which jobs.NormalizeSpec refuses.
func (t *taskRequest) proto() (*jobsv1.Task, error) {
	out := &jobsv1.Task{}
	if t == nil {
		return out, nil
	}
	if countSet(t.Command != nil, t.Noop != nil, t.Ingest != nil, t.Assertion != nil, t.Kubernetes != nil) > 1 {
		return nil, &jobs.FieldError{Field: "task", Message: "exactly one of command, noop, ingest, assertion, kubernetes is allowed"}
	}
	switch {
	case t.Command != nil:
		c := t.Command
		if err := checkFormat(c.Recipe, "task.command.recipe.format"); err != nil {
			return nil, err
		}
		out.Kind = &jobsv1.Task_Command{Command: &jobsv1.CommandTask{Command: c.Command, Args: c.Args, Env: c.Env, Recipe: c.Recipe.Proto()}}
	case t.Noop != nil:
		sleep, err := duration(t.Noop.Sleep, "task.noop.sleep")
		if err != nil {
			return nil, err
		}
		out.Kind = &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{Sleep: sleep, FailMessage: t.Noop.FailMessage}}
	case t.Ingest != nil:
		if err := checkFormat(t.Ingest, "task.ingest.format"); err != nil {
			return nil, err
		}
		out.Kind = &jobsv1.Task_Ingest{Ingest: t.Ingest.Proto()}
	case t.Assertion != nil:
		if _, ok := jobs.ParseFormat(t.Assertion.Format); !ok {
			return nil, &jobs.FieldError{Field: "task.assertion.format", Message: "must be yaml or json"}
		}
		for i, c := range t.Assertion.Checks {
			if countSet(c.RowCount != nil, c.Freshness != nil, c.SQL != nil, c.Column != nil) > 1 {
				return nil, &jobs.FieldError{Field: fmt.Sprintf("task.assertion.checks[%d]", i), Message: "exactly one of row_count, freshness, sql, column is allowed"}
			}
		}
		out.Kind = &jobsv1.Task_Assertion{Assertion: t.Assertion.Proto()}
	case t.Kubernetes != nil:
		k := t.Kubernetes
		timeout, err := duration(k.Timeout, "task.kubernetes.timeout")
		if err != nil {
			return nil, err
		}
		kt := (&jobs.KubernetesTask{Image: k.Image, Command: k.Command, Args: k.Args, Env: k.Env, Resources: k.Resources}).Proto()
		kt.Timeout = timeout
		out.Kind = &jobsv1.Task_Kubernetes{Kubernetes: kt}
	}
	return out, nil
}

func countSet(set ...bool) int {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	return n
}

func checkFormat(t *jobs.IngestTask, field string) error {
	if t == nil {
		return nil
	}
	if _, ok := jobs.ParseFormat(t.Format); !ok {
		return &jobs.FieldError{Field: field, Message: "must be yaml or json"}
	}
	return nil
}

// duration parses an optional duration string; "" gives nil (the default).
func duration(s, field string) (*durationpb.Duration, error) {
	if s == "" {
		return nil, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return nil, &jobs.FieldError{Field: field, Message: "must be a duration such as \"90s\" or \"1h30m\""}
	}
	if d < 0 {
		return nil, &jobs.FieldError{Field: field, Message: "must not be negative"}
	}
	return durationpb.New(d), nil
}
