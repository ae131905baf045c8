package ship

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/tests/harness"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// TestChartConfigsRun: the configuration file each chart renders is one
// its service accepts. Every service of the dev profile starts with its
// rendered file and the credentials as the charts give them (files named
// by OUTPOST_*_FILE), against a real broker, and becomes ready. Only the
// addresses differ from a pod: loopback ports instead of the pod's, and the
// broker URL (from its file) pointing at the test broker.
func TestChartConfigsRun(t *testing.T) {
	helm := helmBinary(t)
	cluster := kubetest.Shared(t)
	broker := natstest.RunServer(t)
	dir := t.TempDir()
	writeFile := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content+"\n"), 0o600))
		return p
	}
	brokerURLFile := writeFile("broker-url", broker.ClientURL())
	keyFile := writeFile("kubeconfig-key", base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32))))
	// The signing key and its public half, as the charts' signingKey and
	// trustedKeys credentials mount them (the dev values name key id "dev").
	signingKey := harness.NewSigningKey(t, "dev")
	trustedFile := writeFile("trusted-keys", signingKey.Signer.Public().String())

	services := []struct {
		chart, addrVar string
		env            map[string]string
	}{
		{chart: "scheduler", addrVar: "OUTPOST_LISTEN", env: map[string]string{"OUTPOST_SIGNING_KEY_FILE": signingKey.File}},
		{chart: "account-migrator", addrVar: "OUTPOST_LISTEN", env: map[string]string{"OUTPOST_KUBECONFIG_KEY_FILE": keyFile, "OUTPOST_SIGNING_KEY_FILE": signingKey.File}},
		{chart: "ingestion-runner", addrVar: "OUTPOST_OPS_ADDR", env: map[string]string{"OUTPOST_RUNNER_ID": "chart-runner-0", "OUTPOST_SIGNING_TRUSTED_KEYS_FILE": trustedFile}},
		{chart: "k8s-watcher", addrVar: "OUTPOST_OPS_ADDR", env: map[string]string{
			"OUTPOST_KUBECONFIG_KEY_FILE": keyFile, "OUTPOST_WATCHER_ID": "chart-watcher-0", "OUTPOST_KUBECONFIG": cluster.Kubeconfig,
			"OUTPOST_SIGNING_TRUSTED_KEYS_FILE": trustedFile,
		}},
	}
	for _, s := range services {
		t.Run(s.chart, func(t *testing.T) {
			out := mustRun(t, nil, helm, "template", "t", chartDir(t), "-f", filepath.Join(chartDir(t), "values-dev.yaml"),
				"--show-only", "charts/"+s.chart+"/templates/configmap.yaml")
			var cm struct {
				Data map[string]string `yaml:"data"`
			}
			require.NoError(t, yaml.Unmarshal([]byte(out), &cm))
			cfg := writeFile(s.chart+".yaml", cm.Data["config.yaml"])
			addr := testenv.FreeAddr(t)
			env := map[string]string{"OUTPOST_BROKER_URL_FILE": brokerURLFile, s.addrVar: addr}
			for k, v := range s.env {
				env[k] = v
			}
			p := harness.Start(t, s.chart, s.chart, env, "-config", cfg)
			require.NoError(t, p.Proc.WaitReady(90*time.Second, testenv.HTTPProbe(nil, "http://"+addr+"/readyz")),
				"%s never became ready with its chart's configuration:\n%s", s.chart, p.Logs())
		})
	}
}
