package app_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/testenv"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/app"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/config"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/runner"
)

// secretsManager answers GetSecretValue in the Secrets Manager JSON
// protocol from a fixed map.
func secretsManager(t *testing.T, values map[string]string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in struct{ SecretId string }
		_ = json.NewDecoder(r.Body).Decode(&in)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		v, ok := values[in.SecretId]
		if r.Header.Get("X-Amz-Target") != "secretsmanager.GetSecretValue" || !ok {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"__type":"ResourceNotFoundException","message":"not found"}`))
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"Name": in.SecretId, "SecretString": v, "VersionId": "v1"})
	}))
	t.Cleanup(srv.Close)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "example")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	return srv.URL
}

// TestSecretFromAWSNeverLeaves runs a job whose secret comes from Secrets
// Manager and which prints it and fails: the value is in no event, no
// runner log line and no metric.
func TestSecretFromAWSNeverLeaves(t *testing.T) {
	const value = "aws-t0k3n-value"
	e := newEnv(t)
	cfg := runnerConfig(t, "r1")
	cfg.Secrets.AWS = config.AWSSecrets{Region: "eu-west-1", Endpoint: secretsManager(t, map[string]string{"outpost/API_TOKEN": value}), Prefix: "outpost/"}
	require.NoError(t, cfg.Validate())

	logs := &testenv.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	conn := e.connect(t, cfg.Settings)
	r, err := app.New(cfg, conn, queue.NewSubjects(cfg.Broker.Stack), log, runner.NewMetrics(reg))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(30 * time.Second):
			t.Error("runner did not stop")
		}
	})
	require.Eventually(t, func() bool { return r.Ready() == nil }, 10*time.Second, 5*time.Millisecond)

	e.dispatch(t, "job-secret", command(`echo "token $API_TOKEN"; echo "$API_TOKEN" >&2; exit 4`, func(s *jobsv1.JobSpec) {
		s.GetTask().GetCommand().Env = map[string]string{"API_TOKEN": "${API_TOKEN}"}
		s.GetTask().GetCommand().Args = append(s.GetTask().GetCommand().Args, "${API_TOKEN}")
		s.Retry = &jobsv1.RetryPolicy{MaxAttempts: 1}
	}))
	e.waitStates(t, "job-secret", "RUNNING@1/r1", "FAILED@1/r1")

	var texts []string
	for _, l := range e.logLines(t, "job-secret") {
		texts = append(texts, l.GetText())
	}
	require.Contains(t, texts, "token ****")
	for _, m := range append(e.status.on(""), e.logs.on("")...) {
		require.NotContains(t, string(m.Data), value, m.Subject)
	}
	require.Contains(t, logs.String(), `"msg":"secret providers","providers":["aws"]`)
	require.NotContains(t, logs.String(), value)
	// The attempt is counted as finished just after its status is sent.
	var metrics strings.Builder
	require.Eventually(t, func() bool {
		metrics.Reset()
		mfs, err := reg.Gather()
		if err != nil {
			return false
		}
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&metrics, mf); err != nil {
				return false
			}
		}
		return strings.Contains(metrics.String(), "outpost_runner_jobs_finished_total")
	}, 10*time.Second, 5*time.Millisecond, "no finished job counted")
	require.NotContains(t, metrics.String(), value)
}

func TestProvidersInOrder(t *testing.T) {
	url := secretsManager(t, nil)
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  config.Secrets
		want []string
	}{
		{"nothing configured", config.Default().Secrets, nil},
		{"default order", config.Secrets{
			Order: config.Default().Secrets.Order, EnvPrefixes: []string{"X_"}, Dir: dir, CacheTTL: time.Second,
			AWS: config.AWSSecrets{Endpoint: url, Region: "eu-west-1", Mapping: []string{"A=b"}},
		}, []string{"env", "dir", "aws"}},
		{"configured order, unlisted left out", config.Secrets{
			Order: []string{"aws", "files"}, EnvPrefixes: []string{"X_"}, Dir: dir,
			AWS: config.AWSSecrets{Endpoint: url, Region: "eu-west-1", Prefix: "p/"},
		}, []string{"aws", "dir"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps, err := app.Providers(context.Background(), tc.cfg)
			require.NoError(t, err)
			var got []string
			for _, p := range ps {
				got = append(got, p.Name())
			}
			require.Equal(t, tc.want, got)
		})
	}
}
