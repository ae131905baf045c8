package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/tests/harness"
)

// TestTenantRunningJobLimit: with the tenant's limits.max_running_jobs at
// 2 and a runner that could take 5, five long jobs never run more than 2
// at once, a waiting one is explained (TENANT_LIMIT, with the numbers), a
// scheduler killed while jobs wait loses none, and all end SUCCEEDED; in
// both broker layouts.
func TestTenantRunningJobLimit(t *testing.T) {
	for _, layout := range []string{"per-tenant", "shared"} {
		t.Run(layout, func(t *testing.T) {
			env := map[string]string{"OUTPOST_BROKER_LAYOUT": layout}
			renv := map[string]string{"OUTPOST_BROKER_LAYOUT": layout}
			for k, v := range runnerEnv {
				renv[k] = v
			}
			s := harness.StartStack(t, harness.StackOptions{SchedulerEnv: env, RunnerEnv: renv})
			s.StartRunner("runner-1", map[string]string{"OUTPOST_CONCURRENCY": "5"})
			c := s.Client()

			code, out := c.Do(http.MethodPut, "/api/v1/tenants/"+s.Tenant, map[string]any{"limits": map[string]any{"max_running_jobs": 2}})
			require.Equal(t, http.StatusOK, code, string(out))
			code, out = c.Do(http.MethodPut, "/api/v1/tenants/"+s.Tenant, map[string]any{"limits": map[string]any{"max_running_jobs": -2}})
			require.Equal(t, http.StatusBadRequest, code, string(out))
			require.Contains(t, string(out), `"field":"limits.max_running_jobs"`)

			const n = 5
			ids := make([]string, 0, n)
			for range n {
				ids = append(ids, c.Submit(harness.Command("default", "sleep", "3")).ID)
			}
			// The running count, sampled until every job ends.
			maxRunning := 0
			sample := func() bool {
				running, ended := 0, 0
				for _, id := range ids {
					switch j := c.Get(id); {
					case j.State == "RUNNING":
						running++
					case j.Terminal():
						ended++
					}
				}
				maxRunning = max(maxRunning, running)
				return ended == n
			}
			require.Eventually(t, func() bool {
				sample()
				return c.Get(ids[0]).State == "RUNNING" && c.Get(ids[1]).State == "RUNNING"
			}, 60*time.Second, 50*time.Millisecond)

			last := ids[n-1]
			code, out = c.Do(http.MethodGet, "/api/v1/jobs/"+last+"/explain", nil)
			require.Equal(t, http.StatusOK, code, string(out))
			var x struct {
				State       string `json:"state"`
				Summary     string `json:"summary"`
				TenantLimit struct {
					Limit   int `json:"limit"`
					Running int `json:"running"`
				} `json:"tenant_limit"`
				Reasons []struct {
					Code string `json:"code"`
				} `json:"reasons"`
			}
			require.NoError(t, json.Unmarshal(out, &x))
			require.Equal(t, "QUEUED", x.State)
			require.Equal(t, "TENANT_LIMIT", x.Reasons[0].Code, x.Summary)
			require.Equal(t, 2, x.TenantLimit.Limit)
			require.Equal(t, 2, x.TenantLimit.Running)
			require.Contains(t, x.Summary, fmt.Sprintf("tenant %q runs 2 jobs of its limit of 2 running jobs", s.Tenant))

			// Waiting jobs are kept by the broker, not by the process.
			s.RestartScheduler()

			require.Eventually(t, sample, 90*time.Second, 50*time.Millisecond)
			require.LessOrEqual(t, maxRunning, 2, "sampled running jobs")
			var spans [][2]time.Time
			for _, id := range ids {
				j := c.Get(id)
				require.Equal(t, "SUCCEEDED", j.State, j.String())
				spans = append(spans, runSpan(t, j))
			}
			require.LessOrEqual(t, overlap(spans), 2, "jobs running at once by their records' history: %v", spans)
		})
	}
}

// runSpan is when the job's (only) attempt ran, from its history.
func runSpan(t *testing.T, j harness.Job) [2]time.Time {
	var span [2]time.Time
	for _, h := range j.History {
		switch {
		case h.State == "RUNNING" && span[0].IsZero():
			span[0] = h.At
		case h.State == "SUCCEEDED":
			span[1] = h.At
		}
	}
	require.False(t, span[0].IsZero() || span[1].IsZero(), "history of %s: %+v", j.ID, j.History)
	return span
}

// overlap is the most spans that hold one instant.
func overlap(spans [][2]time.Time) int {
	type edge struct {
		at time.Time
		d  int
	}
	var edges []edge
	for _, s := range spans {
		edges = append(edges, edge{s[0], 1}, edge{s[1], -1})
	}
	// Ends sort before starts at the same instant: a slot given back is
	// taken after.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.d - b.d
	})
	cur, best := 0, 0
	for _, e := range edges {
		cur += e.d
		best = max(best, cur)
	}
	return best
}
