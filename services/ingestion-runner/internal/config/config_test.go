package config

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	secretsDir := t.TempDir()
	tests := []struct {
		name    string
		file    string
		env     map[string]string
		want    func(*Config)
		wantErr []string
	}{
		{
			name: "defaults with the required tenant",
			env:  map[string]string{"OUTPOST_TENANT": "acme"},
			want: func(c *Config) { c.Tenant = "acme" },
		},
		{
			name: "file then env",
			file: write("ok.yaml", `
tenant: acme
pool: remote
broker:
  url: nats://nats.internal:4222
  stack: staging
concurrency: 8
ack_wait: 10s
command:
  allowlist: [python3, /usr/bin/env]
  cancel_grace: 3s
secrets:
  env_prefixes: [OUTPOST_SECRET_]
  dir: `+secretsDir+`
logs:
  max_lines: 50
  interval: 1s
`),
			env: map[string]string{"OUTPOST_CONCURRENCY": "2", "OUTPOST_COMMAND_ALLOWLIST": "sh, true", "OUTPOST_RUNNER_ID": "r1"},
			want: func(c *Config) {
				c.Tenant, c.Pool, c.RunnerID = "acme", "remote", "r1"
				c.Broker.URL, c.Broker.Stack = "nats://nats.internal:4222", "staging"
				c.Concurrency, c.AckWait = 2, 10*time.Second
				c.Command.Allowlist, c.Command.CancelGrace = []string{"sh", "true"}, 3*time.Second
				c.Secrets.EnvPrefixes, c.Secrets.Dir = []string{"OUTPOST_SECRET_"}, secretsDir
				c.Logs.MaxLines, c.Logs.Interval = 50, time.Second
			},
		},
		{
			name: "remote secret providers",
			file: write("secrets.yaml", `
tenant: acme
secrets:
  order: [kubernetes, aws, files]
  cache_ttl: 10s
  kubernetes:
    namespace: outpost
    mapping: [PG_PASSWORD=pg/password]
    secrets: [runner-secrets]
    label_selector: outpost.dev/secrets=runner
  aws:
    region: eu-west-1
    mapping: ["API_TOKEN=prod/api#token"]
`),
			env: map[string]string{
				"OUTPOST_SECRETS_AWS_PREFIX": "outpost/", "OUTPOST_SECRETS_AWS_ENDPOINT": "http://127.0.0.1:4566",
				"OUTPOST_SECRETS_KUBERNETES_KUBECONFIG": "/etc/kube/config",
			},
			want: func(c *Config) {
				c.Tenant = "acme"
				c.Secrets.Order, c.Secrets.CacheTTL = []string{"kubernetes", "aws", "files"}, 10*time.Second
				c.Secrets.Kubernetes = KubernetesSecrets{
					Namespace: "outpost", Kubeconfig: "/etc/kube/config", Mapping: []string{"PG_PASSWORD=pg/password"},
					Secrets: []string{"runner-secrets"}, LabelSelector: "outpost.dev/secrets=runner",
				}
				c.Secrets.AWS = AWSSecrets{Region: "eu-west-1", Endpoint: "http://127.0.0.1:4566", Prefix: "outpost/", Mapping: []string{"API_TOKEN=prod/api#token"}}
			},
		},
		{
			name: "secret providers checked",
			env: map[string]string{
				"OUTPOST_TENANT": "acme", "OUTPOST_SECRETS_ORDER": "env,vault,env", "OUTPOST_SECRETS_CACHE_TTL": "-1s",
				"OUTPOST_SECRETS_KUBERNETES_MAPPING": "A=nokey", "OUTPOST_SECRETS_AWS_MAPPING": "B=",
			},
			wantErr: []string{
				`secrets.order entry "vault"`, `secrets.order lists "env" twice`, "secrets.cache_ttl -1s",
				`secrets.kubernetes.mapping: invalid secret mapping: "A=nokey" must be NAME=secret/key`,
				"secrets.kubernetes.namespace is required", `secrets.aws.mapping: invalid secret mapping: "B="`,
			},
		},
		{
			name:    "kubernetes needs something to read",
			env:     map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_SECRETS_KUBERNETES_NAMESPACE": "ns"},
			wantErr: []string{"secrets.kubernetes needs mapping, secrets or label_selector"},
		},
		{
			name: "kubernetes job task",
			file: write("kjob.yaml", `
tenant: acme
kubernetes_job:
  namespace: outpost-jobs
  user_service_accounts: [alice=ksa-alice, bob=ksa-bob]
  default_service_account: jobs-default
  poll_interval: 2s
`),
			env: map[string]string{"OUTPOST_KUBERNETES_JOB_PROJECT_SERVICE_ACCOUNTS": "analytics=ksa-analytics", "OUTPOST_KUBERNETES_JOB_KUBECONFIG": "/etc/kube/config"},
			want: func(c *Config) {
				c.Tenant = "acme"
				c.KubernetesJob = KubernetesJob{
					Namespace: "outpost-jobs", Kubeconfig: "/etc/kube/config",
					UserServiceAccounts: []string{"alice=ksa-alice", "bob=ksa-bob"}, ProjectServiceAccounts: []string{"analytics=ksa-analytics"},
					DefaultServiceAccount: "jobs-default", PollInterval: 2 * time.Second, TTLAfterFinished: 10 * time.Minute,
				}
			},
		},
		{
			name: "kubernetes job task checked",
			env: map[string]string{
				"OUTPOST_TENANT": "acme", "OUTPOST_KUBERNETES_JOB_NAMESPACE": "Jobs",
				"OUTPOST_KUBERNETES_JOB_USER_SERVICE_ACCOUNTS": "alice=KSA,bob", "OUTPOST_KUBERNETES_JOB_PROJECT_SERVICE_ACCOUNTS": "p=a,p=b",
				"OUTPOST_KUBERNETES_JOB_DEFAULT_SERVICE_ACCOUNT": "not valid", "OUTPOST_KUBERNETES_JOB_POLL_INTERVAL": "1ms",
			},
			wantErr: []string{
				`kubernetes_job.namespace "Jobs"`, `"alice=KSA": "KSA" is not a ServiceAccount name`, `"bob" must be name=service-account`,
				`"p" is mapped twice`, `kubernetes_job.default_service_account "not valid"`, "kubernetes_job.poll_interval 1ms",
			},
		},
		{
			name:    "kubernetes job keys need the namespace",
			env:     map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_KUBERNETES_JOB_DEFAULT_SERVICE_ACCOUNT": "jobs"},
			wantErr: []string{"kubernetes_job.namespace is required with the other kubernetes_job keys"},
		},
		{
			name: "policy from file and env",
			file: write("policy.yaml", `
tenant: acme
pool: remote
policy:
  allowed_task_kinds: [ingest]
  allowed_sinks: [outpost, datahub-rest]
  allowed_hosts: ["*.corp.example", "db.internal:5432"]
  secrets: ["remote=PG_*", "*=API_TOKEN", "other=X_*"]
  file_sink_dir: `+secretsDir+`
`),
			env: map[string]string{"OUTPOST_POLICY_DENIED_ENV": "AWS_PROFILE, KUBECONFIG"},
			want: func(c *Config) {
				c.Tenant, c.Pool = "acme", "remote"
				c.Policy = Policy{
					AllowedTaskKinds: []string{"ingest"}, AllowedSinks: []string{"outpost", "datahub-rest"},
					AllowedHosts: []string{"*.corp.example", "db.internal:5432"},
					Secrets:      []string{"remote=PG_*", "*=API_TOKEN", "other=X_*"},
					DeniedEnv:    []string{"AWS_PROFILE", "KUBECONFIG"}, FileSinkDir: secretsDir,
				}
			},
		},
		{
			name: "the permissive local policy of make run",
			env: map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_POLICY_ALLOWED_HOSTS": "127.0.0.1,localhost,[::1]",
				"OUTPOST_POLICY_SECRETS": "*=*", "OUTPOST_POLICY_FILE_SINK_DIR": secretsDir},
			want: func(c *Config) {
				c.Tenant = "acme"
				c.Policy.AllowedHosts = []string{"127.0.0.1", "localhost", "[::1]"}
				c.Policy.Secrets, c.Policy.FileSinkDir = []string{"*=*"}, secretsDir
			},
		},
		{
			name: "policy values refused",
			env: map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_POLICY_ALLOWED_TASK_KINDS": "shell",
				"OUTPOST_POLICY_ALLOWED_SINKS": "s3", "OUTPOST_POLICY_ALLOWED_HOSTS": "https://x.test",
				"OUTPOST_POLICY_SECRETS": "PG_*,a.b=X,default=[", "OUTPOST_POLICY_FILE_SINK_DIR": "relative/dir"},
			wantErr: []string{
				`policy.allowed_task_kinds entry "shell"`, `policy.allowed_sinks entry "s3"`,
				`policy.allowed_hosts: host pattern "https://x.test"`, `policy.secrets entry "PG_*" must be pool=pattern`,
				`policy.secrets entry "a.b=X" must be pool=pattern`, `policy.secrets entry "default=["`,
				`policy.file_sink_dir "relative/dir"`,
			},
		},
		{name: "tenant missing", wantErr: []string{"tenant is required"}},
		{
			name:    "tenant not a token",
			env:     map[string]string{"OUTPOST_TENANT": "acme.corp"},
			wantErr: []string{`tenant "acme.corp" must be`},
		},
		{
			name: "every bad value reported at once",
			env: map[string]string{
				"OUTPOST_TENANT": "acme", "OUTPOST_POOL": "a b", "OUTPOST_CONCURRENCY": "0",
				"OUTPOST_ACK_WAIT": "100ms", "OUTPOST_COMMAND_ALLOWLIST": "bin/sh",
				"OUTPOST_SECRETS_DIR": filepath.Join(dir, "missing"), "OUTPOST_LOGS_MAX_LINES": "0",
			},
			wantErr: []string{
				`pool "a b"`, "concurrency 0", "ack_wait 100ms", `allowlist entry "bin/sh"`,
				"secrets.dir", "logs.max_lines 0",
			},
		},
		{
			name: "sqs: no broker url needed",
			file: write("sqs.yaml", `
tenant: acme
broker:
  url: ""
queue:
  kind: sqs
  sqs: {region: eu-west-1, queue_type: standard}
`),
			want: func(c *Config) {
				c.Tenant, c.Broker.URL = "acme", ""
				c.Queue.Kind, c.Queue.SQS.Region, c.Queue.SQS.QueueType = backend.KindSQS, "eu-west-1", "standard"
			},
		},
		{
			name: "sqs: jobs max deliveries equal to max deliveries",
			env: map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_QUEUE": "sqs",
				"OUTPOST_MAX_DELIVERIES": "4", "OUTPOST_SQS_JOBS_MAX_DELIVERIES": "4"},
			want: func(c *Config) {
				c.Tenant, c.MaxDeliveries, c.Queue.Kind, c.Queue.SQS.JobsMaxDeliveries = "acme", 4, backend.KindSQS, 4
			},
		},
		{
			name: "sqs: jobs max deliveries must match the redrive",
			env: map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_QUEUE": "sqs",
				"OUTPOST_MAX_DELIVERIES": "4", "OUTPOST_SQS_JOBS_MAX_DELIVERIES": "10"},
			wantErr: []string{"queue.sqs.jobs_max_deliveries 10 must equal max_deliveries 4"},
		},
		{
			name:    "sqs: max deliveries within the redrive limit",
			env:     map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_QUEUE": "sqs", "OUTPOST_MAX_DELIVERIES": "1000"},
			wantErr: []string{"max_deliveries 1000 must be below 1000"},
		},
		{
			name:    "sqs settings checked",
			env:     map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_QUEUE": "sqs", "OUTPOST_SQS_WAIT_TIME": "30s"},
			wantErr: []string{"queue.sqs.wait_time"},
		},
		{
			name:    "replicas 1 or 3",
			env:     map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_BROKER_REPLICAS": "2"},
			wantErr: []string{"broker.replicas: 2 must be 1 or 3"},
		},
		{
			name: "shared layout, as the control plane's",
			file: write("layout.yaml", `
tenant: acme
broker: {layout: shared, credentials: /creds/runner.creds}
`),
			want: func(c *Config) {
				c.Tenant, c.Broker.Layout, c.Broker.Credentials = "acme", queue.LayoutShared, "/creds/runner.creds"
			},
		},
		{
			name:    "layout checked",
			env:     map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_BROKER_LAYOUT": "mixed"},
			wantErr: []string{"broker.layout"},
		},
		{
			name:    "runner id not a token",
			env:     map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_RUNNER_ID": "host.example.com-1"},
			wantErr: []string{`runner_id "host.example.com-1" must be`},
		},
		{
			name:    "ack wait above the cap",
			env:     map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_ACK_WAIT": "1h"},
			wantErr: []string{"ack_wait 1h0m0s must be between 1s and 15m0s"},
		},
		{
			name:    "unknown key in file",
			file:    write("bad.yaml", "tenant: acme\nconcurency: 3\n"),
			wantErr: []string{"field concurency not found"},
		},
		{
			name:    "bad duration in env",
			env:     map[string]string{"OUTPOST_TENANT": "acme", "OUTPOST_DRAIN_GRACE": "soon"},
			wantErr: []string{"OUTPOST_DRAIN_GRACE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(tt.file, func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if len(tt.wantErr) > 0 {
				require.ErrorIs(t, err, ErrInvalid)
				for _, w := range tt.wantErr {
					require.ErrorContains(t, err, w)
				}
				return
			}
			require.NoError(t, err)
			want := Default()
			want.RunnerID = cfg.RunnerID // hostname-pid, checked below
			tt.want(&want)
			require.Equal(t, want, cfg)
		})
	}
}

func TestDefaults(t *testing.T) {
	c := Default()
	require.Equal(t, "default", c.Pool)
	require.Equal(t, "nats://127.0.0.1:4222", c.Broker.URL)
	require.Equal(t, "outpost", c.Broker.Stack)
	require.Equal(t, 4, c.Concurrency)
	require.Equal(t, 15*time.Second, c.AckWait)
	require.Equal(t, 10, c.MaxDeliveries)
	require.Equal(t, 5*time.Second, c.HeartbeatInterval)
	require.Equal(t, 30*time.Second, c.DrainGrace)
	require.Equal(t, "127.0.0.1:9091", c.OpsAddr)
	require.Equal(t, 10*time.Second, c.Command.CancelGrace)
	require.Empty(t, c.Command.Allowlist)
	require.Empty(t, c.Secrets.EnvPrefixes)
	require.Equal(t, []string{"env", "files", "kubernetes", "aws"}, c.Secrets.Order)
	require.Equal(t, 30*time.Second, c.Secrets.CacheTTL)
	require.Equal(t, Logs{MaxLines: 100, MaxBytes: 64 << 10, Interval: 200 * time.Millisecond}, c.Logs)
	host, err := os.Hostname()
	require.NoError(t, err)
	host, _, _ = strings.Cut(host, ".")
	require.Regexp(t, "^"+regexp.QuoteMeta(host)+`-\d+$`, c.RunnerID)
	require.True(t, queue.ValidToken(c.RunnerID), "the default runner id is a subject token")
	require.Equal(t, backend.KindNATS, c.Queue.Kind)
	// Every kind and sink, but no host, no secret and no file directory:
	// what a job may reach or resolve is the customer's to list.
	require.Equal(t, Policy{
		AllowedTaskKinds: []string{"noop", "command", "ingest", "assertion", "kubernetes"},
		AllowedSinks:     []string{"outpost", "console", "file", "http", "datahub-rest"},
	}, c.Policy)
}

func TestRunnerPolicy(t *testing.T) {
	c := Default()
	c.Pool = "remote"
	c.Policy.Secrets = []string{"remote=PG_*", "*=API_TOKEN", "other=X_*", "remote-2=Y_*"}
	require.Equal(t, []string{"PG_*", "API_TOKEN"}, c.RunnerPolicy().Secrets)
}
