package kubejob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// Labels and annotations the runner puts on what it creates, so an
// operator can find a job's Job, pods and Secret.
const (
	LabelManagedBy      = "app.kubernetes.io/managed-by"
	ManagedBy           = "outpost-ingestion-runner"
	LabelAttempt        = "outpost.dev/attempt"
	AnnotationJobID     = "outpost.dev/job-id"
	AnnotationTenant    = "outpost.dev/tenant"
	AnnotationUser      = "outpost.dev/user"
	AnnotationRunner    = "outpost.dev/runner-id"
	ContainerName       = "job"
	argEnvPrefix        = "OUTPOST_ARG_"
	commandEnvPrefix    = "OUTPOST_COMMAND_"
	maxNameLen          = 63
	defaultTTLAfterDone = 10 * time.Minute
)

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// JobName is the Job's (and its Secret's) name for one attempt: a DNS
// label made of the job id (lower-cased, cut), the attempt and a hash of
// the id, so two ids that differ only in case or past the cut do not meet.
func JobName(jobID string, attempt int) string {
	sum := sha256.Sum256([]byte(jobID))
	suffix := fmt.Sprintf("-%d-%s", attempt, hex.EncodeToString(sum[:])[:8])
	base := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, jobID)
	base = "outpost-" + base
	base = strings.TrimRight(base[:min(len(base), maxNameLen-len(suffix))], "-")
	return base + suffix
}

// hasRef tells whether s holds a ${NAME} reference (not the "$${" escape),
// that is whether its expanded value may be a secret.
func hasRef(s string) bool {
	for i := 0; i < len(s); i++ {
		if strings.HasPrefix(s[i:], "$${") {
			i += 2
			continue
		}
		if strings.HasPrefix(s[i:], "${") {
			return true
		}
	}
	return false
}

// container is the job's container and the Secret data its references
// resolved to.
type container struct {
	spec corev1.Container
	data map[string][]byte
}

// buildContainer resolves the references of spec. A value without
// references goes into the spec as written (the "$${" escape undone); a
// value with references goes into the Secret secretName and reaches the
// container through env valueFrom; an argument or command word with
// references becomes "$(OUTPOST_ARG_<i>)", which the kubelet expands from
// that variable, so no resolved value is ever in the Job's spec.
func buildContainer(ctx context.Context, sess *secrets.Session, spec *jobsv1.KubernetesTask, secretName string) (container, error) {
	c := container{data: map[string][]byte{}}
	c.spec = corev1.Container{Name: ContainerName, Image: spec.GetImage(), ImagePullPolicy: corev1.PullIfNotPresent}
	fromSecret := func(key string) corev1.EnvVar {
		return corev1.EnvVar{Name: key, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secretName}, Key: key,
		}}}
	}
	// The job's own variables come first: $(OUTPOST_ARG_i) in an argument
	// must see them defined, and Kubernetes expands in order.
	for _, k := range slices.Sorted(maps.Keys(spec.GetEnv())) {
		if !envName.MatchString(k) || strings.HasPrefix(k, "OUTPOST_") {
			return c, tasks.Permanent(fmt.Errorf("%w: environment variable name %q (OUTPOST_ is reserved)", tasks.ErrInvalidTask, k))
		}
		raw := spec.GetEnv()[k]
		v, err := sess.Expand(ctx, raw)
		if err != nil {
			return c, expandErr("environment variable "+k, err)
		}
		if !hasRef(raw) {
			c.spec.Env = append(c.spec.Env, corev1.EnvVar{Name: k, Value: escapeKube(v)})
			continue
		}
		c.data[k] = []byte(v)
		c.spec.Env = append(c.spec.Env, fromSecret(k))
	}
	words := func(in []string, prefix, what string) ([]string, error) {
		out := make([]string, len(in))
		for i, raw := range in {
			v, err := sess.Expand(ctx, raw)
			if err != nil {
				return nil, expandErr(fmt.Sprintf("%s %d", what, i+1), err)
			}
			if !hasRef(raw) {
				out[i] = escapeKube(v)
				continue
			}
			key := prefix + strconv.Itoa(i)
			c.data[key] = []byte(v)
			c.spec.Env = append(c.spec.Env, fromSecret(key))
			out[i] = "$(" + key + ")"
		}
		return out, nil
	}
	var err error
	if c.spec.Command, err = words(spec.GetCommand(), commandEnvPrefix, "command word"); err != nil {
		return c, err
	}
	if c.spec.Args, err = words(spec.GetArgs(), argEnvPrefix, "argument"); err != nil {
		return c, err
	}
	if len(c.spec.Command) == 0 {
		c.spec.Command = nil
	}
	if len(c.spec.Args) == 0 {
		c.spec.Args = nil
	}
	if c.spec.Resources, err = resources(spec.GetResources()); err != nil {
		return c, err
	}
	return c, nil
}

// escapeKube keeps a literal value literal: Kubernetes would expand
// "$(NAME)" in env values, command and arguments; "$$" is its escape.
func escapeKube(s string) string { return strings.ReplaceAll(s, "$", "$$") }

func resources(r *jobsv1.KubernetesResources) (corev1.ResourceRequirements, error) {
	var out corev1.ResourceRequirements
	set := func(list *corev1.ResourceList, name corev1.ResourceName, field, v string) error {
		if v == "" {
			return nil
		}
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			return tasks.Permanent(fmt.Errorf("%w: resources.%s %q is not a Kubernetes quantity", tasks.ErrInvalidTask, field, v))
		}
		if *list == nil {
			*list = corev1.ResourceList{}
		}
		(*list)[name] = q
		return nil
	}
	return out, errors.Join(
		set(&out.Requests, corev1.ResourceCPU, "cpu_request", r.GetCpuRequest()),
		set(&out.Limits, corev1.ResourceCPU, "cpu_limit", r.GetCpuLimit()),
		set(&out.Requests, corev1.ResourceMemory, "memory_request", r.GetMemoryRequest()),
		set(&out.Limits, corev1.ResourceMemory, "memory_limit", r.GetMemoryLimit()),
	)
}

func expandErr(where string, err error) error {
	err = fmt.Errorf("%s: %w", where, err)
	if errors.Is(err, secrets.ErrUnknownSecret) || errors.Is(err, secrets.ErrInvalidReference) {
		return tasks.Permanent(err)
	}
	// A provider that could not answer may answer next time.
	return err
}

// jobObject is the Job of one attempt: one pod, never restarted (the
// runner's retry policy decides about another attempt), no retry by the
// Job controller, a deadline, and a TTL that removes it should the runner
// die before it deletes it.
func (t *Task) jobObject(name, sa string, in tasks.Input, c container, deadline time.Duration) *batchv1.Job {
	meta := metav1.ObjectMeta{
		Name:      name,
		Namespace: t.Namespace,
		Labels:    map[string]string{LabelManagedBy: ManagedBy, LabelAttempt: strconv.Itoa(in.Attempt)},
		Annotations: map[string]string{
			AnnotationJobID: in.JobID, AnnotationTenant: in.Tenant, AnnotationUser: in.User, AnnotationRunner: t.RunnerID,
		},
	}
	ttl := t.TTLAfterFinished
	if ttl <= 0 {
		ttl = defaultTTLAfterDone
	}
	podMeta := metav1.ObjectMeta{Labels: maps.Clone(meta.Labels), Annotations: maps.Clone(meta.Annotations)}
	job := &batchv1.Job{
		ObjectMeta: meta,
		Spec: batchv1.JobSpec{
			BackoffLimit:            new(int32(0)),
			TTLSecondsAfterFinished: new(int32(ttl / time.Second)),
			Template: corev1.PodTemplateSpec{
				ObjectMeta: podMeta,
				Spec: corev1.PodSpec{
					ServiceAccountName: sa,
					RestartPolicy:      corev1.RestartPolicyNever,
					Containers:         []corev1.Container{c.spec},
				},
			},
		},
	}
	if deadline > 0 {
		// Whole seconds, rounded up: Kubernetes takes no fraction.
		job.Spec.ActiveDeadlineSeconds = new(int64((deadline + time.Second - 1) / time.Second))
	}
	return job
}
