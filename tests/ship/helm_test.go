package ship

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// chartDir is the umbrella chart.
func chartDir(t testing.TB) string {
	return filepath.Join(repoRoot(t), "deploy", "helm", "outpost")
}

// profiles are the umbrella's values files and the workloads each installs.
var profiles = []struct {
	name        string
	deployments []string // charts installed as a Deployment
	statefulSet []string // charts installed as a StatefulSet
	absent      []string // charts the profile leaves out
}{
	{name: "vendor", deployments: []string{"scheduler", "account-migrator"}, statefulSet: []string{"broker"}, absent: []string{"ingestion-runner", "k8s-watcher"}},
	{name: "customer", deployments: []string{"ingestion-runner", "k8s-watcher"}, absent: []string{"scheduler", "account-migrator", "broker"}},
	{name: "dev", deployments: []string{"scheduler", "account-migrator", "ingestion-runner", "k8s-watcher"}, statefulSet: []string{"broker"}},
}

func TestHelmLint(t *testing.T) {
	helm := helmBinary(t)
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			out := mustRun(t, nil, helm, "lint", "--strict", "--with-subcharts", chartDir(t), "-f", filepath.Join(chartDir(t), "values-"+p.name+".yaml"))
			require.Contains(t, out, "0 chart(s) failed")
		})
	}
}

// TestHelmBrokenValues: values.schema.json refuses typos, wrong types and
// bad enums in every chart, and the templates refuse what the schema cannot
// express.
func TestHelmBrokenValues(t *testing.T) {
	helm := helmBinary(t)
	tests := []struct {
		name string
		set  []string
		want string
	}{
		{name: "unknown top-level key", set: []string{"schedular.enabled=true"}, want: "schedular"},
		{name: "unknown global key", set: []string{"global.stak=x"}, want: "stak"},
		{name: "unknown scheduler key", set: []string{"scheduler.replicsa=2"}, want: "replicsa"},
		{name: "wrong type", set: []string{"scheduler.replicas=two"}, want: "replicas"},
		{name: "bad stack", set: []string{"global.stack=a.b"}, want: "stack"},
		{name: "credentials in the broker url", set: []string{"global.broker.url=nats://u:p@host:4222"}, want: "url"},
		{name: "bad pool", set: []string{"ingestion-runner.enabled=true", "ingestion-runner.pool=no spaces"}, want: "pool"},
		{name: "unknown credential", set: []string{"ingestion-runner.enabled=true", "ingestion-runner.credentials.password.existingSecret=x"}, want: "password"},
		{name: "credential without key", set: []string{"k8s-watcher.enabled=true", "k8s-watcher.credentials.kubeconfigKey.key="}, want: "key"},
		{name: "bad rbac scope", set: []string{"k8s-watcher.enabled=true", "k8s-watcher.rbac.scope=everything"}, want: "scope"},
		{name: "bad verb", set: []string{"k8s-watcher.enabled=true", "k8s-watcher.rbac.verbs={get,impersonate}"}, want: "verbs"},
		{name: "omitKinds without kinds", set: []string{"k8s-watcher.enabled=true", "k8s-watcher.rbac.omitKinds={secrets}"}, want: "rbac.omitKinds needs rbac.kinds"},
		{name: "bad pull policy", set: []string{"broker.image.pullPolicy=Sometimes"}, want: "pullPolicy"},
		{name: "broker knows no credentials", set: []string{"broker.credentials.brokerUrl.existingSecret=x"}, want: "brokerUrl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"template", "broken", chartDir(t)}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			out, err := run(t, nil, helm, args...)
			require.Error(t, err, "helm template accepted %v:\n%s", tt.set, out)
			require.Contains(t, out, tt.want)
		})
	}
}

// TestHelmInstall installs each profile for real into the test
// kube-apiserver (which rejects unknown fields and wrong types that a
// client-side render lets through), then checks the objects. The apiserver
// has no kubelet: nothing runs, the objects are what is checked.
func TestHelmInstall(t *testing.T) {
	helm := helmBinary(t)
	cluster := kubetest.Shared(t)
	client := cluster.Client()
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			ns := cluster.CreateNamespace(t)
			release := "o-" + p.name
			out := mustRun(t, nil, helm, "install", release, chartDir(t),
				"--kubeconfig", cluster.Kubeconfig, "--namespace", ns,
				"-f", filepath.Join(chartDir(t), "values-"+p.name+".yaml"), "--timeout", "2m")
			require.Contains(t, out, "STATUS: deployed")
			ctx := context.Background()

			for _, chart := range p.deployments {
				d, err := client.AppsV1().Deployments(ns).Get(ctx, release+"-"+chart, metav1.GetOptions{})
				require.NoError(t, err, chart)
				checkPodSpec(t, chart, d.Spec.Template.Spec)
				checkConfig(t, client, ns, release, chart)
				_, err = client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, release+"-"+chart, metav1.GetOptions{})
				if p.name == "dev" && (chart == "ingestion-runner" || chart == "k8s-watcher") {
					require.Error(t, err, "dev turns the agents' PodDisruptionBudget off")
				} else {
					require.NoError(t, err, chart)
				}
				np, err := client.NetworkingV1().NetworkPolicies(ns).Get(ctx, release+"-"+chart, metav1.GetOptions{})
				require.NoError(t, err, chart)
				require.Len(t, np.Spec.Ingress, 1, "one ingress rule: the chart's own port")
				require.Len(t, np.Spec.Ingress[0].Ports, 1)
			}
			for _, chart := range p.statefulSet {
				s, err := client.AppsV1().StatefulSets(ns).Get(ctx, release+"-"+chart, metav1.GetOptions{})
				require.NoError(t, err, chart)
				checkPodSpec(t, chart, s.Spec.Template.Spec)
				require.Len(t, s.Spec.VolumeClaimTemplates, 1, "the JetStream data volume")
				_, err = client.CoreV1().Services(ns).Get(ctx, release+"-"+chart, metav1.GetOptions{})
				require.NoError(t, err)
			}
			for _, chart := range p.absent {
				_, err := client.AppsV1().Deployments(ns).Get(ctx, release+"-"+chart, metav1.GetOptions{})
				require.Error(t, err, "%s is not in the %s profile", chart, p.name)
			}
			if p.name == "customer" {
				checkCustomer(t, client, ns, release)
			}
			// Two releases in one namespace do not collide: a second one of
			// the same profile installs beside the first.
			if p.name == "customer" {
				out := mustRun(t, nil, helm, "install", release+"-b", chartDir(t),
					"--kubeconfig", cluster.Kubeconfig, "--namespace", ns,
					"-f", filepath.Join(chartDir(t), "values-"+p.name+".yaml"), "--set", "global.stack=second")
				require.Contains(t, out, "STATUS: deployed")
				_, err := client.RbacV1().ClusterRoles().Get(ctx, release+"-b-k8s-watcher-"+ns, metav1.GetOptions{})
				require.NoError(t, err, "each release has a ClusterRole of its own")
				cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, release+"-b-ingestion-runner", metav1.GetOptions{})
				require.NoError(t, err)
				require.Contains(t, cm.Data["config.yaml"], "stack: second")
				cm, err = client.CoreV1().ConfigMaps(ns).Get(ctx, release+"-ingestion-runner", metav1.GetOptions{})
				require.NoError(t, err)
				require.Contains(t, cm.Data["config.yaml"], "stack: outpost", "the second release left the first one's stack alone")
			}
			mustRun(t, nil, helm, "uninstall", release, "--kubeconfig", cluster.Kubeconfig, "--namespace", ns)
		})
	}
}

// checkPodSpec: restricted pod security, probes on /healthz and /readyz,
// resources.
func checkPodSpec(t *testing.T, chart string, spec corev1.PodSpec) {
	t.Helper()
	require.NotNil(t, spec.SecurityContext.RunAsNonRoot)
	require.True(t, *spec.SecurityContext.RunAsNonRoot)
	require.Equal(t, int64(65532), *spec.SecurityContext.RunAsUser)
	require.Equal(t, corev1.SeccompProfileTypeRuntimeDefault, spec.SecurityContext.SeccompProfile.Type)
	require.Len(t, spec.Containers, 1)
	c := spec.Containers[0]
	require.True(t, *c.SecurityContext.ReadOnlyRootFilesystem, chart)
	require.False(t, *c.SecurityContext.AllowPrivilegeEscalation, chart)
	require.Equal(t, []corev1.Capability{"ALL"}, c.SecurityContext.Capabilities.Drop)
	require.Equal(t, "/healthz", c.LivenessProbe.HTTPGet.Path)
	require.Equal(t, "/readyz", c.ReadinessProbe.HTTPGet.Path)
	require.False(t, c.Resources.Requests.Cpu().IsZero(), chart)
	require.False(t, c.Resources.Limits.Memory().IsZero(), chart)
	// No credential value in the spec: only references and file paths.
	for _, e := range c.Env {
		require.NotContains(t, e.Value, "://", "%s: env %s carries a URL", chart, e.Name)
	}
}

// checkConfig: the ConfigMap is the service's configuration file, with the
// listen address off loopback, the stack and the broker.
func checkConfig(t *testing.T, client kubernetes.Interface, ns, release, chart string) {
	t.Helper()
	cm, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), release+"-"+chart, metav1.GetOptions{})
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &cfg))
	broker, ok := cfg["broker"].(map[string]any)
	require.True(t, ok, "%s config has a broker section:\n%s", chart, cm.Data["config.yaml"])
	require.Equal(t, "outpost", broker["stack"])
	require.NotEmpty(t, broker["url"])
	addr, _ := cfg["listen"].(string)
	if addr == "" {
		addr, _ = cfg["ops_addr"].(string)
	}
	require.True(t, strings.HasPrefix(addr, "0.0.0.0:"), "%s listens on %q", chart, addr)
}

// checkCustomer: the agents read their broker URL and keys from mounted
// Secrets, the runner's job secrets are one folder, the watcher has its
// ClusterRole with the granted verbs.
func checkCustomer(t *testing.T, client kubernetes.Interface, ns, release string) {
	t.Helper()
	ctx := context.Background()
	runner, err := client.AppsV1().Deployments(ns).Get(ctx, release+"-ingestion-runner", metav1.GetOptions{})
	require.NoError(t, err)
	env := envOf(runner)
	require.Equal(t, "/var/run/secrets/outpost/brokerUrl/url", env["OUTPOST_BROKER_URL_FILE"])
	require.Contains(t, env, "OUTPOST_RUNNER_ID")
	var projected []string
	for _, v := range runner.Spec.Template.Spec.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				projected = append(projected, s.Secret.Name)
			}
		}
	}
	require.Equal(t, []string{"outpost-job-secrets"}, projected)
	cm, err := client.CoreV1().ConfigMaps(ns).Get(ctx, release+"-ingestion-runner", metav1.GetOptions{})
	require.NoError(t, err)
	require.Contains(t, cm.Data["config.yaml"], "dir: /var/run/secrets/outpost/job-secrets")
	require.Contains(t, cm.Data["config.yaml"], "pool: remote")

	watcher, err := client.AppsV1().Deployments(ns).Get(ctx, release+"-k8s-watcher", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, "/var/run/secrets/outpost/kubeconfigKey/key", envOf(watcher)["OUTPOST_KUBECONFIG_KEY_FILE"])
	role, err := client.RbacV1().ClusterRoles().Get(ctx, release+"-k8s-watcher-"+ns, metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, []string{"get", "list", "watch", "create", "update", "patch", "delete"}, role.Rules[0].Verbs)
	_, err = client.RbacV1().ClusterRoleBindings().Get(ctx, release+"-k8s-watcher-"+ns, metav1.GetOptions{})
	require.NoError(t, err)

	// Agents: ingress only on the ops port; egress DNS, broker, Kubernetes
	// API (watcher) and the declared destinations.
	np, err := client.NetworkingV1().NetworkPolicies(ns).Get(ctx, release+"-ingestion-runner", metav1.GetOptions{})
	require.NoError(t, err)
	require.Equal(t, int32(9091), np.Spec.Ingress[0].Ports[0].Port.IntVal)
	var egressPorts []int32
	for _, r := range np.Spec.Egress {
		for _, p := range r.Ports {
			egressPorts = append(egressPorts, p.Port.IntVal)
		}
	}
	require.ElementsMatch(t, []int32{53, 53, 4222, 5432}, egressPorts)
}

func envOf(d *appsv1.Deployment) map[string]string {
	env := map[string]string{}
	for _, e := range d.Spec.Template.Spec.Containers[0].Env {
		env[e.Name] = e.Value
	}
	return env
}

// TestHelmWatcherRoles renders the watcher's RBAC choices: a Role per
// namespace, and kinds less omitKinds grouped by API group.
func TestHelmWatcherRoles(t *testing.T) {
	helm := helmBinary(t)
	tests := []struct {
		name string
		set  []string
		want []string
		not  []string
	}{
		{
			name: "namespaced roles",
			set:  []string{"k8s-watcher.rbac.scope=namespace", "k8s-watcher.rbac.namespaces={apps,jobs}"},
			want: []string{"kind: Role\n", "namespace: apps", "namespace: jobs", "kind: RoleBinding"},
			not:  []string{"kind: ClusterRole"},
		},
		{
			name: "kinds less omitKinds",
			set:  []string{"k8s-watcher.rbac.kinds={configmaps,secrets,deployments.apps}", "k8s-watcher.rbac.omitKinds={secrets}"},
			want: []string{"- configmaps", "- deployments", "- apps"},
			not:  []string{"- secrets", "'*'"},
		},
		{
			name: "every kind by default",
			want: []string{"kind: ClusterRole\n", "'*'"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := []string{"template", "w", chartDir(t), "--show-only", "charts/k8s-watcher/templates/rbac.yaml", "--set", "k8s-watcher.enabled=true"}
			for _, s := range tt.set {
				args = append(args, "--set", s)
			}
			out := mustRun(t, nil, helm, args...)
			for _, w := range tt.want {
				require.Contains(t, out, w)
			}
			for _, n := range tt.not {
				require.NotContains(t, out, n)
			}
		})
	}
}

// TestHelmServiceMonitor: off by default; on, agents get a metrics Service
// and a ServiceMonitor.
func TestHelmServiceMonitor(t *testing.T) {
	helm := helmBinary(t)
	out := mustRun(t, nil, helm, "template", "m", chartDir(t), "-f", filepath.Join(chartDir(t), "values-customer.yaml"))
	require.NotContains(t, out, "kind: ServiceMonitor")
	require.NotContains(t, out, "kind: Service\n")
	out = mustRun(t, nil, helm, "template", "m", chartDir(t), "-f", filepath.Join(chartDir(t), "values-customer.yaml"),
		"--set", "ingestion-runner.serviceMonitor.enabled=true")
	require.Contains(t, out, "kind: ServiceMonitor")
	require.Contains(t, out, "kind: Service\n")
	require.Contains(t, out, "path: /metrics")
}

// TestChartFiles: every subchart carries the same shared helpers, a schema,
// a README that lists every value, and a helm test hook.
func TestChartFiles(t *testing.T) {
	charts := []string{"scheduler", "account-migrator", "broker", "ingestion-runner", "k8s-watcher"}
	common, err := os.ReadFile(filepath.Join(chartDir(t), "charts", charts[0], "templates", "_common.tpl"))
	require.NoError(t, err)
	for _, c := range charts {
		t.Run(c, func(t *testing.T) {
			dir := filepath.Join(chartDir(t), "charts", c)
			got, err := os.ReadFile(filepath.Join(dir, "templates", "_common.tpl"))
			require.NoError(t, err)
			require.Equal(t, string(common), string(got), "templates/_common.tpl differs from the scheduler's copy")
			require.FileExists(t, filepath.Join(dir, "values.schema.json"))
			require.FileExists(t, filepath.Join(dir, "templates", "tests", "test-connection.yaml"))
			raw, err := os.ReadFile(filepath.Join(dir, "values.yaml"))
			require.NoError(t, err)
			var values map[string]any
			require.NoError(t, yaml.Unmarshal(raw, &values))
			readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
			require.NoError(t, err)
			for _, leaf := range leaves("", values) {
				require.Contains(t, string(readme), "| `"+leaf+"` |", "README.md does not list %s", leaf)
			}
		})
	}
}

// leaves are the dotted paths of the values that are not maps with keys.
func leaves(prefix string, m map[string]any) []string {
	var out []string
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok && len(sub) > 0 {
			out = append(out, leaves(prefix+k+".", sub)...)
			continue
		}
		out = append(out, prefix+k)
	}
	return out
}

// TestHelmInstallRejects: what the schemas leave open (free-form Kubernetes
// fields such as extraEnv or tolerations) is checked by the apiserver at
// install time; an unknown field or a wrong type fails the install.
func TestHelmInstallRejects(t *testing.T) {
	helm := helmBinary(t)
	cluster := kubetest.Shared(t)
	tests := []struct {
		name string
		json string
		want string
	}{
		{name: "unknown field", json: `scheduler.extraEnv=[{"name":"A","valeu":"b"}]`, want: "valeu"},
		{name: "wrong type", json: `scheduler.tolerations=[{"key":"a","tolerationSeconds":"soon"}]`, want: "tolerationSeconds"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := cluster.CreateNamespace(t)
			out, err := run(t, nil, helm, "install", "bad", chartDir(t), "--kubeconfig", cluster.Kubeconfig, "--namespace", ns,
				"-f", filepath.Join(chartDir(t), "values-vendor.yaml"), "--set-json", tt.json)
			require.Error(t, err, "the install was accepted:\n%s", out)
			require.Contains(t, out, tt.want)
		})
	}
}
