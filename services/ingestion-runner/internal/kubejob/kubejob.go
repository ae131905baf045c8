// Package kubejob is the kubernetes task: it runs a job's container as a
// Kubernetes Job in the runner's cluster and namespace, under the
// ServiceAccount the runner maps the job's user (or project) to. Resolved
// ${NAME} values reach the pod through a Secret made for the Job and
// deleted with it; the pod's log becomes the job's log; the Job's end
// (with the events that explain it) becomes the job's outcome.
package kubejob

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// ErrNoServiceAccount is returned (permanent) for a job whose user and
// project map to no ServiceAccount when the runner has no default: the
// customer refuses to run it under any identity.
var ErrNoServiceAccount = errors.New("no service account for this job")

const (
	defaultPollInterval = time.Second
	// cleanupTimeout bounds the deletes after the job's context ended.
	cleanupTimeout = 30 * time.Second
	// logDrain bounds how long the log is read after the Job ended: the
	// kubelet closes a finished container's stream at once.
	logDrain = 5 * time.Second
)

// ServiceAccounts chooses the pod's ServiceAccount: the user's, else the
// project's, else Default; with no Default an unmapped job is refused.
type ServiceAccounts struct {
	Users    map[string]string
	Projects map[string]string
	Default  string
}

// For returns the ServiceAccount for a job of user and project, and why.
func (s ServiceAccounts) For(user, project string) (sa, why string, err error) {
	if v, ok := s.Users[user]; ok && user != "" {
		return v, "user " + user, nil
	}
	if v, ok := s.Projects[project]; ok && project != "" {
		return v, "project " + project, nil
	}
	if s.Default != "" {
		return s.Default, "default", nil
	}
	return "", "", tasks.Permanent(fmt.Errorf("%w: user %q and project %q are not mapped and the runner has no default", ErrNoServiceAccount, user, project))
}

// ErrAccountMap is returned (wrapped) for a ServiceAccount map entry that
// is not NAME=service-account.
var ErrAccountMap = errors.New("invalid service account mapping")

// ParseAccounts reads entries "name=service-account" (a user or a
// project to a ServiceAccount name).
func ParseAccounts(entries []string) (map[string]string, error) {
	out := map[string]string{}
	var errs []error
	for _, e := range entries {
		name, sa, ok := strings.Cut(strings.TrimSpace(e), "=")
		switch {
		case !ok || name == "" || sa == "":
			errs = append(errs, fmt.Errorf("%w: %q must be name=service-account", ErrAccountMap, e))
		case len(validation.IsDNS1123Subdomain(sa)) > 0:
			errs = append(errs, fmt.Errorf("%w: %q: %q is not a ServiceAccount name", ErrAccountMap, e, sa))
		case out[name] != "":
			errs = append(errs, fmt.Errorf("%w: %q is mapped twice", ErrAccountMap, name))
		default:
			out[name] = sa
		}
	}
	return out, errors.Join(errs...)
}

// Task runs kubernetes tasks in Namespace.
type Task struct {
	Client    kubernetes.Interface
	Namespace string
	Accounts  ServiceAccounts
	Resolver  *secrets.Resolver
	// RunnerID is recorded on the Job.
	RunnerID string
	// PollInterval is how often the Job, its pods and their events are
	// read; 1s when zero.
	PollInterval time.Duration
	// TTLAfterFinished removes a finished Job the runner could not delete
	// (it died); 10 minutes when zero.
	TTLAfterFinished time.Duration
}

// NewClient is a clientset from the kubeconfig file at path, or the pod's
// ServiceAccount when path is empty (in-cluster).
func NewClient(path string) (kubernetes.Interface, error) {
	var rc *rest.Config
	var err error
	if path == "" {
		rc, err = rest.InClusterConfig()
	} else {
		rc, err = clientcmd.BuildConfigFromFlags("", path)
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client configuration: %w", err)
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return cs, nil
}

// Run implements tasks.Task.
func (t *Task) Run(ctx context.Context, in tasks.Input, out tasks.Output) tasks.Result {
	spec := in.Spec.GetTask().GetKubernetes()
	if spec == nil || spec.GetImage() == "" {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("%w: a kubernetes task needs an image", tasks.ErrInvalidTask))}
	}
	sa, why, err := t.Accounts.For(in.User, in.Spec.GetProject())
	if err != nil {
		return tasks.Result{Err: err}
	}
	name := JobName(in.JobID, in.Attempt)
	sess := t.Resolver.NewSession()
	c, err := buildContainer(ctx, sess, spec, name)
	// Mask before anything is logged, including what was resolved before
	// a later reference failed.
	out.Mask(sess.Values()...)
	if err != nil {
		return tasks.Result{Err: err}
	}
	deadline := spec.GetTimeout().AsDuration()
	if deadline <= 0 {
		deadline = in.Spec.GetTimeout().AsDuration()
	}
	job := t.jobObject(name, sa, in, c, deadline)
	out.Log(fmt.Sprintf("creating Job %s/%s: image %s, service account %s (%s)", t.Namespace, name, spec.GetImage(), sa, why))

	created, secretMade, err := t.create(ctx, job, c.data)
	// The deletes run whatever ended the job, cancel and timeout included.
	cl := &cleaner{t: t, ctx: context.WithoutCancel(ctx), name: name, job: created != nil, secret: secretMade, out: out}
	defer cl.run()
	if err != nil {
		return tasks.Result{ExitCode: -1, Err: err}
	}
	return t.follow(ctx, created, out, cl)
}

// create makes the Secret (when there are values to pass), the Job, and
// then hands the Secret to the Job (owner reference) so the cluster's
// garbage collector deletes it with the Job should the runner not.
func (t *Task) create(ctx context.Context, job *batchv1.Job, data map[string][]byte) (*batchv1.Job, bool, error) {
	secretsAPI := t.Client.CoreV1().Secrets(t.Namespace)
	var secret *corev1.Secret
	if len(data) > 0 {
		s := &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: job.Name, Namespace: t.Namespace, Labels: job.Labels, Annotations: job.Annotations},
			Type:       corev1.SecretTypeOpaque,
			Data:       data,
			Immutable:  new(true),
		}
		var err error
		if secret, err = secretsAPI.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return nil, false, fmt.Errorf("create secret %s/%s: %w", t.Namespace, job.Name, err)
		}
	}
	created, err := t.Client.BatchV1().Jobs(t.Namespace).Create(ctx, job, metav1.CreateOptions{})
	if err != nil {
		return nil, secret != nil, fmt.Errorf("create job %s/%s: %w", t.Namespace, job.Name, apiErr(err))
	}
	if secret != nil {
		secret.OwnerReferences = []metav1.OwnerReference{*metav1.NewControllerRef(created, batchv1.SchemeGroupVersion.WithKind("Job"))}
		if _, err := secretsAPI.Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
			return created, true, fmt.Errorf("set the owner of secret %s/%s: %w", t.Namespace, job.Name, err)
		}
	}
	return created, secret != nil, nil
}

// apiErr marks the API's refusals of the object itself (invalid, forbidden
// by admission) permanent; the rest (unreachable, throttled) may pass.
func apiErr(err error) error {
	if apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) {
		return tasks.Permanent(err)
	}
	return err
}

// cleaner deletes what a job made: the Job with foreground propagation
// (its pods go first, so a cancelled container stops) and the Secret,
// which the cluster's garbage collector would delete with the Job, but
// the runner does not wait for that.
type cleaner struct {
	t       *Task
	ctx     context.Context
	name    string
	job     bool
	secret  bool
	out     tasks.Output
	jobOnce sync.Once
}

// deleteJob deletes the Job, once.
func (c *cleaner) deleteJob() {
	if !c.job {
		return
	}
	c.jobOnce.Do(func() {
		ctx, cancel := context.WithTimeout(c.ctx, cleanupTimeout)
		defer cancel()
		ns := c.t.Namespace
		fg := metav1.DeletePropagationForeground
		err := c.t.Client.BatchV1().Jobs(ns).Delete(ctx, c.name, metav1.DeleteOptions{PropagationPolicy: &fg})
		switch {
		case err == nil:
			c.out.Log(fmt.Sprintf("deleted Job %s/%s (foreground propagation)", ns, c.name))
		case !apierrors.IsNotFound(err):
			c.out.Log(fmt.Sprintf("delete Job %s/%s: %v (its TTL removes it once finished)", ns, c.name, err))
		}
	})
}

func (c *cleaner) run() {
	c.deleteJob()
	if !c.secret {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, cleanupTimeout)
	defer cancel()
	err := c.t.Client.CoreV1().Secrets(c.t.Namespace).Delete(ctx, c.name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		c.out.Log(fmt.Sprintf("delete Secret %s/%s: %v (it goes with its Job)", c.t.Namespace, c.name, err))
	}
}
