package kubejob

import (
	"bytes"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	authorizationv1 "k8s.io/api/authorization/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/redact"
)

// The test apiserver has no kubelet and no controllers: the tests play
// both. They create the Job's pod, move pod and Job status through the
// API, and serve the pod's log from fakeKubelet, which the apiserver
// reaches through the Node object like a real kubelet's.

// nodeName is the Node every test pod is bound to.
const nodeName = "fake-kubelet"

var (
	kubelet     *fakeKubelet
	clusterOnce sync.Once
	cluster     *kubetest.Cluster
	clusterErr  error
)

func TestMain(m *testing.M) {
	kubelet = newFakeKubelet()
	code := m.Run()
	if cluster != nil {
		if err := cluster.Stop(); err != nil && code == 0 {
			fmt.Fprintf(os.Stderr, "stop cluster: %v\n", err)
			code = 1
		}
	}
	kubelet.close()
	os.Exit(testenv.CheckLeaks(code))
}

// testCluster is the package's cluster, started on first use with the
// fake kubelet's certificate as the kubelet CA.
func testCluster(t *testing.T) *kubetest.Cluster {
	t.Helper()
	kubetest.SkipIfNotInstalled(t)
	clusterOnce.Do(func() {
		cluster, clusterErr = kubetest.Launch(kubetest.Options{APIServerArgs: []string{
			"--kubelet-certificate-authority=" + kubelet.caFile,
			"--kubelet-preferred-address-types=InternalIP",
		}})
	})
	require.NoError(t, clusterErr)
	return cluster
}

// fakeKubelet serves /containerLogs/<ns>/<pod>/<container> over TLS.
type fakeKubelet struct {
	srv    *httptest.Server
	caFile string
	dir    string

	mu   sync.Mutex
	logs map[string]*podLog // by "ns/pod"
}

type podLog struct {
	text string
	// hold keeps the stream open after text, as for a running container,
	// until closed or the request ends.
	hold chan struct{}
}

func newFakeKubelet() *fakeKubelet {
	k := &fakeKubelet{logs: map[string]*podLog{}}
	// httptest listens on 127.0.0.1; its certificate names that address.
	k.srv = httptest.NewTLSServer(http.HandlerFunc(k.serve))
	dir, err := os.MkdirTemp("", "kubejob-kubelet-")
	if err != nil {
		panic(err)
	}
	k.dir = dir
	k.caFile = filepath.Join(dir, "kubelet-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: k.srv.Certificate().Raw})
	if err := os.WriteFile(k.caFile, pemBytes, 0o600); err != nil {
		panic(err)
	}
	return k
}

func (k *fakeKubelet) close() {
	k.mu.Lock()
	for _, l := range k.logs {
		if l.hold != nil {
			select {
			case <-l.hold:
			default:
				close(l.hold)
			}
		}
	}
	k.mu.Unlock()
	k.srv.Close()
	os.RemoveAll(k.dir)
}

func (k *fakeKubelet) port() int32 {
	u, _ := url.Parse(k.srv.URL)
	p, _ := strconv.Atoi(u.Port())
	return int32(p)
}

func (k *fakeKubelet) setLog(ns, pod string, l *podLog) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.logs[ns+"/"+pod] = l
}

func (k *fakeKubelet) serve(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, "/containerLogs/"), "/")
	if len(parts) != 3 || parts[2] != ContainerName {
		http.NotFound(w, r)
		return
	}
	k.mu.Lock()
	l := k.logs[parts[0]+"/"+parts[1]]
	k.mu.Unlock()
	if l == nil {
		http.Error(w, "container is waiting to start", http.StatusBadRequest)
		return
	}
	_, _ = io.WriteString(w, l.text)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	if l.hold != nil && r.URL.Query().Get("follow") == "true" {
		select {
		case <-l.hold:
		case <-r.Context().Done():
		}
	}
}

// env is one test's namespace, the runner's scoped client and the admin
// client the test plays the kubelet and the Job controller with.
type env struct {
	ns     string
	admin  kubernetes.Interface
	runner kubernetes.Interface
}

// runnerRules are the runner's permissions in its namespace, as the
// README's RBAC note lists them.
var runnerRules = []rbacv1.PolicyRule{
	{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"create", "get", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
	{APIGroups: []string{""}, Resources: []string{"pods/log"}, Verbs: []string{"get"}},
	{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"create", "update", "delete"}},
	{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list"}},
}

func newEnv(t *testing.T) *env {
	t.Helper()
	c := testCluster(t)
	ns := c.CreateNamespace(t)
	admin := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: nodeName},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		require.NoError(t, err)
	}
	node, err := admin.CoreV1().Nodes().Get(ctx, nodeName, metav1.GetOptions{})
	require.NoError(t, err)
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = kubelet.port()
	_, err = admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{})
	require.NoError(t, err)

	_, err = admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "runner"}, Rules: runnerRules}, metav1.CreateOptions{})
	require.NoError(t, err)
	kubeconfig := c.ServiceAccountKubeconfig(t, ns, "runner")
	_, err = admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "runner"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "runner"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "runner", Namespace: ns}},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
	runner, err := NewClient(kubeconfig)
	require.NoError(t, err)
	// The authorizer sees a new binding a moment later.
	require.Eventually(t, func() bool {
		for _, r := range runnerRules {
			res, sub, _ := strings.Cut(r.Resources[0], "/")
			review, err := runner.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace: ns, Group: r.APIGroups[0], Resource: res, Subresource: sub, Verb: r.Verbs[0],
				}},
			}, metav1.CreateOptions{})
			if err != nil || !review.Status.Allowed {
				return false
			}
		}
		return true
	}, 20*time.Second, 50*time.Millisecond, "the runner's Role is in force")
	return &env{ns: ns, admin: admin, runner: runner}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitJob waits for the runner to create the only Job of the namespace.
func (e *env) waitJob(t *testing.T) *batchv1.Job {
	t.Helper()
	var job *batchv1.Job
	require.Eventually(t, func() bool {
		list, err := e.admin.BatchV1().Jobs(e.ns).List(ctxT(t), metav1.ListOptions{})
		if err != nil || len(list.Items) == 0 {
			return false
		}
		job = &list.Items[0]
		return true
	}, 20*time.Second, 50*time.Millisecond, "the runner creates a Job")
	return job
}

// startPod is the Job controller creating the pod and the kubelet
// starting its container; log is what the container prints.
func (e *env) startPod(t *testing.T, job *batchv1.Job, log *podLog) *corev1.Pod {
	t.Helper()
	ctx := ctxT(t)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            job.Name + "-x1",
			Labels:          job.Spec.Template.Labels,
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(job, batchv1.SchemeGroupVersion.WithKind("Job"))},
		},
		Spec: *job.Spec.Template.Spec.DeepCopy(),
	}
	pod.Spec.NodeName = nodeName
	pod, err := e.admin.CoreV1().Pods(e.ns).Create(ctx, pod, metav1.CreateOptions{})
	require.NoError(t, err)
	if log != nil {
		kubelet.setLog(e.ns, pod.Name, log)
	}
	return e.podStatus(t, pod, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodRunning
		s.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName, Image: pod.Spec.Containers[0].Image,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: metav1.Now()}}}}
	})
}

// podStatus is the kubelet reporting the pod's status.
func (e *env) podStatus(t *testing.T, pod *corev1.Pod, set func(*corev1.PodStatus)) *corev1.Pod {
	t.Helper()
	p, err := e.admin.CoreV1().Pods(e.ns).Get(ctxT(t), pod.Name, metav1.GetOptions{})
	require.NoError(t, err)
	set(&p.Status)
	p, err = e.admin.CoreV1().Pods(e.ns).UpdateStatus(ctxT(t), p, metav1.UpdateOptions{})
	require.NoError(t, err)
	return p
}

// terminate is the kubelet reporting the container's exit.
func (e *env) terminate(t *testing.T, pod *corev1.Pod, code int32, reason string) *corev1.Pod {
	t.Helper()
	return e.podStatus(t, pod, func(s *corev1.PodStatus) {
		s.Phase = corev1.PodSucceeded
		if code != 0 {
			s.Phase = corev1.PodFailed
		}
		s.ContainerStatuses[0].State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, StartedAt: metav1.Now(), FinishedAt: metav1.Now(),
		}}
	})
}

// finishJob is the Job controller ending the Job: complete, or failed
// with reason.
func (e *env) finishJob(t *testing.T, job *batchv1.Job, failed bool, reason, message string) {
	t.Helper()
	j, err := e.admin.BatchV1().Jobs(e.ns).Get(ctxT(t), job.Name, metav1.GetOptions{})
	require.NoError(t, err)
	now := metav1.Now()
	if j.Status.StartTime == nil {
		j.Status.StartTime = &now
	}
	cond := func(typ batchv1.JobConditionType) batchv1.JobCondition {
		return batchv1.JobCondition{Type: typ, Status: corev1.ConditionTrue, Reason: reason, Message: message, LastProbeTime: now, LastTransitionTime: now}
	}
	if failed {
		j.Status.Failed = 1
		j.Status.Conditions = append(j.Status.Conditions, cond(batchv1.JobFailureTarget), cond(batchv1.JobFailed))
	} else {
		j.Status.Succeeded = 1
		j.Status.CompletionTime = &now
		j.Status.Conditions = append(j.Status.Conditions, cond(batchv1.JobSuccessCriteriaMet), cond(batchv1.JobComplete))
	}
	j.Status.Terminating = new(int32(0))
	j.Status.Ready = new(int32(0))
	_, err = e.admin.BatchV1().Jobs(e.ns).UpdateStatus(ctxT(t), j, metav1.UpdateOptions{})
	require.NoError(t, err)
}

// event is a component's event about obj.
func (e *env) event(t *testing.T, kind, name string, uid string, typ, reason, message string) {
	t.Helper()
	now := metav1.Now()
	_, err := e.admin.CoreV1().Events(e.ns).Create(ctxT(t), &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%s", name, strings.ToLower(reason))},
		InvolvedObject: corev1.ObjectReference{Kind: kind, Namespace: e.ns, Name: name, UID: types.UID(uid)},
		Type:           typ, Reason: reason, Message: message,
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
		Source: corev1.EventSource{Component: "kubelet", Host: nodeName},
	}, metav1.CreateOptions{})
	require.NoError(t, err)
}

// output is a tasks.Output that masks like the runner's log streamer.
type output struct {
	mu      sync.Mutex
	red     *redact.Redactor
	lines   []string
	streams bytes.Buffer
}

func newOutput() *output { return &output{red: redact.New()} }

type streamWriter struct{ o *output }

func (w streamWriter) Write(p []byte) (int, error) {
	w.o.mu.Lock()
	defer w.o.mu.Unlock()
	return w.o.streams.Write(p)
}
func (w streamWriter) Close() error { return nil }

func (o *output) Stream(string) io.WriteCloser { return streamWriter{o} }
func (o *output) Log(text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lines = append(o.lines, text)
}
func (o *output) Mask(values ...string) { o.red.Add(values...) }

// text is everything written, masked as it would leave the runner.
func (o *output) text() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.red.Redact(strings.Join(o.lines, "\n") + "\n" + o.streams.String())
}
