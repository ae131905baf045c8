package ship

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestHelmTracingOff: without an OTLP endpoint no profile renders an OTEL_
// variable or an egress rule for a collector.
func TestHelmTracingOff(t *testing.T) {
	helm := helmBinary(t)
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			out := mustRun(t, nil, helm, "template", "r", chartDir(t), "-f", filepath.Join(chartDir(t), "values-"+p.name+".yaml"))
			require.NotContains(t, out, "OTEL_")
			require.NotContains(t, out, "K8S_POD_NAME")
		})
	}
}

// TestHelmTracingBrokenValues: the schemas refuse tracing values the
// services (libs/telemetry) or the OTEL_* syntax cannot take.
func TestHelmTracingBrokenValues(t *testing.T) {
	helm := helmBinary(t)
	tests := []struct {
		name string
		set  []string
		want string
	}{
		{name: "unknown protocol", set: []string{"scheduler.otel.protocol=http/json"}, want: "protocol"},
		{name: "unknown global protocol", set: []string{"global.otel.protocol=thrift"}, want: "protocol"},
		{name: "credentials in the endpoint", set: []string{"global.otel.exporterEndpoint=http://u:p@collector:4318"}, want: "exporterEndpoint"},
		{name: "endpoint without scheme", set: []string{"scheduler.otel.exporterEndpoint=collector:4318"}, want: "exporterEndpoint"},
		{name: "attribute with a comma", set: []string{"scheduler.otel.resourceAttributes.team=a\\,b"}, want: "resourceAttributes"},
		{name: "unknown sampler", set: []string{"global.otel.sampler=sometimes"}, want: "sampler"},
		{name: "ratio above 1", set: []string{"scheduler.otel.samplerArg=2"}, want: "samplerArg"},
		{name: "unknown otel key", set: []string{"scheduler.otel.endpoint=http://c:4318"}, want: "endpoint"},
		{name: "broker does not trace", set: []string{"broker.otel.exporterEndpoint=http://c:4318"}, want: "otel"},
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

// TestHelmTracingInstall installs the dev profile with tracing on for real
// into the test kube-apiserver (which checks the downward-API and Secret
// references): every service gets the standard OTEL_* variables from
// global.otel, a chart's own otel values override them, the NetworkPolicy
// lets the pods reach the collector's port, and the broker is left alone.
func TestHelmTracingInstall(t *testing.T) {
	helm := helmBinary(t)
	cluster := kubetest.Shared(t)
	client := cluster.Client()
	ns := cluster.CreateNamespace(t)
	release := "o-otel"
	out := mustRun(t, nil, helm, "install", release, chartDir(t),
		"--kubeconfig", cluster.Kubeconfig, "--namespace", ns,
		"-f", filepath.Join(chartDir(t), "values-dev.yaml"), "--timeout", "2m",
		"--set", "global.otel.exporterEndpoint=http://otel-collector.observability:4318",
		"--set", "global.otel.serviceNamePrefix=outpost-",
		"--set", `global.otel.resourceAttributes.deployment\.environment\.name=prod`,
		"--set", "ingestion-runner.otel.exporterEndpoint=https://otlp.example.com",
		"--set", "ingestion-runner.otel.protocol=grpc",
		"--set", "ingestion-runner.otel.sampler=parentbased_traceidratio",
		"--set", "ingestion-runner.otel.samplerArg=0",
		"--set", "ingestion-runner.otel.headers.existingSecret=otel-headers")
	require.Contains(t, out, "STATUS: deployed")
	ctx := context.Background()

	tests := []struct {
		chart    string
		endpoint string
		port     int32
		want     map[string]string
		absent   []string
	}{
		{chart: "scheduler", endpoint: "http://otel-collector.observability:4318", port: 4318,
			absent: []string{"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_HEADERS"}},
		{chart: "account-migrator", endpoint: "http://otel-collector.observability:4318", port: 4318},
		{chart: "k8s-watcher", endpoint: "http://otel-collector.observability:4318", port: 4318},
		{chart: "ingestion-runner", endpoint: "https://otlp.example.com", port: 443, want: map[string]string{
			"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
			"OTEL_TRACES_SAMPLER":         "parentbased_traceidratio",
			"OTEL_TRACES_SAMPLER_ARG":     "0",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.chart, func(t *testing.T) {
			d, err := client.AppsV1().Deployments(ns).Get(ctx, release+"-"+tt.chart, metav1.GetOptions{})
			require.NoError(t, err)
			env := envOf(d)
			require.Equal(t, tt.endpoint, env["OTEL_EXPORTER_OTLP_ENDPOINT"])
			require.Equal(t, "outpost-"+tt.chart, env["OTEL_SERVICE_NAME"])
			require.Equal(t, "deployment.environment.name=prod,k8s.pod.name=$(K8S_POD_NAME),k8s.namespace.name=$(K8S_NAMESPACE_NAME)",
				env["OTEL_RESOURCE_ATTRIBUTES"])
			for k, v := range tt.want {
				require.Equal(t, v, env[k], k)
			}
			for _, k := range tt.absent {
				require.NotContains(t, env, k)
			}
			refs := map[string]string{}
			for _, e := range d.Spec.Template.Spec.Containers[0].Env {
				switch {
				case e.ValueFrom == nil:
				case e.ValueFrom.FieldRef != nil:
					refs[e.Name] = e.ValueFrom.FieldRef.FieldPath
				case e.ValueFrom.SecretKeyRef != nil:
					refs[e.Name] = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
				}
			}
			require.Equal(t, "metadata.name", refs["K8S_POD_NAME"])
			require.Equal(t, "metadata.namespace", refs["K8S_NAMESPACE_NAME"])
			if tt.chart == "ingestion-runner" {
				require.Equal(t, "otel-headers/headers", refs["OTEL_EXPORTER_OTLP_HEADERS"])
			} else {
				require.NotContains(t, refs, "OTEL_EXPORTER_OTLP_HEADERS")
			}

			np, err := client.NetworkingV1().NetworkPolicies(ns).Get(ctx, release+"-"+tt.chart, metav1.GetOptions{})
			require.NoError(t, err)
			var egressPorts []int32
			for _, r := range np.Spec.Egress {
				for _, p := range r.Ports {
					egressPorts = append(egressPorts, p.Port.IntVal)
				}
			}
			require.Contains(t, egressPorts, tt.port, "egress to the collector's port")
		})
	}

	t.Run("broker", func(t *testing.T) {
		s, err := client.AppsV1().StatefulSets(ns).Get(ctx, release+"-broker", metav1.GetOptions{})
		require.NoError(t, err)
		for _, e := range s.Spec.Template.Spec.Containers[0].Env {
			require.NotContains(t, e.Name, "OTEL_")
		}
		np, err := client.NetworkingV1().NetworkPolicies(ns).Get(ctx, release+"-broker", metav1.GetOptions{})
		require.NoError(t, err)
		for _, r := range np.Spec.Egress {
			for _, p := range r.Ports {
				require.NotEqual(t, int32(4318), p.Port.IntVal)
			}
		}
	})
	mustRun(t, nil, helm, "uninstall", release, "--kubeconfig", cluster.Kubeconfig, "--namespace", ns)
}
