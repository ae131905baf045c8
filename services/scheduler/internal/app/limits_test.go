package app_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

// TestTenantLimitAPI: PUT /api/v1/tenants/{tenant} sets the running-job
// limit, and refuses bad limits with the field at fault.
func TestTenantLimitAPI(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name  string
		path  string
		body  any
		code  int
		field string
	}{
		{"negative limit", "/api/v1/tenants/default", `{"limits":{"max_running_jobs":-1}}`, http.StatusBadRequest, "limits.max_running_jobs"},
		{"unknown field", "/api/v1/tenants/default", `{"limits":{"max_running":2}}`, http.StatusBadRequest, "limits.max_running"},
		{"not a number", "/api/v1/tenants/default", `{"limits":{"max_running_jobs":"2"}}`, http.StatusBadRequest, "limits.max_running_jobs"},
		{"bad tenant name", "/api/v1/tenants/bad.name", `{"limits":{"max_running_jobs":2}}`, http.StatusBadRequest, "tenant"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := e.do("PUT", c.path, "", c.body)
			require.Equal(t, c.code, code, string(out))
			body := decode[map[string]string](t, out)
			require.NotEmpty(t, body["error"])
			require.Equal(t, c.field, body["field"])
		})
	}

	// A configured tenant takes the running-job limit (its broker limits
	// are the configuration's); a tenant added at run time takes all.
	code, out := e.do("PUT", "/api/v1/tenants/default", "", `{"limits":{"max_running_jobs":3}}`)
	require.Equal(t, http.StatusOK, code, string(out))
	require.Contains(t, string(out), `"max_running_jobs":3`)
	code, out = e.do("PUT", "/api/v1/tenants/newco", "", `{"limits":{"max_messages":1000,"max_running_jobs":1}}`)
	require.Equal(t, http.StatusCreated, code, string(out))
	require.Contains(t, string(out), `"max_running_jobs":1`)
	code, out = e.do("GET", "/api/v1/tenants", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(out), `"name":"default","limits":{"max_bytes":0,"max_messages":0,"max_running_jobs":3}`)

	// Another replica (on the same broker) applies the stored limits.
	other := newEnvOn(t, e.brokerURL)
	require.Eventually(t, func() bool {
		_, out := other.do("GET", "/api/v1/tenants", "", nil)
		return strings.Contains(string(out), `"max_running_jobs":3`) && strings.Contains(string(out), `"max_running_jobs":1`)
	}, waitFor, tick)
}

// limited is the record's mark of a job waiting for a running-job slot.
func (e *env) limited(id string) bool {
	e.t.Helper()
	code, out := e.do("GET", "/api/v1/jobs/"+id, "", nil)
	require.Equal(e.t, http.StatusOK, code, string(out))
	return decode[struct {
		Limited bool `json:"limited"`
	}](e.t, out).Limited
}

// TestTenantLimit: with a limit of 2, a third job stays QUEUED,
// undispatched, explain says why with the numbers, and it is dispatched
// when one of the two ends; in both broker layouts.
func TestTenantLimit(t *testing.T) {
	for _, layout := range []queue.Layout{config.LayoutPerTenant, config.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) {
			e := newEnv(t, func(c *config.Config) {
				c.Broker.Layout = layout
				c.Tenants.Limits.MaxRunningJobs = 2
			})
			r := e.runner("default", "default")
			var ids []string
			for range 3 {
				ids = append(ids, e.submit("", noopJob(nil)).ID)
			}
			_, m1 := r.next(t)
			_, m2 := r.next(t)
			require.ElementsMatch(t, ids[:2], []string{m1.JobId, m2.JobId}, "the two oldest take the slots")
			waiting := e.job("", ids[2])
			require.Equal(t, "QUEUED", waiting.State)

			code, out := e.do("GET", "/api/v1/jobs/"+ids[2]+"/explain", "", nil)
			require.Equal(t, http.StatusOK, code, string(out))
			x := decode[struct {
				Summary string `json:"summary"`
				Reasons []struct {
					Code string `json:"code"`
				} `json:"reasons"`
				TenantLimit struct {
					Limit, Running, Position, Waiting int
				} `json:"tenant_limit"`
			}](t, out)
			require.Equal(t, "TENANT_LIMIT", x.Reasons[0].Code)
			require.Equal(t, `tenant "default" runs 2 jobs of its limit of 2 running jobs (limits.max_running_jobs): the job is not dispatched until one of them ends; it is 1 of 1 jobs waiting, oldest first`, x.Summary)
			require.Equal(t, 2, x.TenantLimit.Limit)
			require.Equal(t, 2, x.TenantLimit.Running)
			require.True(t, e.limited(ids[2]))
			require.Never(t, func() bool { return len(r.deliveries) > 0 }, 500*time.Millisecond, 20*time.Millisecond, "a job dispatched over the limit")

			// A retry keeps its slot; the end of a job frees it.
			e.status("default", m1.JobId, jobsv1.JobState_JOB_STATE_RUNNING, 1)
			e.status("default", m1.JobId, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1)
			_, m3 := r.next(t)
			require.Equal(t, ids[2], m3.JobId)
			e.status("default", m3.JobId, jobsv1.JobState_JOB_STATE_RUNNING, 1)
			e.waitState("", ids[2], "RUNNING")
			require.False(t, e.limited(ids[2]), "the mark is cleared once dispatched")

			// A cancel frees the slot too (found by the periodic pass),
			// and lifting the limit dispatches every waiter.
			for range 2 {
				ids = append(ids, e.submit("", noopJob(nil)).ID)
			}
			require.Eventually(t, func() bool { return e.limited(ids[4]) }, waitFor, tick)
			code, out = e.do("POST", "/api/v1/jobs/"+ids[2]+"/cancel", "", nil)
			require.Equal(t, http.StatusOK, code, string(out))
			_, m4 := r.next(t)
			require.Equal(t, ids[3], m4.JobId, "the oldest waiter first")
			require.True(t, e.limited(ids[4]))
			code, out = e.do("PUT", "/api/v1/tenants/default", "", `{"limits":{"max_running_jobs":0}}`)
			require.Equal(t, http.StatusOK, code, string(out))
			_, m5 := r.next(t)
			require.Equal(t, ids[4], m5.JobId)
		})
	}
}
