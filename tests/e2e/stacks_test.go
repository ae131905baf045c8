package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/outposthq/outpost/libs/kubetest"
	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/tests/harness"
	"github.com/stretchr/testify/require"
)

// sideStack is one Outpost installation of TestStacksSideBySide: all of
// its processes share the stack (subject prefix) on the common broker.
type sideStack struct {
	name     string
	jobs     testenv.Client // scheduler API
	accounts testenv.Client // account-migrator API
}

// merge returns a copy of a with b's entries added.
func merge(a, b map[string]string) map[string]string {
	out := maps.Clone(a)
	maps.Copy(out, b)
	return out
}

// TestStacksSideBySide runs two stacks, alpha and beta, on one broker with
// the same tenant, pool, zone, job ids and account names, as two Helm
// releases with two global.stack values would: no job, account or object
// crosses from one to the other. Each process has broker credentials of
// its own stack; each runner's are issued by its stack's scheduler.
func TestStacksSideBySide(t *testing.T) {
	kc := kubetest.Shared(t)
	broker := harness.StartNATS(t, harness.NATSOptions{})
	brokerURL := broker.URL
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sealKey := base64.StdEncoding.EncodeToString(key)

	start := func(stack string) sideStack {
		common := map[string]string{"OUTPOST_BROKER_URL": brokerURL, "OUTPOST_STACK": stack}
		with := func(extra map[string]string) map[string]string {
			env := map[string]string{}
			for k, v := range common {
				env[k] = v
			}
			for k, v := range extra {
				env[k] = v
			}
			return env
		}
		// Each stack signs with a key of its own, which only its agents
		// trust, and bootstraps its own admin API key.
		signing := harness.NewSigningKey(t, stack+"-1")
		signer := func(extra map[string]string) map[string]string {
			env := with(extra)
			maps.Copy(env, signing.SignerEnv())
			return env
		}
		agent := func(extra map[string]string) map[string]string {
			env := with(extra)
			maps.Copy(env, harness.TrustEnv(signing))
			return env
		}
		authEnv := map[string]string{}
		keyFile := harness.AuthEnv(authEnv, t.TempDir())
		creds := func(name string, args ...string) string {
			return broker.Creds(stack+"-"+name, append([]string{"-stack", stack}, args...)...)
		}
		api, accAPI := testenv.FreeAddr(t), testenv.FreeAddr(t)
		runnerOps, watcherOps := testenv.FreeAddr(t), testenv.FreeAddr(t)
		procs := []struct {
			name, binary, ready string
			env                 map[string]string
		}{
			{name: stack + "-scheduler", binary: "scheduler", ready: api, env: signer(merge(authEnv, map[string]string{
				"OUTPOST_LISTEN": api, "OUTPOST_TENANTS": "default", "OUTPOST_DEFAULT_TENANT": "default",
				"OUTPOST_BROKER_CREDENTIALS": creds("scheduler", "-role", "scheduler"), "OUTPOST_AGENTS_AUTH_DIR": broker.AuthDir}))},
			{name: stack + "-runner", binary: "ingestion-runner", ready: runnerOps, env: agent(map[string]string{
				"OUTPOST_TENANT": "default", "OUTPOST_POOL": "default", "OUTPOST_RUNNER_ID": "runner-" + stack,
				"OUTPOST_OPS_ADDR": runnerOps, "OUTPOST_COMMAND_ALLOWLIST": "echo"})},
			{name: stack + "-migrator", binary: "account-migrator", ready: accAPI, env: signer(merge(authEnv, map[string]string{
				"OUTPOST_LISTEN": accAPI, "OUTPOST_TENANTS": "default", "OUTPOST_DEFAULT_TENANT": "default",
				"OUTPOST_KUBECONFIG_KEY": sealKey, "OUTPOST_RETRY_FREQUENCY": "1s", "OUTPOST_RECONCILE_INTERVAL": "200ms",
				"OUTPOST_BROKER_CREDENTIALS": creds("account-migrator", "-role", "account-migrator")}))},
			{name: stack + "-watcher", binary: "k8s-watcher", ready: watcherOps, env: agent(map[string]string{
				// The accounts are watched with the watcher's own identity.
				"OUTPOST_ALLOW_SERVICE_ACCOUNT": "true", "OUTPOST_SECRET_NAMESPACES": "*",
				"OUTPOST_TENANT": "default", "OUTPOST_ZONE": "zone-1", "OUTPOST_WATCHER_ID": "watcher-" + stack,
				"OUTPOST_OPS_ADDR": watcherOps, "OUTPOST_KUBECONFIG": kc.Kubeconfig, "OUTPOST_KUBECONFIG_KEY": sealKey,
				"OUTPOST_LEASE_ACK_WAIT": "3s", "OUTPOST_HEARTBEAT_INTERVAL": "300ms", "OUTPOST_CLUSTER_TIMEOUT": "3s",
				"OUTPOST_BROKER_CREDENTIALS": creds("watcher", "-role", "watcher", "-tenant", "default", "-zone", "zone-1")})},
		}
		for _, p := range procs {
			if p.binary == "ingestion-runner" {
				// Issued by the stack's scheduler (started first), for its
				// stack, tenant and pool.
				p.env["OUTPOST_BROKER_CREDENTIALS"] = harness.IssueAgent(t, "http://"+api, harness.ReadKey(t, keyFile),
					harness.AgentRequest{Role: "runner", Tenant: "default", Pool: "default", Name: "runner-" + stack}).File
			}
			proc := harness.Start(t, p.name, p.binary, p.env)
			require.NoError(t, proc.Proc.WaitReady(60*time.Second, testenv.HTTPProbe(nil, "http://"+p.ready+"/readyz")), "%s never became ready", p.name)
		}
		token := harness.ReadKey(t, keyFile)
		return sideStack{name: stack, jobs: testenv.Client{Base: "http://" + api, Token: token}, accounts: testenv.Client{Base: "http://" + accAPI, Token: token}}
	}
	alpha, beta := start("alpha"), start("beta")
	stacks := []sideStack{alpha, beta}

	t.Run("jobs", func(t *testing.T) {
		// The same job id on both stacks: two jobs, each run by its own
		// stack's runner and printing its own stack's word.
		for _, s := range stacks {
			code, body := s.jobs.Do(t, http.MethodPost, "/api/v1/jobs", map[string]any{
				"id": "same-job", "pool": "default", "timeout": "1m",
				"task": map[string]any{"command": map[string]any{"command": "echo", "args": []string{"from-" + s.name}}},
			})
			require.Contains(t, []int{http.StatusCreated, http.StatusOK}, code, "%s: %s", s.name, body)
		}
		for _, s := range stacks {
			var job harness.Job
			require.Eventually(t, func() bool {
				code, body, err := s.jobs.Try(http.MethodGet, "/api/v1/jobs/same-job", nil)
				return err == nil && code == http.StatusOK && json.Unmarshal(body, &job) == nil && job.Terminal()
			}, 60*time.Second, 50*time.Millisecond, "%s: same-job never ended", s.name)
			require.Equal(t, "SUCCEEDED", job.State, "%s: %s", s.name, job)
			require.Equal(t, "runner-"+s.name, job.RunnerID, "%s's job ran on another stack's runner", s.name)
			code, logs := s.jobs.Do(t, http.MethodGet, "/api/v1/jobs/same-job/logs", nil)
			require.Equal(t, http.StatusOK, code)
			require.Contains(t, string(logs), "from-"+s.name)
			for _, other := range stacks {
				if other.name != s.name {
					require.NotContains(t, string(logs), "from-"+other.name)
				}
			}
		}
		// A job of alpha alone is unknown to beta.
		code, body := alpha.jobs.Do(t, http.MethodPost, "/api/v1/jobs", map[string]any{
			"id": "alpha-only", "pool": "default", "timeout": "1m",
			"task": map[string]any{"command": map[string]any{"command": "echo", "args": []string{"alpha"}}},
		})
		require.Contains(t, []int{http.StatusCreated, http.StatusOK}, code, "%s", body)
		code, _ = beta.jobs.Do(t, http.MethodGet, "/api/v1/jobs/alpha-only", nil)
		require.Equal(t, http.StatusNotFound, code)
	})

	t.Run("accounts", func(t *testing.T) {
		account := func(s sideStack, name string) (int, harness.Account) {
			code, body, err := s.accounts.Try(http.MethodGet, "/api/v1/accounts/"+name, nil)
			var a harness.Account
			if err == nil && code == http.StatusOK {
				_ = json.Unmarshal(body, &a)
			}
			return code, a
		}
		// The same account name on both stacks, in the same zone; only
		// alpha activates it: alpha's watcher takes it, beta's does not.
		for _, s := range stacks {
			code, body := s.accounts.Do(t, http.MethodPost, "/armory/accounts", []map[string]any{{"name": "shared-account"}})
			require.Equal(t, http.StatusOK, code, "%s: %s", s.name, body)
		}
		code, body := alpha.accounts.Do(t, http.MethodPatch, "/armory/accounts", []map[string]any{{"name": "shared-account", "state": "ACTIVE"}})
		require.Equal(t, http.StatusOK, code, "%s", body)
		require.Eventually(t, func() bool {
			_, a := account(alpha, "shared-account")
			return a.State == "ACTIVE"
		}, 60*time.Second, 50*time.Millisecond, "alpha's account never became ACTIVE")
		_, a := account(alpha, "shared-account")
		require.Equal(t, "watcher-alpha", a.Agent, "alpha's account is held by another stack's watcher")
		_, b := account(beta, "shared-account")
		require.Equal(t, "INACTIVE", b.State, "activating alpha's account changed beta's")
		require.Empty(t, b.Agent)

		// Then beta activates its own: beta's watcher takes it.
		code, body = beta.accounts.Do(t, http.MethodPatch, "/armory/accounts", []map[string]any{{"name": "shared-account", "state": "ACTIVE"}})
		require.Equal(t, http.StatusOK, code, "%s", body)
		require.Eventually(t, func() bool {
			_, b := account(beta, "shared-account")
			return b.State == "ACTIVE"
		}, 60*time.Second, 50*time.Millisecond, "beta's account never became ACTIVE")
		_, b = account(beta, "shared-account")
		require.Equal(t, "watcher-beta", b.Agent)
		_, a = account(alpha, "shared-account")
		require.Equal(t, "watcher-alpha", a.Agent, "beta's activation moved alpha's account")

		// An object appears in each stack's inventory, through its own
		// watcher; an account of alpha alone has no objects on beta.
		ns := kc.CreateNamespace(t)
		manifest := filepath.Join(t.TempDir(), "cm.yaml")
		writeConfigMap(t, manifest, ns, "side-config", "v1")
		kc.Kubectl(t, "apply", "-f", manifest)
		for _, s := range stacks {
			require.Eventually(t, func() bool {
				code, _, err := s.accounts.Try(http.MethodGet, "/api/v1/accounts/shared-account/objects/configmaps/"+ns+"/side-config", nil)
				return err == nil && code == http.StatusOK
			}, 30*time.Second, 50*time.Millisecond, "%s's inventory never saw the ConfigMap", s.name)
		}
		code, body = alpha.accounts.Do(t, http.MethodPost, "/armory/accounts", []map[string]any{{"name": "alpha-account"}})
		require.Equal(t, http.StatusOK, code, "%s", body)
		code, _ = account(beta, "alpha-account")
		require.Equal(t, http.StatusNotFound, code)
		code, _ = beta.accounts.Do(t, http.MethodGet, "/api/v1/accounts/alpha-account/objects?kind=configmaps", nil)
		require.Equal(t, http.StatusNotFound, code)
	})
}
