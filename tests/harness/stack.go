package harness

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue/sqs"
	"github.com/outposthq/outpost/libs/queue/sqs/sqstest"
	"github.com/outposthq/outpost/libs/testenv"
)

// Stack is a broker, a scheduler and any number of runners, all real
// processes on loopback ports, sharing one data folder; in SQS mode also a
// fauxqs server. The broker runs in operator mode as `make run` runs it:
// the scheduler has its own credentials, and each runner the credentials
// the scheduler issued it (POST /api/v1/agents) for its tenant and pool.
type Stack struct {
	t      testing.TB
	Tenant string
	Pool   string
	// NATS is the broker: its nodes, URL and authority.
	NATS *NATS
	// BrokerURL is NATS.URL; Broker its first (or only) node.
	BrokerURL string
	Broker    *Process
	Scheduler *Process
	// API is the scheduler's base URL, e.g. http://127.0.0.1:41234.
	API string
	// Ops is the scheduler's ops URL (/metrics).
	Ops string
	// Token is the admin API key the scheduler bootstrapped (every
	// tenant).
	Token string
	// SQS is the fauxqs server in SQS mode, nil otherwise.
	SQS *sqstest.Server
	// Key is the key the scheduler signs jobs with; runners trust it.
	Key *SigningKey

	runnerEnv map[string]string
	schedEnv  map[string]string
	runners   int
}

// Queue backends a stack can run on.
const (
	QueueNATS = "nats"
	QueueSQS  = "sqs"
)

// StackOptions configures StartStack.
type StackOptions struct {
	Tenant string // default "default"
	Pool   string // default "default"
	// Queue is QueueNATS (default) or QueueSQS: the scheduler and the
	// runners publish and consume on a fauxqs server started for the test
	// (skipped when fauxqs is not installed, failed with CI=true); the
	// scheduler keeps its records and history on the broker.
	Queue string
	// SQSPersist makes the fauxqs server of QueueSQS keep its queues and
	// messages in a data folder of the test, so that a restart (s.SQS.Process)
	// finds them again, as a real SQS does after an outage.
	SQSPersist bool
	// SchedulerEnv and RunnerEnv add to (and override) the defaults.
	SchedulerEnv map[string]string
	RunnerEnv    map[string]string
	// Nodes is the broker's size: 1 (default), or 3 for a JetStream
	// cluster whose streams the services keep with 3 replicas.
	Nodes int
	// NATS, when set, is the broker to start on instead of a new one:
	// a Plane's, so that the scheduler and the account-migrator share the
	// API keys bucket as they do under `make run`.
	NATS *NATS
}

// StartStack starts the broker and the scheduler and waits until both are
// ready. Runners are started with StartRunner.
func StartStack(t testing.TB, opts StackOptions) *Stack {
	t.Helper()
	if opts.Tenant == "" {
		opts.Tenant = "default"
	}
	if opts.Pool == "" {
		opts.Pool = "default"
	}
	dataDir := t.TempDir()
	apiPort := testenv.FreePort(t)
	s := &Stack{
		t: t, Tenant: opts.Tenant, Pool: opts.Pool,
		API:       fmt.Sprintf("http://127.0.0.1:%d", apiPort),
		runnerEnv: map[string]string{},
	}
	queueEnv := map[string]string{}
	switch opts.Queue {
	case "", QueueNATS:
	case QueueSQS:
		var sqsOpts sqstest.Options
		if opts.SQSPersist {
			sqsOpts.DataDir = filepath.Join(dataDir, "fauxqs")
		}
		s.SQS = sqstest.StartWith(t, sqsOpts)
		queueEnv = s.sqsEnv()
	default:
		t.Fatalf("stack: unknown queue %q", opts.Queue)
	}
	// The scheduler signs with a key of the test's own; runners trust it.
	s.Key = NewSigningKey(t, "stack-1")
	maps.Copy(s.runnerEnv, TrustEnv(s.Key))
	maps.Copy(s.runnerEnv, queueEnv)
	s.NATS = opts.NATS
	if s.NATS == nil {
		s.NATS = StartNATS(t, NATSOptions{Nodes: opts.Nodes, Dir: filepath.Join(dataDir, "broker")})
	}
	s.Broker, s.BrokerURL = s.NATS.Nodes[0], s.NATS.URL
	if opts.Nodes > 1 {
		s.runnerEnv["OUTPOST_BROKER_REPLICAS"] = "3"
	}
	maps.Copy(s.runnerEnv, opts.RunnerEnv)

	opsPort := testenv.FreePort(t)
	s.Ops = fmt.Sprintf("http://127.0.0.1:%d", opsPort)
	env := map[string]string{
		"OUTPOST_LISTEN":         fmt.Sprintf("127.0.0.1:%d", apiPort),
		"OUTPOST_OPS_LISTEN":     fmt.Sprintf("127.0.0.1:%d", opsPort),
		"OUTPOST_BROKER_URL":     s.BrokerURL,
		"OUTPOST_TENANTS":        opts.Tenant,
		"OUTPOST_DEFAULT_TENANT": opts.Tenant,
		// Its own credentials, and the broker's authority to issue and
		// revoke the agents' (POST/DELETE /api/v1/agents).
		"OUTPOST_BROKER_CREDENTIALS": s.NATS.Creds("scheduler", "-role", "scheduler"),
		"OUTPOST_AGENTS_AUTH_DIR":    s.NATS.AuthDir,
	}
	if opts.Nodes > 1 {
		env["OUTPOST_BROKER_REPLICAS"] = "3"
	}
	maps.Copy(env, s.Key.SignerEnv())
	keyFile := AuthEnv(env, dataDir)
	maps.Copy(env, queueEnv)
	maps.Copy(env, opts.SchedulerEnv)
	s.schedEnv = env
	s.Scheduler = Start(t, "scheduler", "scheduler", env)
	s.Scheduler.waitReady(s.API+"/readyz", s.NATS.timeout)
	s.Token = ReadKey(t, keyFile)
	return s
}

// StartRunner starts one ingestion-runner of the stack's tenant and pool
// (env may name others), with env added to the stack's runner environment,
// and waits until it is connected. Its broker credentials are issued by
// the scheduler for its tenant and pool (Process.Agent), unless env gives
// a credentials file or the runner is on SQS.
func (s *Stack) StartRunner(name string, env map[string]string) *Process {
	s.t.Helper()
	s.runners++
	opsPort := testenv.FreePort(s.t)
	e := map[string]string{
		"OUTPOST_BROKER_URL": s.BrokerURL,
		"OUTPOST_TENANT":     s.Tenant,
		"OUTPOST_POOL":       s.Pool,
		"OUTPOST_RUNNER_ID":  name,
		"OUTPOST_OPS_ADDR":   fmt.Sprintf("127.0.0.1:%d", opsPort),
	}
	maps.Copy(e, s.runnerEnv)
	maps.Copy(e, env)
	var agent *Agent
	// A runner on SQS never connects to the broker: its IAM identity is
	// its credential.
	if e["OUTPOST_BROKER_CREDENTIALS"] == "" && e["OUTPOST_QUEUE"] != QueueSQS {
		a := s.IssueAgent(AgentRequest{Role: "runner", Tenant: e["OUTPOST_TENANT"], Pool: e["OUTPOST_POOL"], Name: name})
		e["OUTPOST_BROKER_CREDENTIALS"] = a.File
		agent = &a
	}
	p := Start(s.t, name, "ingestion-runner", e)
	p.Ops = fmt.Sprintf("http://127.0.0.1:%d", opsPort)
	p.Agent = agent
	p.WaitLog("Starting outpost ingestion runner", s.NATS.timeout)
	p.waitReady(p.Ops+"/readyz", s.NATS.timeout)
	return p
}

// StartScheduler starts another scheduler replica on the stack's broker,
// with the first one's configuration (env added) on a port of its own, and
// waits until it is ready. It returns the process and the replica's base URL.
func (s *Stack) StartScheduler(name string, env map[string]string) (*Process, string) {
	s.t.Helper()
	port := testenv.FreePort(s.t)
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	e := maps.Clone(s.schedEnv)
	maps.Copy(e, env)
	e["OUTPOST_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", port)
	e["OUTPOST_OPS_LISTEN"] = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(s.t))
	p := Start(s.t, name, "scheduler", e)
	p.waitReady(api+"/readyz", s.NATS.timeout)
	return p, api
}

// ClientAt returns an API client for the stack's tenant on another
// scheduler replica (a base URL from StartScheduler).
func (s *Stack) ClientAt(api string) *Client {
	return &Client{t: s.t, Base: api, Tenant: s.Tenant, Token: s.Token}
}

// TenantClient returns an API client of the stack's scheduler acting in
// tenant (the admin key holds every tenant of the scheduler).
func (s *Stack) TenantClient(tenant string) *Client {
	return &Client{t: s.t, Base: s.API, Tenant: tenant, Token: s.Token}
}

// AuthEnv sets a control-plane service's environment to bootstrap an admin
// API key into dir/admin.key (once: a restart finds it) and to limit no
// rate (the tests poll), and returns the key file's path.
func AuthEnv(env map[string]string, dir string) string {
	keyFile := filepath.Join(dir, "admin.key")
	env["OUTPOST_AUTH_BOOTSTRAP_KEY_FILE"] = keyFile
	env["OUTPOST_AUTH_RATE_LIMIT"] = "0"
	return keyFile
}

// ReadKey reads the API key a service bootstrapped into path.
func ReadKey(t testing.TB, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err, "the bootstrap API key")
	return strings.TrimSpace(string(raw))
}

// RestartBroker kills the broker (its first node) with SIGKILL and starts
// it again on the same port and data folder.
func (s *Stack) RestartBroker() {
	s.t.Helper()
	s.NATS.Restart(0)
}

// RestartScheduler kills the scheduler with SIGKILL and starts it again.
func (s *Stack) RestartScheduler() {
	s.t.Helper()
	s.Scheduler.Kill()
	s.Scheduler.Restart()
	s.Scheduler.waitReady(s.API+"/readyz", s.NATS.timeout)
}

// sqsEnv points a service at the stack's fauxqs server, with the static
// credentials it accepts, through the standard AWS variables.
func (s *Stack) sqsEnv() map[string]string {
	return map[string]string{
		"OUTPOST_QUEUE":         QueueSQS,
		"OUTPOST_SQS_ENDPOINT":  s.SQS.Endpoint,
		"OUTPOST_SQS_REGION":    sqstest.Region,
		"AWS_REGION":            sqstest.Region,
		"AWS_ACCESS_KEY_ID":     "test",
		"AWS_SECRET_ACCESS_KEY": "test",
	}
}

// SQSBroker connects an SQS broker of the stack's stack prefix to its
// fauxqs server, for tests that put messages on the queues or take them
// off directly; it is closed when the test ends. Only in SQS mode.
func (s *Stack) SQSBroker(cfg sqs.Config) *sqs.Broker {
	s.t.Helper()
	require.NotNil(s.t, s.SQS, "not an SQS stack")
	return sqstest.Connect(s.t, s.SQS, cfg)
}
