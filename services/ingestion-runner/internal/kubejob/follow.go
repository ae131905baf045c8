package kubejob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// ErrImagePull is returned (permanent) when the kubelet cannot pull or
// refuses the image: another attempt would pull the same reference.
var ErrImagePull = errors.New("image pull failed")

// ErrEvicted is returned when the node evicted the pod; another attempt
// may land on a node with room, so it is not permanent.
var ErrEvicted = errors.New("pod evicted")

// ErrDeadlineExceeded is returned (permanent) when the Job ran past its
// activeDeadlineSeconds.
var ErrDeadlineExceeded = errors.New("deadline exceeded")

// ErrJobFailed is returned when the Job failed otherwise: the container
// exited non-zero (the exit code is the result's) or the Job controller
// gave up.
var ErrJobFailed = errors.New("job failed")

// imagePullReasons are the container waiting reasons that end the job:
// the first ErrImagePull is retried by the kubelet, its back-off is not
// going to work either.
var imagePullReasons = []string{"ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}

// maxReasonEvents bounds the events quoted in a failure reason; all of
// them are in the log.
const maxReasonEvents = 3

// follower watches one Job: its pods' logs and the events about it.
type follower struct {
	t    *Task
	job  *batchv1.Job
	out  tasks.Output
	seen map[types.UID]bool // events already logged
	// warnings are the Warning events seen, oldest first.
	warnings []string

	logCtx    context.Context
	stopLogs  context.CancelFunc
	logsWG    sync.WaitGroup
	streaming map[string]bool // pods whose log is being read
	logErrs   map[string]bool // pods whose log could not open, said once
}

// follow polls the Job until it ends or ctx does; the result carries the
// container's exit code and, on failure, the events that explain it.
func (t *Task) follow(ctx context.Context, job *batchv1.Job, out tasks.Output, cl *cleaner) tasks.Result {
	interval := t.PollInterval
	if interval <= 0 {
		interval = defaultPollInterval
	}
	f := &follower{t: t, job: job, out: out, seen: map[types.UID]bool{}, streaming: map[string]bool{}, logErrs: map[string]bool{}}
	// Log streams outlive ctx by logDrain at most: a cancelled job's last
	// lines are still worth having.
	f.logCtx, f.stopLogs = context.WithCancel(context.WithoutCancel(ctx))
	defer f.stopLogs()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		res, done := f.poll(ctx)
		if done {
			f.finish()
			return res
		}
		select {
		case <-ctx.Done():
			ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			f.events(ectx)
			cancel()
			out.Log(fmt.Sprintf("stopping Job %s/%s: %v", job.Namespace, job.Name, context.Cause(ctx)))
			// Deleted before the log is drained: its end closes the stream.
			cl.deleteJob()
			f.finish()
			return tasks.Result{ExitCode: -1, Err: context.Cause(ctx)}
		case <-tick.C:
		}
	}
}

// finish waits a bounded time for the log streams to end.
func (f *follower) finish() {
	done := make(chan struct{})
	go func() { f.logsWG.Wait(); close(done) }()
	t := time.NewTimer(logDrain)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		f.out.Log("pod log still open after the Job ended; stopped reading")
		f.stopLogs()
		<-done
	}
}

// poll reads the Job, its pods and events once; done is set with the
// result when the Job has ended. A read that fails is retried at the next
// tick: the API server may be briefly away.
func (f *follower) poll(ctx context.Context) (tasks.Result, bool) {
	job, err := f.t.Client.BatchV1().Jobs(f.job.Namespace).Get(ctx, f.job.Name, metav1.GetOptions{})
	if err != nil {
		if ctx.Err() == nil {
			f.out.Log(fmt.Sprintf("read Job %s/%s: %v", f.job.Namespace, f.job.Name, err))
		}
		return tasks.Result{}, false
	}
	f.job = job
	pods, err := f.pods(ctx)
	if err != nil {
		if ctx.Err() == nil {
			f.out.Log(fmt.Sprintf("list pods of Job %s/%s: %v", job.Namespace, job.Name, err))
		}
		return tasks.Result{}, false
	}
	for i := range pods {
		f.streamLogs(&pods[i])
	}
	f.events(ctx)
	if res, done := f.outcome(pods); done {
		// The last events (the kubelet's "Killing", "BackOff") may come
		// with the end.
		f.events(ctx)
		if res.Err != nil {
			res.Err = f.explain(res.Err)
		}
		return res, true
	}
	return tasks.Result{}, false
}

// pods are the Job's, by the controller-uid label the API server puts in
// the Job's selector and pod template.
func (f *follower) pods(ctx context.Context) ([]corev1.Pod, error) {
	sel, err := metav1.LabelSelectorAsSelector(f.job.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("job selector: %w", err)
	}
	list, err := f.t.Client.CoreV1().Pods(f.job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(list.Items, func(a, b corev1.Pod) int { return a.CreationTimestamp.Compare(b.CreationTimestamp.Time) })
	return list.Items, nil
}

// outcome is the Job's end, from its conditions and its pods; done is
// false while it runs.
func (f *follower) outcome(pods []corev1.Pod) (tasks.Result, bool) {
	for _, p := range pods {
		if cs := jobContainer(p); cs != nil && cs.State.Waiting != nil && slices.Contains(imagePullReasons, cs.State.Waiting.Reason) {
			w := cs.State.Waiting
			return tasks.Result{ExitCode: -1, Err: tasks.Permanent(fmt.Errorf("%w: %s: %s", ErrImagePull, w.Reason, w.Message))}, true
		}
	}
	for _, c := range f.job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return tasks.Result{ExitCode: exitCode(pods)}, true
		case batchv1.JobFailed:
			return failure(c, pods), true
		}
	}
	return tasks.Result{}, false
}

func failure(c batchv1.JobCondition, pods []corev1.Pod) tasks.Result {
	if c.Reason == batchv1.JobReasonDeadlineExceeded {
		return tasks.Result{ExitCode: -1, Err: tasks.Permanent(fmt.Errorf("%w: %s", ErrDeadlineExceeded, c.Message))}
	}
	// The newest failed pod says why; an eviction is the node's doing.
	for _, p := range slices.Backward(pods) {
		if p.Status.Phase != corev1.PodFailed {
			continue
		}
		if p.Status.Reason == "Evicted" {
			return tasks.Result{ExitCode: -1, Err: fmt.Errorf("%w: %s", ErrEvicted, p.Status.Message)}
		}
		if cs := jobContainer(p); cs != nil && cs.State.Terminated != nil {
			term := cs.State.Terminated
			msg := fmt.Sprintf("container exited with code %d (%s)", term.ExitCode, term.Reason)
			if term.Message != "" {
				msg += ": " + term.Message
			}
			return tasks.Result{ExitCode: int(term.ExitCode), Err: fmt.Errorf("%w: %s", ErrJobFailed, msg)}
		}
	}
	return tasks.Result{ExitCode: -1, Err: fmt.Errorf("%w: %s: %s", ErrJobFailed, c.Reason, c.Message)}
}

func exitCode(pods []corev1.Pod) int {
	for _, p := range slices.Backward(pods) {
		if cs := jobContainer(p); cs != nil && cs.State.Terminated != nil {
			return int(cs.State.Terminated.ExitCode)
		}
	}
	return 0
}

func jobContainer(p corev1.Pod) *corev1.ContainerStatus {
	for i, cs := range p.Status.ContainerStatuses {
		if cs.Name == ContainerName {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// explain adds the Warning events seen to err, the newest last.
func (f *follower) explain(err error) error {
	if len(f.warnings) == 0 {
		return err
	}
	w := f.warnings[max(0, len(f.warnings)-maxReasonEvents):]
	return fmt.Errorf("%w; events: %s", err, strings.Join(w, "; "))
}

// events logs the events about the Job and its pods not logged yet.
func (f *follower) events(ctx context.Context) {
	objects := []string{f.job.Name}
	for name := range f.streaming {
		objects = append(objects, name)
	}
	pods, err := f.pods(ctx)
	if err == nil {
		for _, p := range pods {
			if !slices.Contains(objects, p.Name) {
				objects = append(objects, p.Name)
			}
		}
	}
	var fresh []corev1.Event
	for _, name := range objects {
		list, err := f.t.Client.CoreV1().Events(f.job.Namespace).List(ctx, metav1.ListOptions{
			FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
		})
		if err != nil {
			continue // the events explain, they do not decide
		}
		for _, e := range list.Items {
			if !f.seen[e.UID] {
				f.seen[e.UID] = true
				fresh = append(fresh, e)
			}
		}
	}
	slices.SortStableFunc(fresh, func(a, b corev1.Event) int { return eventTime(a).Compare(eventTime(b)) })
	for _, e := range fresh {
		line := fmt.Sprintf("%s/%s: %s %s: %s", strings.ToLower(e.InvolvedObject.Kind), e.InvolvedObject.Name, e.Type, e.Reason, e.Message)
		f.out.Log("event " + line)
		if e.Type == corev1.EventTypeWarning {
			f.warnings = append(f.warnings, line)
		}
	}
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// streamLogs starts reading the pod's log once its container has started;
// a stream that cannot open yet is tried again at the next poll.
func (f *follower) streamLogs(p *corev1.Pod) {
	cs := jobContainer(*p)
	if f.streaming[p.Name] || cs == nil || (cs.State.Running == nil && cs.State.Terminated == nil) {
		return
	}
	req := f.t.Client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: ContainerName, Follow: true})
	rc, err := req.Stream(f.logCtx)
	if err != nil {
		if !f.logErrs[p.Name] {
			f.logErrs[p.Name] = true
			f.out.Log(fmt.Sprintf("open the log of pod %s: %v (trying again)", p.Name, err))
		}
		return
	}
	f.streaming[p.Name] = true
	f.logsWG.Add(1)
	go func() {
		defer f.logsWG.Done()
		defer rc.Close()
		w := f.out.Stream("stdout")
		defer w.Close()
		if _, err := io.Copy(w, rc); err != nil && f.logCtx.Err() == nil {
			f.out.Log(fmt.Sprintf("read the log of pod %s: %v", p.Name, err))
		}
	}()
}
