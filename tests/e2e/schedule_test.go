package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/tests/harness"
)

// sourceRun is one entry of GET /api/v1/sources/{id}/runs.
type sourceRun struct {
	JobID       string    `json:"job_id"`
	State       string    `json:"state"`
	Trigger     string    `json:"trigger"`
	ScheduledAt time.Time `json:"scheduled_at"`
	Attempt     int       `json:"attempt"`
	CreatedAt   time.Time `json:"created_at"`
}

// tryRuns lists a source's runs without failing the test (for conditions).
func tryRuns(c *harness.Client, source string) ([]sourceRun, error) {
	code, body, err := c.Try(http.MethodGet, "/api/v1/sources/"+source+"/runs", nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("runs: %d %s", code, body)
	}
	var out struct {
		Source json.RawMessage `json:"source"`
		Runs   []sourceRun     `json:"runs"`
		Total  int             `json:"total"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, err
	}
	if out.Total != len(out.Runs) {
		return nil, fmt.Errorf("runs: total %d, %d listed", out.Total, len(out.Runs))
	}
	return out.Runs, nil
}

// TestScheduleFiresOncePerTimeWithTwoSchedulers: a source firing every two
// seconds (six-field cron with seconds, a time zone) on a stack with two
// scheduler processes creates exactly one job per fire time, each run
// once, listed under the source with its state on both replicas.
func TestScheduleFiresOncePerTimeWithTwoSchedulers(t *testing.T) {
	const source, fires = "every-2s", 5
	s := harness.StartStack(t, harness.StackOptions{})
	sched2, api2 := s.StartScheduler("scheduler-2", nil)
	runner := s.StartRunner("runner-1", map[string]string{"OUTPOST_HEARTBEAT_INTERVAL": "1s"})
	c1, c2 := s.Client(), s.ClientAt(api2)

	code, body := c2.Do(http.MethodPost, "/api/v1/sources", map[string]any{
		"id":       source,
		"task":     map[string]any{"noop": map[string]any{"sleep": "50ms"}},
		"timeout":  "1m",
		"schedule": map[string]any{"cron": "*/2 * * * * *", "time_zone": "Europe/Paris"},
	})
	require.Equal(t, http.StatusCreated, code, "%s", body)
	var created struct {
		Enabled  bool      `json:"enabled"`
		NextFire time.Time `json:"next_fire"`
	}
	require.NoError(t, json.Unmarshal(body, &created))
	require.True(t, created.Enabled)
	require.Zero(t, created.NextFire.Unix()%2, "next fire on an even second: %s", created.NextFire)

	scheduled := func(runs []sourceRun) int {
		n := 0
		for _, r := range runs {
			if r.Trigger == "schedule" {
				n++
			}
		}
		return n
	}
	waitRuns := func(c *harness.Client, n int) {
		t.Helper()
		require.Eventually(t, func() bool {
			runs, err := tryRuns(c, source)
			return err == nil && scheduled(runs) >= n
		}, time.Duration(n*2+30)*time.Second, 100*time.Millisecond, "never %d scheduled runs", n)
	}
	// Both replicas running; then scheduler-1 paused (SIGSTOP), so that
	// scheduler-2 must fire alone; then both again: scheduler-1 finds the
	// fires it missed already done.
	waitRuns(c1, fires)
	s.Scheduler.Pause()
	resumed := false
	defer func() {
		if !resumed {
			s.Scheduler.Resume()
		}
	}()
	waitRuns(c2, fires+2)
	sched2.WaitLog(`"source fired"`, 10*time.Second)
	s.Scheduler.Resume()
	resumed = true
	waitRuns(c1, fires+4)

	// Stop the schedule; a fire already under way may still land.
	code, body = c1.Do(http.MethodPatch, "/api/v1/sources/"+source, map[string]any{"enabled": false})
	require.Equal(t, http.StatusOK, code, "%s", body)
	disabledAt := time.Now()
	require.Never(t, func() bool {
		runs, err := tryRuns(c2, source)
		if err != nil {
			return false
		}
		for _, r := range runs {
			if r.ScheduledAt.After(disabledAt.Add(time.Second)) {
				return true
			}
		}
		return false
	}, 4*time.Second, 200*time.Millisecond, "a fire after the source was disabled")

	// A submit that the paused replica had fetched is redelivered after the
	// scheduler consumers' ack wait (30s): a fire may show late, never not.
	var runs []sourceRun
	require.Eventually(t, func() bool {
		var err error
		runs, err = tryRuns(c1, source)
		return err == nil && gapless(runs) &&
			!slices.ContainsFunc(runs, func(r sourceRun) bool { return r.State != "SUCCEEDED" })
	}, 75*time.Second, 200*time.Millisecond, "runs never all SUCCEEDED, two seconds apart: %+v", &runs)

	// One job per fire: ids <source>-<unix>, on even seconds, two seconds
	// apart with no time missing and none twice.
	require.GreaterOrEqual(t, len(runs), fires+4)
	times := make([]int64, 0, len(runs))
	for _, r := range runs {
		require.Equal(t, "schedule", r.Trigger, "%+v", r)
		require.Equal(t, fmt.Sprintf("%s-%d", source, r.ScheduledAt.Unix()), r.JobID)
		require.Zero(t, r.ScheduledAt.Unix()%2, "%+v", r)
		require.Equal(t, 1, r.Attempt, "each job ran once: %+v", r)
		times = append(times, r.ScheduledAt.Unix())
	}
	slices.Sort(times)
	for i := 1; i < len(times); i++ {
		require.Equal(t, int64(2), times[i]-times[i-1], "fire times %v", times)
	}

	// The same runs on the other replica, and no other job of the source.
	other, err := tryRuns(c2, source)
	require.NoError(t, err)
	require.ElementsMatch(t, runs, other)
	code, body = c1.Do(http.MethodGet, "/api/v1/jobs?limit=1000", nil)
	require.Equal(t, http.StatusOK, code, "%s", body)
	var list struct {
		Jobs []struct {
			ID      string            `json:"id"`
			Labels  map[string]string `json:"labels"`
			History []struct {
				State string `json:"state"`
			} `json:"history"`
		} `json:"jobs"`
	}
	require.NoError(t, json.Unmarshal(body, &list))
	var jobs int
	for _, j := range list.Jobs {
		if !strings.HasPrefix(j.ID, source+"-") {
			continue
		}
		jobs++
		require.Equal(t, source, j.Labels["outpost.io/source"], j.ID)
		var succeeded int
		for _, h := range j.History {
			if h.State == "SUCCEEDED" {
				succeeded++
			}
		}
		require.Equal(t, 1, succeeded, "job %s: %+v", j.ID, j.History)
	}
	require.Equal(t, len(runs), jobs)
	// Which replica submitted a fire while both ran depends on their
	// ticks' phases; both may submit the same one.
	var lag time.Duration
	for _, r := range runs {
		lag = max(lag, r.CreatedAt.Sub(r.ScheduledAt))
	}
	t.Logf("%d fires; submitted by scheduler-1: %d, scheduler-2: %d; longest fire to job creation: %s", len(runs),
		strings.Count(s.Scheduler.Logs(), `"source fired"`), strings.Count(sched2.Logs(), `"source fired"`), lag.Round(time.Millisecond))
	require.Equal(t, float64(len(runs)), harness.Metric(t, runner.Ops, "outpost_runner_jobs_started_total"),
		"the runner started each fire's job once")
}

// gapless reports whether the runs' scheduled times are two seconds apart.
func gapless(runs []sourceRun) bool {
	times := make([]int64, 0, len(runs))
	for _, r := range runs {
		times = append(times, r.ScheduledAt.Unix())
	}
	slices.Sort(times)
	for i := 1; i < len(times); i++ {
		if times[i]-times[i-1] != 2 {
			return false
		}
	}
	return true
}
