package kubejob

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// secretValue is what ${API_TOKEN} resolves to; it must never be in a
// Job or pod spec, nor unmasked in the job's log.
const secretValue = "s3cr3t-token-value"

func newTask(t *testing.T, e *env, accounts ServiceAccounts) *Task {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "API_TOKEN"), []byte(secretValue+"\n"), 0o600))
	return &Task{
		Client:       e.runner,
		Namespace:    e.ns,
		Accounts:     accounts,
		Resolver:     &secrets.Resolver{Providers: []secrets.Provider{secrets.Dir{Path: dir}}},
		RunnerID:     "runner-1",
		PollInterval: 100 * time.Millisecond,
	}
}

func kubeInput(user, project string) tasks.Input {
	return tasks.Input{
		Tenant: "acme", JobID: "Job_42", Attempt: 1, User: user,
		Spec: &jobsv1.JobSpec{Project: project, Timeout: durationpb.New(time.Minute), Task: &jobsv1.Task{Kind: &jobsv1.Task_Kubernetes{Kubernetes: &jobsv1.KubernetesTask{
			Image:     "registry.example/etl:1.2",
			Command:   []string{"/bin/etl"},
			Args:      []string{"--token=${API_TOKEN}", "$(HOME) stays literal", "$${NOT_A_REF}"},
			Env:       map[string]string{"TOKEN": "${API_TOKEN}", "MODE": "full"},
			Resources: &jobsv1.KubernetesResources{CpuRequest: "100m", MemoryLimit: "64Mi"},
			Timeout:   durationpb.New(30 * time.Second),
		}}}},
	}
}

// run starts the task; the result arrives on the channel.
func run(ctx context.Context, task *Task, in tasks.Input, out *output) <-chan tasks.Result {
	ch := make(chan tasks.Result, 1)
	go func() { ch <- task.Run(ctx, in, out) }()
	return ch
}

func wait(t *testing.T, ch <-chan tasks.Result) tasks.Result {
	t.Helper()
	var res tasks.Result
	require.Eventually(t, func() bool {
		select {
		case res = <-ch:
			return true
		default:
			return false
		}
	}, 30*time.Second, 20*time.Millisecond, "the task returns")
	return res
}

// requireNoSecretInSpec checks the Job (and pod) spec hold references to
// the Secret, never a resolved value, and that the Secret is the Job's.
func requireNoSecretInSpec(t *testing.T, e *env, job *batchv1.Job) {
	t.Helper()
	raw, err := json.Marshal(job)
	require.NoError(t, err)
	require.NotContains(t, string(raw), secretValue)
	c := job.Spec.Template.Spec.Containers[0]
	require.Equal(t, []string{"/bin/etl"}, c.Command)
	require.Equal(t, []string{"$(OUTPOST_ARG_0)", "$$(HOME) stays literal", "$${NOT_A_REF}"}, c.Args, "literal \"$\" escaped for the kubelet's expansion")
	byName := map[string]corev1.EnvVar{}
	for _, v := range c.Env {
		byName[v.Name] = v
	}
	require.Equal(t, "full", byName["MODE"].Value)
	for _, name := range []string{"TOKEN", "OUTPOST_ARG_0"} {
		ref := byName[name].ValueFrom.SecretKeyRef
		require.NotNil(t, ref, name)
		require.Equal(t, job.Name, ref.Name)
		require.Equal(t, name, ref.Key)
	}
	require.Equal(t, "100m", c.Resources.Requests.Cpu().String())
	require.Equal(t, "64Mi", c.Resources.Limits.Memory().String())
	require.Equal(t, int64(30), *job.Spec.ActiveDeadlineSeconds)
	require.Equal(t, int32(0), *job.Spec.BackoffLimit)

	var s *corev1.Secret
	require.Eventually(t, func() bool {
		s, err = e.admin.CoreV1().Secrets(e.ns).Get(ctxT(t), job.Name, metav1.GetOptions{})
		return err == nil && len(s.OwnerReferences) == 1
	}, 10*time.Second, 20*time.Millisecond, "the Secret is made and owned by the Job")
	require.Equal(t, job.UID, s.OwnerReferences[0].UID)
	require.Equal(t, secretValue, string(s.Data["TOKEN"]))
	require.Equal(t, "--token="+secretValue, string(s.Data["OUTPOST_ARG_0"]))
}

// requireCleanedUp checks the Secret is gone and the Job was deleted with
// foreground propagation: with no garbage collector in the test cluster
// it stays, marked for deletion behind the foregroundDeletion finalizer.
func requireCleanedUp(t *testing.T, e *env, name string) {
	t.Helper()
	_, err := e.admin.CoreV1().Secrets(e.ns).Get(ctxT(t), name, metav1.GetOptions{})
	require.True(t, apierrors.IsNotFound(err), "the Secret is deleted: %v", err)
	job, err := e.admin.BatchV1().Jobs(e.ns).Get(ctxT(t), name, metav1.GetOptions{})
	require.NoError(t, err)
	require.NotNil(t, job.DeletionTimestamp, "the Job is deleted")
	require.Contains(t, job.Finalizers, metav1.FinalizerDeleteDependents, "with foreground propagation")
}

func TestOutcomes(t *testing.T) {
	cases := []struct {
		name string
		// play is the kubelet and the Job controller once the Job exists.
		play  func(t *testing.T, e *env, job *batchv1.Job)
		check func(t *testing.T, res tasks.Result, log string)
	}{
		{
			name: "succeeded",
			play: func(t *testing.T, e *env, job *batchv1.Job) {
				pod := e.startPod(t, job, &podLog{text: "loading with " + secretValue + "\nloaded 3 tables\n"})
				requireNoSecretInSpec(t, e, &batchv1.Job{ObjectMeta: job.ObjectMeta, Spec: batchv1.JobSpec{
					Template: corev1.PodTemplateSpec{Spec: pod.Spec}, ActiveDeadlineSeconds: job.Spec.ActiveDeadlineSeconds, BackoffLimit: job.Spec.BackoffLimit,
				}})
				e.terminate(t, pod, 0, "Completed")
				e.finishJob(t, job, false, "CompletionsReached", "Reached expected number of succeeded pods")
			},
			check: func(t *testing.T, res tasks.Result, log string) {
				require.NoError(t, res.Err)
				require.Equal(t, 0, res.ExitCode)
				require.Contains(t, log, "loading with ****\nloaded 3 tables")
			},
		},
		{
			name: "failed with the container's exit code and reason",
			play: func(t *testing.T, e *env, job *batchv1.Job) {
				pod := e.startPod(t, job, &podLog{text: "connection refused\n"})
				e.event(t, "Job", job.Name, string(job.UID), corev1.EventTypeWarning, "BackoffLimitExceeded", "Job has reached the specified backoff limit")
				e.terminate(t, pod, 3, "Error")
				e.finishJob(t, job, true, batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit")
			},
			check: func(t *testing.T, res tasks.Result, log string) {
				require.ErrorIs(t, res.Err, ErrJobFailed)
				require.False(t, tasks.IsPermanent(res.Err), "a failed run is retried per the job's policy")
				require.Equal(t, 3, res.ExitCode)
				require.ErrorContains(t, res.Err, "container exited with code 3 (Error)")
				require.ErrorContains(t, res.Err, "events: job/"+"outpost-job-42-1-")
				require.ErrorContains(t, res.Err, "Warning BackoffLimitExceeded: Job has reached the specified backoff limit")
				require.Contains(t, log, "connection refused")
			},
		},
		{
			name: "evicted",
			play: func(t *testing.T, e *env, job *batchv1.Job) {
				pod := e.startPod(t, job, &podLog{text: "working\n"})
				e.event(t, "Pod", pod.Name, string(pod.UID), corev1.EventTypeWarning, "Evicted", "The node was low on resource: memory.")
				e.podStatus(t, pod, func(s *corev1.PodStatus) {
					s.Phase, s.Reason, s.Message = corev1.PodFailed, "Evicted", "The node was low on resource: memory."
					s.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "ContainerStatusUnknown"}}
				})
				e.finishJob(t, job, true, batchv1.JobReasonBackoffLimitExceeded, "Job has reached the specified backoff limit")
			},
			check: func(t *testing.T, res tasks.Result, _ string) {
				require.ErrorIs(t, res.Err, ErrEvicted)
				require.False(t, tasks.IsPermanent(res.Err), "another attempt may find a node with room")
				require.ErrorContains(t, res.Err, "pod evicted: The node was low on resource: memory.")
				require.ErrorContains(t, res.Err, "Warning Evicted")
			},
		},
		{
			name: "deadline exceeded",
			play: func(t *testing.T, e *env, job *batchv1.Job) {
				e.startPod(t, job, &podLog{text: "slow\n"})
				e.event(t, "Job", job.Name, string(job.UID), corev1.EventTypeWarning, "DeadlineExceeded", "Job was active longer than specified deadline")
				e.finishJob(t, job, true, batchv1.JobReasonDeadlineExceeded, "Job was active longer than specified deadline")
			},
			check: func(t *testing.T, res tasks.Result, _ string) {
				require.ErrorIs(t, res.Err, ErrDeadlineExceeded)
				require.True(t, tasks.IsPermanent(res.Err))
				require.ErrorContains(t, res.Err, "Warning DeadlineExceeded: Job was active longer than specified deadline")
			},
		},
		{
			name: "image pull failure",
			play: func(t *testing.T, e *env, job *batchv1.Job) {
				pod := e.startPod(t, job, nil)
				msg := `Failed to pull image "registry.example/etl:1.2": not found`
				e.event(t, "Pod", pod.Name, string(pod.UID), corev1.EventTypeWarning, "Failed", msg)
				e.podStatus(t, pod, func(s *corev1.PodStatus) {
					s.Phase = corev1.PodPending
					s.ContainerStatuses[0].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{
						Reason: "ImagePullBackOff", Message: `Back-off pulling image "registry.example/etl:1.2"`,
					}}
				})
			},
			check: func(t *testing.T, res tasks.Result, log string) {
				require.ErrorIs(t, res.Err, ErrImagePull)
				require.True(t, tasks.IsPermanent(res.Err), "the same image will not pull next time")
				require.ErrorContains(t, res.Err, "ImagePullBackOff: Back-off pulling image")
				require.ErrorContains(t, res.Err, `Warning Failed: Failed to pull image "registry.example/etl:1.2": not found`)
				require.Contains(t, log, "event pod/")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			task := newTask(t, e, ServiceAccounts{Default: "jobs-default"})
			out := newOutput()
			ch := run(context.Background(), task, kubeInput("alice", ""), out)
			job := e.waitJob(t)
			require.Equal(t, JobName("Job_42", 1), job.Name)
			requireNoSecretInSpec(t, e, job)
			tc.play(t, e, job)
			res := wait(t, ch)
			log := out.text()
			tc.check(t, res, log)
			require.NotContains(t, log, secretValue)
			if res.Err != nil {
				require.NotContains(t, res.Err.Error(), secretValue)
			}
			requireCleanedUp(t, e, job.Name)
		})
	}
}

func TestServiceAccountChoice(t *testing.T) {
	accounts := ServiceAccounts{
		Users:    map[string]string{"alice": "ksa-alice"},
		Projects: map[string]string{"analytics": "ksa-analytics"},
		Default:  "jobs-default",
	}
	refusing := accounts
	refusing.Default = ""
	cases := []struct {
		name, user, project string
		accounts            ServiceAccounts
		want                string // "" for a refusal
	}{
		{"mapped user", "alice", "", accounts, "ksa-alice"},
		{"the user's map wins over the project's", "alice", "analytics", accounts, "ksa-alice"},
		{"mapped project", "bob", "analytics", accounts, "ksa-analytics"},
		{"unmapped gets the default", "carol", "other", accounts, "jobs-default"},
		{"no user gets the default", "", "", accounts, "jobs-default"},
		{"unmapped refused without a default", "carol", "other", refusing, ""},
		{"mapped user with no default", "alice", "", refusing, "ksa-alice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			task := newTask(t, e, tc.accounts)
			ch := run(context.Background(), task, kubeInput(tc.user, tc.project), newOutput())
			if tc.want == "" {
				res := wait(t, ch)
				require.ErrorIs(t, res.Err, ErrNoServiceAccount)
				require.True(t, tasks.IsPermanent(res.Err))
				jobs, err := e.admin.BatchV1().Jobs(e.ns).List(ctxT(t), metav1.ListOptions{})
				require.NoError(t, err)
				require.Empty(t, jobs.Items, "a refused job makes no Job")
				secretList, err := e.admin.CoreV1().Secrets(e.ns).List(ctxT(t), metav1.ListOptions{})
				require.NoError(t, err)
				require.Empty(t, secretList.Items, "nor a Secret")
				return
			}
			job := e.waitJob(t)
			require.Equal(t, tc.want, job.Spec.Template.Spec.ServiceAccountName)
			require.Equal(t, tc.user, job.Annotations[AnnotationUser])
			pod := e.startPod(t, job, &podLog{text: "ok\n"})
			e.terminate(t, pod, 0, "Completed")
			e.finishJob(t, job, false, "CompletionsReached", "Reached expected number of succeeded pods")
			require.NoError(t, wait(t, ch).Err)
		})
	}
}

func TestCancelAndTimeout(t *testing.T) {
	cases := []struct {
		name  string
		ctx   func() (context.Context, context.CancelFunc)
		state jobsv1.JobState
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancelCause(context.Background())
			return ctx, func() { cancel(tasks.ErrCancelled) }
		}, jobsv1.JobState_JOB_STATE_CANCELLED},
		{"timeout", func() (context.Context, context.CancelFunc) {
			return context.WithTimeoutCause(context.Background(), 3*time.Second, tasks.ErrTimedOut)
		}, jobsv1.JobState_JOB_STATE_TIMED_OUT},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			task := newTask(t, e, ServiceAccounts{Default: "jobs-default"})
			out := newOutput()
			ctx, stop := tc.ctx()
			defer stop()
			ch := run(ctx, task, kubeInput("alice", ""), out)
			job := e.waitJob(t)
			hold := make(chan struct{})
			e.startPod(t, job, &podLog{text: "working\n", hold: hold})
			require.Eventually(t, func() bool { return strings.Contains(out.text(), "working") },
				20*time.Second, 20*time.Millisecond, "the log streams while the pod runs")
			if tc.name == "cancel" {
				stop()
			}
			// The kubelet stops the container once its Job is being deleted.
			require.Eventually(t, func() bool {
				j, err := e.admin.BatchV1().Jobs(e.ns).Get(ctxT(t), job.Name, metav1.GetOptions{})
				return err == nil && j.DeletionTimestamp != nil
			}, 20*time.Second, 20*time.Millisecond, "the Job is deleted")
			close(hold)
			res := wait(t, ch)
			require.Equal(t, tc.state, tasks.Classify(ctx, res).State)
			requireCleanedUp(t, e, job.Name)
			require.Contains(t, out.text(), "deleted Job "+e.ns+"/"+job.Name+" (foreground propagation)")
		})
	}
}

func TestRefusedBeforeAnythingIsCreated(t *testing.T) {
	cases := []struct {
		name    string
		edit    func(k *jobsv1.KubernetesTask)
		wantErr error
		msg     string
	}{
		{"unknown secret", func(k *jobsv1.KubernetesTask) { k.Env["PASSWORD"] = "${MISSING}" }, secrets.ErrUnknownSecret, `environment variable PASSWORD: unknown secret "MISSING"`},
		{"bad quantity", func(k *jobsv1.KubernetesTask) { k.Resources.MemoryLimit = "lots" }, tasks.ErrInvalidTask, `resources.memory_limit "lots" is not a Kubernetes quantity`},
		{"reserved variable", func(k *jobsv1.KubernetesTask) { k.Env["OUTPOST_ARG_0"] = "x" }, tasks.ErrInvalidTask, "OUTPOST_ is reserved"},
		{"no image", func(k *jobsv1.KubernetesTask) { k.Image = "" }, tasks.ErrInvalidTask, "needs an image"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			task := newTask(t, e, ServiceAccounts{Default: "jobs-default"})
			in := kubeInput("alice", "")
			tc.edit(in.Spec.GetTask().GetKubernetes())
			out := newOutput()
			res := task.Run(ctxT(t), in, out)
			require.ErrorIs(t, res.Err, tc.wantErr)
			require.ErrorContains(t, res.Err, tc.msg)
			require.True(t, tasks.IsPermanent(res.Err))
			require.NotContains(t, out.text()+res.Err.Error(), secretValue)
			jobs, err := e.admin.BatchV1().Jobs(e.ns).List(ctxT(t), metav1.ListOptions{})
			require.NoError(t, err)
			require.Empty(t, jobs.Items)
			list, err := e.admin.CoreV1().Secrets(e.ns).List(ctxT(t), metav1.ListOptions{})
			require.NoError(t, err)
			require.Empty(t, list.Items)
		})
	}
}
