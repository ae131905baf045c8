package e2e

import (
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/tests/harness"
)

// backends are the queue backends the job path must work on the same way.
// start runs a scheduler on that backend, with runner added to the runners'
// environment.
var backends = []struct {
	name  string
	start func(t *testing.T, runner map[string]string) *harness.Stack
}{
	{"jetstream", func(t *testing.T, runner map[string]string) *harness.Stack {
		renv := maps.Clone(runnerEnv)
		maps.Copy(renv, runner)
		return harness.StartStack(t, harness.StackOptions{RunnerEnv: renv})
	}},
	{"sqs", startSQSStack},
}

func TestCommandJobSucceedsWithLogs(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.start(t, nil)
			s.StartRunner("runner-1", map[string]string{"E2E_GREETING": "s3cr3t-greeting"})
			c := s.Client()

			job := c.Submit(harness.Command("default", "sh", "-c", "echo hello ${E2E_GREETING}; echo to-stderr >&2"))
			done := c.WaitTerminal(job.ID, 30*time.Second)
			require.Equal(t, "SUCCEEDED", done.State, done.String())
			require.Equal(t, 1, done.Attempt)
			require.NotNil(t, done.ExitCode)
			require.Equal(t, 0, *done.ExitCode)
			require.Equal(t, "runner-1", done.RunnerID)

			// On SQS, logs and statuses travel on separate queues: the logs
			// are readable once the scheduler has copied them into JetStream.
			var logs string
			require.Eventually(t, func() bool {
				code, body, err := c.Try(http.MethodGet, "/api/v1/jobs/"+job.ID+"/logs", nil)
				if err != nil || code != http.StatusOK {
					return false
				}
				logs = string(body)
				return strings.Contains(logs, "hello ****") && strings.Contains(logs, "to-stderr") && strings.Contains(logs, "attempt ended: SUCCEEDED")
			}, 30*time.Second, 50*time.Millisecond, "logs never complete: %q", logs)
			require.NotContains(t, logs, "s3cr3t-greeting", "a resolved secret must be masked")

			// The runner's heartbeats reach the scheduler: the pool has a live runner.
			require.Eventually(t, func() bool { return liveRunners(c, "default") == 1 },
				30*time.Second, 100*time.Millisecond, "the runner's heartbeats never reached the scheduler")
		})
	}
}

// A runner killed with SIGKILL mid-job stops extending its delivery; after
// the ack wait (on SQS, the visibility timeout) the job goes to the other
// runner and succeeds exactly once, as attempt 2.
func TestKilledRunnerJobIsRedelivered(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.start(t, nil)
			runners := map[string]*harness.Process{
				"runner-a": s.StartRunner("runner-a", nil),
				"runner-b": s.StartRunner("runner-b", nil),
			}
			c := s.Client()

			job := c.Submit(harness.Command("default", "sh", "-c", "sleep 2; echo finished"))
			running := c.WaitFor(job.ID, 30*time.Second, func(j harness.Job) bool { return j.State == "RUNNING" })
			victim := running.RunnerID
			require.Contains(t, runners, victim)
			runners[victim].Kill()

			done := c.WaitTerminal(job.ID, 60*time.Second)
			require.Equal(t, "SUCCEEDED", done.State, done.String())
			require.Equal(t, 2, done.Attempt)
			require.NotEqual(t, victim, done.RunnerID)
			var succeeded int
			for _, h := range done.History {
				if h.State == "SUCCEEDED" {
					succeeded++
				}
			}
			require.Equal(t, 1, succeeded, "exactly one success: %+v", done.History)
		})
	}
}

// Cancel stops the running command: with one slot, a second job can only
// start once the first one's process is gone.
func TestCancelStopsRunningCommand(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.start(t, nil)
			runner := s.StartRunner("runner-1", map[string]string{"OUTPOST_CONCURRENCY": "1"})
			c := s.Client()

			long := c.Submit(harness.Command("default", "sleep", "300"))
			c.WaitFor(long.ID, 30*time.Second, func(j harness.Job) bool { return j.State == "RUNNING" })
			next := c.Submit(harness.Command("default", "echo", "next"))

			cancelled := c.Cancel(long.ID)
			require.Equal(t, "CANCELLED", cancelled.State)

			done := c.WaitTerminal(next.ID, 30*time.Second)
			require.Equal(t, "SUCCEEDED", done.State, done.String())
			require.Equal(t, "CANCELLED", c.Get(long.ID).State)
			runner.WaitLog(`"msg":"job cancel received"`, 10*time.Second)
		})
	}
}

// liveRunners is how many live runners the scheduler counts in a pool, or
// -1 when it cannot tell; safe in an Eventually condition.
func liveRunners(c *harness.Client, pool string) int {
	code, body, err := c.Try(http.MethodGet, "/api/v1/pools", nil)
	if err != nil || code != http.StatusOK {
		return -1
	}
	var out struct {
		Pools []struct {
			Pool    string `json:"pool"`
			Runners int    `json:"runners"`
		} `json:"pools"`
	}
	if json.Unmarshal(body, &out) != nil {
		return -1
	}
	for _, p := range out.Pools {
		if p.Pool == pool {
			return p.Runners
		}
	}
	return 0
}
