package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/tests/harness"
)

// readyzCode answers the status of base's /readyz, 0 when nothing answers.
func readyzCode(base string) int {
	client := &http.Client{Timeout: time.Second}
	resp, err := client.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	_ = resp.Body.Close()
	return resp.StatusCode
}

// SQS taken away for a while (fauxqs killed with SIGKILL, then started
// again on the same endpoint with the queues and messages it had written
// through to disk, as SQS keeps them through an outage): the scheduler and
// the runner report not-ready while it is gone and ready once it is back,
// and every job accepted before, during or after ends terminal exactly
// once.
func TestSQSOutageIsNotReadyAndLosesNothing(t *testing.T) {
	opts := sqsStackOptions(nil)
	opts.SQSPersist = true
	s := harness.StartStack(t, opts)
	runner := s.StartRunner("runner-1", nil)
	c := s.Client()
	ready := map[string]string{"scheduler": s.API, "runner": runner.Ops}

	// Every run of a job appends the job's name to runs: a job run twice
	// shows up twice.
	runs := filepath.Join(t.TempDir(), "runs")
	submit := func(name, sleep string) string {
		script := fmt.Sprintf("echo %s >> %s; sleep %s", name, runs, sleep)
		return c.Submit(harness.Command("default", "sh", "-c", script)).ID
	}

	// Jobs that take a moment: when SQS goes away some have ended, some run
	// and some still wait on the jobs queue.
	names := map[string]string{}
	for i := range 10 {
		name := fmt.Sprintf("before-%d", i)
		names[submit(name, "1")] = name
	}
	var ids []string
	for id := range names {
		ids = append(ids, id)
	}
	require.Eventually(t, func() bool {
		for _, id := range ids {
			if j, err := tryGet(c, id); err == nil && j.Terminal() {
				return true
			}
		}
		return false
	}, 30*time.Second, 50*time.Millisecond, "no job ended before the outage")
	pending := 0
	for _, id := range ids {
		if j, err := tryGet(c, id); err != nil || !j.Terminal() {
			pending++
		}
	}
	require.Positive(t, pending, "every job ended before SQS went away: the outage would test nothing")

	require.NoError(t, s.SQS.Process.Kill())
	for name, base := range ready {
		require.Eventually(t, func() bool { return readyzCode(base) == http.StatusServiceUnavailable },
			20*time.Second, 100*time.Millisecond, "%s stays ready while SQS does not answer", name)
	}

	// A job submitted while SQS is gone is accepted: its record is on
	// JetStream, and the scheduler dispatches it once SQS is back.
	during := submit("during-0", "0")
	names[during] = "during-0"
	ids = append(ids, during)
	require.Equal(t, "QUEUED", c.Get(during).State)

	require.NoError(t, s.SQS.Process.Restart())
	require.NoError(t, s.SQS.Process.WaitReady(30*time.Second, s.SQS.Ready()))
	for name, base := range ready {
		require.Eventually(t, func() bool { return readyzCode(base) == http.StatusOK },
			30*time.Second, 100*time.Millisecond, "%s not ready again after SQS came back", name)
	}

	for i := range 5 {
		name := fmt.Sprintf("after-%d", i)
		id := submit(name, "0")
		names[id] = name
		ids = append(ids, id)
	}

	for _, id := range ids {
		j := c.WaitTerminal(id, 45*time.Second)
		require.Equal(t, "SUCCEEDED", j.State, j.String())
		terminal := 0
		for _, h := range j.History {
			require.LessOrEqual(t, h.Attempt, j.Attempt, "%s: history attempt past the job's", j)
			if (harness.Job{State: h.State}).Terminal() {
				terminal++
			}
		}
		require.Equal(t, 1, terminal, "%s: terminal states in history: %+v", j, j.History)
	}
	data, err := os.ReadFile(runs)
	require.NoError(t, err)
	counts := map[string]int{}
	for line := range strings.Lines(string(data)) {
		counts[strings.TrimSpace(line)]++
	}
	// A job runs once, unless SQS was gone for longer than its attempt's
	// lease: the runner then stops the attempt as superseded (another
	// runner may hold the message by now) and the job runs again, still
	// ending once. Only such a job may show a second run; it may also show
	// one, when its lease ran out before the superseded attempt's command
	// started.
	superseded := supersededJobs(t, runner.Logs())
	for id, name := range names {
		if superseded[id] {
			require.Contains(t, []int{1, 2}, counts[name], "job %s (%s) ran %d times (its attempt superseded)", id, name, counts[name])
			continue
		}
		require.Equal(t, 1, counts[name], "job %s (%s) ran %d times", id, name, counts[name])
	}
	require.Len(t, counts, len(names), "runs of jobs no one submitted: %v", counts)
}

// tryGet returns the job's record, or an error instead of failing the test
// (for require.Eventually conditions).
func tryGet(c *harness.Client, id string) (harness.Job, error) {
	code, body, err := c.Try(http.MethodGet, "/api/v1/jobs/"+id, nil)
	if err != nil {
		return harness.Job{}, err
	}
	if code != http.StatusOK {
		return harness.Job{}, fmt.Errorf("get %s: %d %s", id, code, body)
	}
	var j harness.Job
	if err := json.Unmarshal(body, &j); err != nil {
		return harness.Job{}, fmt.Errorf("get %s: %w", id, err)
	}
	return j, nil
}

// supersededJobs are the jobs whose attempt the runner stopped as
// superseded, read from its JSON log.
func supersededJobs(t *testing.T, logs string) map[string]bool {
	t.Helper()
	jobs := map[string]bool{}
	for line := range strings.Lines(logs) {
		var entry struct {
			Msg   string `json:"msg"`
			JobID string `json:"job_id"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "job attempt superseded; neither reported nor settled" {
			jobs[entry.JobID] = true
		}
	}
	return jobs
}
