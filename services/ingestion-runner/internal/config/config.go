// Package config is the ingestion runner's configuration: its defaults, the
// YAML keys and OUTPOST_* environment variables that override them, and the
// checks that refuse a configuration the runner cannot work with.
package config

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"

	libconfig "github.com/outposthq/outpost/libs/config"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/signing"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/kubejob"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/policy"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
)

// ErrInvalid is returned (wrapped) for a configuration value that cannot be
// used. It is the shared libs/config sentinel so that callers test one error
// for both parse and validation failures.
var ErrInvalid = libconfig.ErrInvalid

// Limits on what Validate accepts. An ack wait below a second would make the
// in-progress ticks (every ack wait / 3) a busy loop; above the cap a dead
// runner's job would sit unseen for too long.
const (
	minAckWait     = time.Second
	maxAckWait     = 15 * time.Minute
	maxConcurrency = 1024
)

// Config is everything the runner reads at start.
type Config struct {
	// Tenant whose queues the runner serves. Required; a subject token.
	Tenant string `yaml:"tenant" env:"OUTPOST_TENANT"`
	// Pool is the executor pool (the executor id jobs are routed by).
	Pool string `yaml:"pool" env:"OUTPOST_POOL"`
	// RunnerID names this runner in statuses and heartbeats, and its own
	// control subject (and SQS queue), where cancels for its jobs arrive:
	// 1-64 characters of [A-Za-z0-9_-].
	RunnerID string `yaml:"runner_id" env:"OUTPOST_RUNNER_ID"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level" env:"OUTPOST_LOG_LEVEL"`

	// Settings are the broker (key "broker") and the backend (key
	// "queue"): NATS JetStream (broker.url, the default) or SQS.
	backend.Settings `yaml:",inline"`

	// Concurrency is how many jobs run at once.
	Concurrency int `yaml:"concurrency" env:"OUTPOST_CONCURRENCY"`
	// AckWait is how long a job may go without an in-progress ack before the
	// queue hands it to another runner: the time a dead runner's job waits.
	AckWait time.Duration `yaml:"ack_wait" env:"OUTPOST_ACK_WAIT"`
	// MaxDeliveries is the queue's backstop: after that many deliveries a
	// job is dead-lettered whatever its own retry policy says.
	MaxDeliveries int `yaml:"max_deliveries" env:"OUTPOST_MAX_DELIVERIES"`
	// HeartbeatInterval is how often the runner announces itself.
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" env:"OUTPOST_HEARTBEAT_INTERVAL"`
	// DrainGrace is how long running jobs may go on after a shutdown signal
	// before they are stopped and handed back to the queue.
	DrainGrace time.Duration `yaml:"drain_grace" env:"OUTPOST_DRAIN_GRACE"`
	// OpsAddr is where /healthz, /readyz and /metrics are served. It should
	// stay on loopback or a pod IP: the runner opens no other port.
	OpsAddr string `yaml:"ops_addr" env:"OUTPOST_OPS_ADDR"`

	Command Command `yaml:"command"`
	Secrets Secrets `yaml:"secrets"`
	Logs    Logs    `yaml:"logs"`
	// Signing holds the control plane's trusted public keys: a job runs
	// only if one of them verifies its signature.
	Signing signing.VerifierConfig `yaml:"signing"`
	// KubernetesJob enables the kubernetes task (when its namespace is
	// set): jobs' containers run as Kubernetes Jobs in this cluster.
	KubernetesJob KubernetesJob `yaml:"kubernetes_job"`
	Policy        Policy        `yaml:"policy"`
}

// Policy is what the customer lets jobs do on this runner, whatever the
// control plane sends (see internal/policy). It is checked on the job as
// sent, before any ${NAME} is resolved; a refused job fails without retry.
type Policy struct {
	// AllowedTaskKinds among noop, command, ingest, assertion, kubernetes (all by
	// default; command also needs command.allowlist).
	AllowedTaskKinds []string `yaml:"allowed_task_kinds" env:"OUTPOST_POLICY_ALLOWED_TASK_KINDS"`
	// AllowedSinks among outpost, console, file, http, datahub-rest (all by
	// default; file also needs file_sink_dir, http and datahub-rest a host
	// in allowed_hosts).
	AllowedSinks []string `yaml:"allowed_sinks" env:"OUTPOST_POLICY_ALLOWED_SINKS"`
	// AllowedHosts are the "host" or "host:port" patterns ("*.example.com",
	// "db.internal:5432", "*" for any) that http and datahub-rest sinks and
	// postgres and mysql sources may reach. Empty (the default): none.
	AllowedHosts []string `yaml:"allowed_hosts" env:"OUTPOST_POLICY_ALLOWED_HOSTS"`
	// Secrets are "pool=pattern" entries: the ${NAME}s (path.Match
	// patterns, "PG_*") a pool may resolve; pool "*" is every pool. None
	// for this runner's pool (the default): no name resolves.
	Secrets []string `yaml:"secrets" env:"OUTPOST_POLICY_SECRETS"`
	// DeniedEnv are environment variables jobs may not set, on top of the
	// built-in list (PATH, LD_*, DYLD_*, BASH_ENV, PYTHONPATH, ...).
	DeniedEnv []string `yaml:"denied_env" env:"OUTPOST_POLICY_DENIED_ENV"`
	// FileSinkDir is the existing directory the file sink writes under;
	// empty (the default) refuses the file sink.
	FileSinkDir string `yaml:"file_sink_dir" env:"OUTPOST_POLICY_FILE_SINK_DIR"`
}

// PoolSecrets returns the secret name patterns of pool: its own entries
// and those of "*".
func (p Policy) PoolSecrets(pool string) []string {
	var out []string
	for _, e := range p.Secrets {
		k, v, _ := strings.Cut(e, "=")
		if k == pool || k == "*" {
			out = append(out, v)
		}
	}
	return out
}

// KubernetesJob configures the kubernetes task. The pod's ServiceAccount
// is the submitting user's (UserServiceAccounts), else the job's
// project's, else DefaultServiceAccount; with no default an unmapped job
// is refused. Jobs never name their ServiceAccount.
type KubernetesJob struct {
	// Namespace where the Jobs and their Secrets are made. Empty: the
	// kubernetes task is not offered.
	Namespace string `yaml:"namespace" env:"OUTPOST_KUBERNETES_JOB_NAMESPACE"`
	// Kubeconfig is a kubeconfig file; empty uses the pod's service
	// account (in-cluster).
	Kubeconfig string `yaml:"kubeconfig" env:"OUTPOST_KUBERNETES_JOB_KUBECONFIG"`
	// UserServiceAccounts entries "user=service-account".
	UserServiceAccounts []string `yaml:"user_service_accounts" env:"OUTPOST_KUBERNETES_JOB_USER_SERVICE_ACCOUNTS"`
	// ProjectServiceAccounts entries "project=service-account".
	ProjectServiceAccounts []string `yaml:"project_service_accounts" env:"OUTPOST_KUBERNETES_JOB_PROJECT_SERVICE_ACCOUNTS"`
	// DefaultServiceAccount runs the jobs no entry maps; empty refuses them.
	DefaultServiceAccount string `yaml:"default_service_account" env:"OUTPOST_KUBERNETES_JOB_DEFAULT_SERVICE_ACCOUNT"`
	// PollInterval is how often a running Job, its pods and events are read.
	PollInterval time.Duration `yaml:"poll_interval" env:"OUTPOST_KUBERNETES_JOB_POLL_INTERVAL"`
	// TTLAfterFinished removes a finished Job the runner could not delete.
	TTLAfterFinished time.Duration `yaml:"ttl_after_finished" env:"OUTPOST_KUBERNETES_JOB_TTL_AFTER_FINISHED"`
}

// Enabled tells whether the kubernetes task is configured.
func (k KubernetesJob) Enabled() bool { return k.Namespace != "" }

// Broker is the queue connection (backend.Broker). Its URL is not used
// with queue.kind sqs; its name defaults to
// "ingestion-runner/<tenant>/<pool>/<runner id>".
type Broker = backend.Broker

// Command configures the command task.
type Command struct {
	// Allowlist holds executable names (looked up in PATH) or absolute paths
	// that jobs may run. Empty refuses every command task.
	Allowlist []string `yaml:"allowlist" env:"OUTPOST_COMMAND_ALLOWLIST"`
	// CancelGrace is the time between SIGTERM and SIGKILL when a command is
	// stopped.
	CancelGrace time.Duration `yaml:"cancel_grace" env:"OUTPOST_COMMAND_CANCEL_GRACE"`
	// MaxLineBytes is where a long output line is split.
	MaxLineBytes int `yaml:"max_line_bytes" env:"OUTPOST_COMMAND_MAX_LINE_BYTES"`
}

// Provider names for secrets.order.
const (
	ProviderEnv        = "env"
	ProviderFiles      = "files"
	ProviderKubernetes = "kubernetes"
	ProviderAWS        = "aws"
)

// Secrets configures where ${NAME} references are resolved: the providers
// of Order that are configured, the first that knows a name wins.
type Secrets struct {
	// Order lists the providers to ask, among env, files, kubernetes and
	// aws; one that is not configured is skipped.
	Order []string `yaml:"order" env:"OUTPOST_SECRETS_ORDER"`
	// CacheTTL is how long an answer of the kubernetes and aws providers
	// is reused: a rotated secret is seen by jobs that start up to this
	// long after the change. 0 disables the cache.
	CacheTTL time.Duration `yaml:"cache_ttl" env:"OUTPOST_SECRETS_CACHE_TTL"`
	// EnvPrefixes allows ${NAME} to read the runner's environment variable
	// NAME only when NAME starts with one of them, so a job cannot read
	// the runner's own credentials. Empty: the environment resolves nothing.
	EnvPrefixes []string `yaml:"env_prefixes" env:"OUTPOST_SECRETS_ENV_PREFIXES"`
	// Dir holds one file per secret, named after it (a mounted Kubernetes
	// Secret, for example). Files are read at each job, so a rotated value
	// needs no restart. Empty: no directory provider.
	Dir string `yaml:"dir" env:"OUTPOST_SECRETS_DIR"`

	Kubernetes KubernetesSecrets `yaml:"kubernetes"`
	AWS        AWSSecrets        `yaml:"aws"`
}

// KubernetesSecrets reads Secrets through the Kubernetes API. It is on
// when Namespace is set.
type KubernetesSecrets struct {
	// Namespace holds the Secrets.
	Namespace string `yaml:"namespace" env:"OUTPOST_SECRETS_KUBERNETES_NAMESPACE"`
	// Kubeconfig is a kubeconfig file; empty uses the pod's service
	// account (in-cluster).
	Kubeconfig string `yaml:"kubeconfig" env:"OUTPOST_SECRETS_KUBERNETES_KUBECONFIG"`
	// Mapping entries "NAME=secret/key" map ${NAME} to key of Secret.
	Mapping []string `yaml:"mapping" env:"OUTPOST_SECRETS_KUBERNETES_MAPPING"`
	// Secrets are Secret names whose keys are ${NAME}s, searched in order.
	Secrets []string `yaml:"secrets" env:"OUTPOST_SECRETS_KUBERNETES_SECRETS"`
	// LabelSelector selects more Secrets whose keys are ${NAME}s, searched
	// in name order after Secrets.
	LabelSelector string `yaml:"label_selector" env:"OUTPOST_SECRETS_KUBERNETES_LABEL_SELECTOR"`
}

// AWSSecrets reads AWS Secrets Manager. It is on when Prefix or Mapping
// is set.
type AWSSecrets struct {
	// Region and Endpoint override the SDK's defaults.
	Region   string `yaml:"region" env:"OUTPOST_SECRETS_AWS_REGION"`
	Endpoint string `yaml:"endpoint" env:"OUTPOST_SECRETS_AWS_ENDPOINT"`
	// Prefix makes ${NAME} the secret "<prefix>NAME".
	Prefix string `yaml:"prefix" env:"OUTPOST_SECRETS_AWS_PREFIX"`
	// Mapping entries "NAME=secret-id" or "NAME=secret-id#json-key".
	Mapping []string `yaml:"mapping" env:"OUTPOST_SECRETS_AWS_MAPPING"`
}

// Enabled tells whether the Kubernetes provider is configured.
func (k KubernetesSecrets) Enabled() bool { return k.Namespace != "" }

// Enabled tells whether the AWS provider is configured.
func (a AWSSecrets) Enabled() bool { return a.Prefix != "" || len(a.Mapping) > 0 }

// Logs configures how job output is batched into LogChunk events.
type Logs struct {
	MaxLines int           `yaml:"max_lines" env:"OUTPOST_LOGS_MAX_LINES"`
	MaxBytes int           `yaml:"max_bytes" env:"OUTPOST_LOGS_MAX_BYTES"`
	Interval time.Duration `yaml:"interval" env:"OUTPOST_LOGS_INTERVAL"`
}

// Default returns the configuration before any file or variable is read.
func Default() Config {
	return Config{
		Pool:              "default",
		RunnerID:          defaultRunnerID(),
		LogLevel:          "info",
		Settings:          backend.DefaultSettings(""),
		Concurrency:       4,
		AckWait:           15 * time.Second,
		MaxDeliveries:     10,
		HeartbeatInterval: 5 * time.Second,
		DrainGrace:        30 * time.Second,
		OpsAddr:           "127.0.0.1:9091",
		Command:           Command{CancelGrace: 10 * time.Second, MaxLineBytes: 16 << 10},
		Secrets: Secrets{
			Order:    []string{ProviderEnv, ProviderFiles, ProviderKubernetes, ProviderAWS},
			CacheTTL: secrets.DefaultCacheTTL,
		},
		Logs:          Logs{MaxLines: 100, MaxBytes: 64 << 10, Interval: 200 * time.Millisecond},
		KubernetesJob: KubernetesJob{PollInterval: time.Second, TTLAfterFinished: 10 * time.Minute},
		Policy: Policy{
			AllowedTaskKinds: slices.Clone(policy.TaskKinds),
			AllowedSinks:     slices.Clone(policy.SinkTypes),
		},
	}
}

// defaultRunnerID is "<hostname>-<pid>" made a subject token: a host name
// such as "ip-10-0-0-1.ec2.internal" keeps its first label, and what is
// left is cut to fit 64 characters.
func defaultRunnerID() string {
	host, err := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			return r
		}
		return '-'
	}, host)
	if err != nil || host == "" {
		host = "runner"
	}
	pid := fmt.Sprintf("-%d", os.Getpid())
	return host[:min(len(host), 64-len(pid))] + pid
}

// Load returns the defaults overridden by the YAML file at path (when not
// empty) and then by the environment seen through lookup (os.LookupEnv when
// nil), validated.
func Load(path string, lookup func(string) (string, bool)) (Config, error) {
	cfg := Default()
	if err := libconfig.Load(path, &cfg, lookup); err != nil {
		return Config{}, fmt.Errorf("load configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports every unusable value at once, so an operator fixes a
// configuration in one go.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...))
	}
	switch {
	case c.Tenant == "":
		bad("tenant is required (tenant or OUTPOST_TENANT)")
	case !queue.ValidToken(c.Tenant):
		bad("tenant %q must be 1-64 characters of [A-Za-z0-9_-]", c.Tenant)
	}
	if !queue.ValidToken(c.Pool) {
		bad("pool %q must be 1-64 characters of [A-Za-z0-9_-]", c.Pool)
	}
	if !queue.ValidToken(c.RunnerID) {
		bad("runner_id %q must be 1-64 characters of [A-Za-z0-9_-]", c.RunnerID)
	}
	if err := c.Settings.Validate(backend.Requirements{SQS: true}); err != nil {
		errs = append(errs, err)
	}
	if c.Queue.Kind == backend.KindSQS {
		// The jobs queue's redrive policy must leave the runner's own
		// max-deliveries check (which records the reason) the first say.
		if n := c.Queue.SQS.JobsMaxDeliveries; n != 0 && n != c.MaxDeliveries {
			bad("queue.sqs.jobs_max_deliveries %d must equal max_deliveries %d (or be left out: it is derived from it)", n, c.MaxDeliveries)
		}
		if c.MaxDeliveries >= backend.SQSBackstopMaxReceiveCount {
			bad("max_deliveries %d must be below %d with queue.kind sqs", c.MaxDeliveries, backend.SQSBackstopMaxReceiveCount)
		}
	}
	if c.Concurrency < 1 || c.Concurrency > maxConcurrency {
		bad("concurrency %d must be between 1 and %d", c.Concurrency, maxConcurrency)
	}
	if c.AckWait < minAckWait || c.AckWait > maxAckWait {
		bad("ack_wait %s must be between %s and %s", c.AckWait, minAckWait, maxAckWait)
	}
	if c.MaxDeliveries < 1 {
		bad("max_deliveries %d must be at least 1", c.MaxDeliveries)
	}
	if c.HeartbeatInterval <= 0 {
		bad("heartbeat_interval %s must be positive", c.HeartbeatInterval)
	}
	if c.DrainGrace < 0 {
		bad("drain_grace %s must not be negative", c.DrainGrace)
	}
	if c.OpsAddr == "" {
		bad("ops_addr is required")
	}
	for _, e := range c.Command.Allowlist {
		if e == "" || (strings.ContainsRune(e, '/') && !filepath.IsAbs(e)) {
			bad("command.allowlist entry %q must be an executable name or an absolute path", e)
		}
	}
	if c.Command.CancelGrace <= 0 {
		bad("command.cancel_grace %s must be positive", c.Command.CancelGrace)
	}
	if c.Command.MaxLineBytes < 256 {
		bad("command.max_line_bytes %d must be at least 256", c.Command.MaxLineBytes)
	}
	for _, p := range c.Secrets.EnvPrefixes {
		if p == "" {
			bad("secrets.env_prefixes must not hold an empty prefix (it would expose the whole environment)")
		}
	}
	if c.Secrets.Dir != "" {
		if fi, err := os.Stat(c.Secrets.Dir); err != nil || !fi.IsDir() {
			bad("secrets.dir %q must be an existing directory", c.Secrets.Dir)
		}
	}
	c.validateSecrets(bad)
	c.validateKubernetesJob(bad)
	c.validatePolicy(bad)
	if c.Logs.MaxLines < 1 {
		bad("logs.max_lines %d must be at least 1", c.Logs.MaxLines)
	}
	if c.Logs.MaxBytes < c.Command.MaxLineBytes {
		bad("logs.max_bytes %d must be at least command.max_line_bytes (%d)", c.Logs.MaxBytes, c.Command.MaxLineBytes)
	}
	if c.Logs.Interval <= 0 {
		bad("logs.interval %s must be positive", c.Logs.Interval)
	}
	return errors.Join(errs...)
}

func (c Config) validateSecrets(bad func(format string, args ...any)) {
	seen := map[string]bool{}
	for _, p := range c.Secrets.Order {
		switch p {
		case ProviderEnv, ProviderFiles, ProviderKubernetes, ProviderAWS:
		default:
			bad("secrets.order entry %q must be one of env, files, kubernetes, aws", p)
		}
		if seen[p] {
			bad("secrets.order lists %q twice", p)
		}
		seen[p] = true
	}
	if c.Secrets.CacheTTL < 0 {
		bad("secrets.cache_ttl %s must not be negative", c.Secrets.CacheTTL)
	}
	k := c.Secrets.Kubernetes
	if _, err := secrets.ParseKubeMapping(k.Mapping); err != nil {
		bad("secrets.kubernetes.mapping: %v", err)
	}
	if !k.Enabled() && (len(k.Mapping) > 0 || len(k.Secrets) > 0 || k.LabelSelector != "" || k.Kubeconfig != "") {
		bad("secrets.kubernetes.namespace is required with the other secrets.kubernetes keys")
	}
	if k.Enabled() && len(k.Mapping) == 0 && len(k.Secrets) == 0 && k.LabelSelector == "" {
		bad("secrets.kubernetes needs mapping, secrets or label_selector")
	}
	if _, err := secrets.ParseAWSMapping(c.Secrets.AWS.Mapping); err != nil {
		bad("secrets.aws.mapping: %v", err)
	}
}

func (c Config) validateKubernetesJob(bad func(format string, args ...any)) {
	k := c.KubernetesJob
	if !k.Enabled() {
		if k.Kubeconfig != "" || len(k.UserServiceAccounts) > 0 || len(k.ProjectServiceAccounts) > 0 || k.DefaultServiceAccount != "" {
			bad("kubernetes_job.namespace is required with the other kubernetes_job keys")
		}
		return
	}
	if msgs := validation.IsDNS1123Label(k.Namespace); len(msgs) > 0 {
		bad("kubernetes_job.namespace %q: %s", k.Namespace, strings.Join(msgs, "; "))
	}
	if _, err := kubejob.ParseAccounts(k.UserServiceAccounts); err != nil {
		bad("kubernetes_job.user_service_accounts: %v", err)
	}
	if _, err := kubejob.ParseAccounts(k.ProjectServiceAccounts); err != nil {
		bad("kubernetes_job.project_service_accounts: %v", err)
	}
	if sa := k.DefaultServiceAccount; sa != "" && len(validation.IsDNS1123Subdomain(sa)) > 0 {
		bad("kubernetes_job.default_service_account %q is not a ServiceAccount name", sa)
	}
	if k.PollInterval < 100*time.Millisecond {
		bad("kubernetes_job.poll_interval %s must be at least 100ms", k.PollInterval)
	}
	if k.TTLAfterFinished < time.Second {
		bad("kubernetes_job.ttl_after_finished %s must be at least 1s", k.TTLAfterFinished)
	}
}

func (c Config) validatePolicy(bad func(format string, args ...any)) {
	p := c.Policy
	for _, k := range p.AllowedTaskKinds {
		if !slices.Contains(policy.TaskKinds, k) {
			bad("policy.allowed_task_kinds entry %q must be one of %s", k, strings.Join(policy.TaskKinds, ", "))
		}
	}
	for _, s := range p.AllowedSinks {
		if !slices.Contains(policy.SinkTypes, s) {
			bad("policy.allowed_sinks entry %q must be one of %s", s, strings.Join(policy.SinkTypes, ", "))
		}
	}
	for _, h := range p.AllowedHosts {
		if err := policy.ValidHostPattern(h); err != nil {
			bad("policy.allowed_hosts: %v", err)
		}
	}
	for _, e := range p.Secrets {
		pool, pattern, ok := strings.Cut(e, "=")
		if !ok || (pool != "*" && !queue.ValidToken(pool)) {
			bad("policy.secrets entry %q must be pool=pattern (pool a pool name or *)", e)
			continue
		}
		if _, err := path.Match(pattern, ""); err != nil || pattern == "" {
			bad("policy.secrets entry %q: pattern %q is not a valid pattern", e, pattern)
		}
	}
	for _, e := range p.DeniedEnv {
		if e == "" || strings.ContainsAny(e, "=\x00") {
			bad("policy.denied_env entry %q is not a variable name", e)
		}
	}
	if p.FileSinkDir != "" {
		if fi, err := os.Stat(p.FileSinkDir); err != nil || !fi.IsDir() || !filepath.IsAbs(p.FileSinkDir) {
			bad("policy.file_sink_dir %q must be an absolute path to an existing directory", p.FileSinkDir)
		}
	}
}

// RunnerPolicy is the policy of this runner's pool.
func (c Config) RunnerPolicy() *policy.Policy {
	return &policy.Policy{
		TaskKinds:   c.Policy.AllowedTaskKinds,
		Sinks:       c.Policy.AllowedSinks,
		Hosts:       c.Policy.AllowedHosts,
		Secrets:     c.Policy.PoolSecrets(c.Pool),
		DeniedEnv:   c.Policy.DeniedEnv,
		FileSinkDir: c.Policy.FileSinkDir,
	}
}
