package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/tests/harness"
)

// runnerEnv is what every runner in these tests may run and resolve.
var runnerEnv = map[string]string{
	"OUTPOST_COMMAND_ALLOWLIST":    "sh,sleep,echo",
	"OUTPOST_SECRETS_ENV_PREFIXES": "E2E_",
	"OUTPOST_POLICY_SECRETS":       "*=E2E_*",
	"OUTPOST_ACK_WAIT":             "2s",
	"OUTPOST_HEARTBEAT_INTERVAL":   "1s",
}

func TestFailingCommandEndsFailedAfterRetries(t *testing.T) {
	s := harness.StartStack(t, harness.StackOptions{RunnerEnv: runnerEnv})
	s.StartRunner("runner-1", nil)
	c := s.Client()

	spec := harness.Command("default", "sh", "-c", "echo trying; exit 3")
	spec["retry"] = map[string]any{"max_attempts": 3, "initial_backoff": "100ms", "max_backoff": "200ms"}
	job := c.Submit(spec)
	done := c.WaitTerminal(job.ID, 30*time.Second)
	require.Equal(t, "FAILED", done.State, done.String())
	require.Equal(t, 3, done.Attempt)
	require.Contains(t, done.Reason, "3", "the reason names the exit code")

	var retries int
	for _, h := range done.History {
		if h.State == "QUEUED" && h.Attempt > 0 {
			retries++
		}
	}
	require.Equal(t, 2, retries, "two retries before the final failure: %+v", done.History)
}

func TestUnknownSecretFailsWithoutRetry(t *testing.T) {
	s := harness.StartStack(t, harness.StackOptions{RunnerEnv: runnerEnv})
	s.StartRunner("runner-1", nil)
	c := s.Client()

	job := c.Submit(harness.Command("default", "echo", "${E2E_MISSING}"))
	done := c.WaitTerminal(job.ID, 30*time.Second)
	require.Equal(t, "FAILED", done.State, done.String())
	require.Equal(t, 1, done.Attempt)
	require.Contains(t, done.Reason, "E2E_MISSING")
}

// The broker and the scheduler are killed and restarted while jobs are in
// flight; every job still ends SUCCEEDED.
func TestRestartsLoseNoJob(t *testing.T) {
	s := harness.StartStack(t, harness.StackOptions{RunnerEnv: runnerEnv})
	s.StartRunner("runner-1", map[string]string{"OUTPOST_CONCURRENCY": "4"})
	c := s.Client()

	const n = 12
	ids := make([]string, 0, n)
	for range n {
		ids = append(ids, c.Submit(harness.Command("default", "sh", "-c", "sleep 0.5; echo ok")).ID)
	}
	c.WaitFor(ids[0], 30*time.Second, func(j harness.Job) bool { return j.State == "RUNNING" || j.Terminal() })

	s.RestartBroker()
	s.RestartScheduler()

	for _, id := range ids {
		done := c.WaitTerminal(id, 90*time.Second)
		require.Equal(t, "SUCCEEDED", done.State, done.String())
	}
}

// A runner paused (SIGSTOP) past the ack wait loses its job to another
// runner; resumed, it reports the outcome of its superseded attempt, which
// must not overwrite the real one.
func TestPausedRunnerCannotOverwriteOutcome(t *testing.T) {
	s := harness.StartStack(t, harness.StackOptions{RunnerEnv: runnerEnv})
	// The same job fails on runner-a and succeeds on runner-b, so an
	// overwrite would be visible.
	a := s.StartRunner("runner-a", map[string]string{"E2E_EXIT": "7"})
	c := s.Client()

	spec := harness.Command("default", "sh", "-c", "sleep 1; exit ${E2E_EXIT}")
	spec["retry"] = map[string]any{"max_attempts": 3, "initial_backoff": "100ms"}
	job := c.Submit(spec)
	c.WaitFor(job.ID, 30*time.Second, func(j harness.Job) bool { return j.State == "RUNNING" && j.RunnerID == "runner-a" })
	a.Pause()

	s.StartRunner("runner-b", map[string]string{"E2E_EXIT": "0"})
	done := c.WaitTerminal(job.ID, 60*time.Second)
	require.Equal(t, "SUCCEEDED", done.State, done.String())
	require.Equal(t, "runner-b", done.RunnerID)
	attempt := done.Attempt

	fencedBefore := harness.Metric(t, s.Ops, "outpost_fenced_events_total")
	a.Resume()
	require.Eventually(t, func() bool {
		v, err := harness.TryMetric(s.Ops, "outpost_fenced_events_total")
		return err == nil && v > fencedBefore
	},
		30*time.Second, 50*time.Millisecond, "the resumed runner's stale report was never fenced")

	after := c.Get(job.ID)
	require.Equal(t, "SUCCEEDED", after.State, after.String())
	require.Equal(t, attempt, after.Attempt)
	require.Equal(t, "runner-b", after.RunnerID)
}

func TestBadRequestsAreRefusedClearly(t *testing.T) {
	s := harness.StartStack(t, harness.StackOptions{SchedulerEnv: map[string]string{"OUTPOST_API_MAX_REQUEST_BYTES": "4096"}})
	c := s.Client()
	tests := []struct {
		name      string
		tenant    string
		body      string
		wantCode  int
		wantInErr string
	}{
		{"invalid JSON", "", `{"pool": `, http.StatusBadRequest, ""},
		{"unknown field", "", `{"pool":"default","task":{"noop":{}},"colour":"red"}`, http.StatusBadRequest, "colour"},
		{"no task", "", `{"pool":"default"}`, http.StatusBadRequest, "task"},
		{"bad pool", "", `{"pool":"a b","task":{"noop":{}}}`, http.StatusBadRequest, "pool"},
		{"too large", "", `{"pool":"default","task":{"noop":{"fail_message":"` + strings.Repeat("x", 5000) + `"}}}`, http.StatusRequestEntityTooLarge, ""},
		{"unknown tenant", "nobody", `{"pool":"default","task":{"noop":{}}}`, http.StatusNotFound, "nobody"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl := *c
			if tt.tenant != "" {
				cl.Tenant = tt.tenant
			}
			code, body := cl.Do(http.MethodPost, "/api/v1/jobs", tt.body)
			require.Equal(t, tt.wantCode, code, string(body))
			require.Contains(t, string(body), tt.wantInErr)
		})
	}
}
