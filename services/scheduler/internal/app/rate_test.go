package app_test

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// TestSubmissionRate: limits.max_submits_per_second paces a tenant's
// submissions: the API answers 429 with Retry-After past it, a SubmitJob
// waits on the queue and is recorded once its turn comes, and nothing is
// lost.
func TestSubmissionRate(t *testing.T) {
	e := newEnv(t)
	code, out := e.do("PUT", "/api/v1/tenants/default", "", `{"limits":{"max_submits_per_second":-1}}`)
	require.Equal(t, http.StatusBadRequest, code, string(out))
	require.Equal(t, "limits.max_submits_per_second", decode[map[string]string](t, out)["field"])

	code, out = e.do("PUT", "/api/v1/tenants/default", "", `{"limits":{"max_submits_per_second":1}}`)
	require.Equal(t, http.StatusOK, code, string(out))
	require.Contains(t, string(out), `"max_submits_per_second":1`)

	t.Run("the API answers 429 past the rate", func(t *testing.T) {
		e.submit("", noopJob(nil)) // the burst: one
		code, header, out := e.doHeader("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": "too-soon"}))
		require.Equal(t, http.StatusTooManyRequests, code, string(out))
		require.Equal(t, "1", header.Get("Retry-After"), "one submission a second")
		require.Contains(t, string(out), "submission rate")
		code, _ = e.do("GET", "/api/v1/jobs/too-soon", "", nil)
		require.Equal(t, http.StatusNotFound, code, "a refused submission records nothing")
		require.Equal(t, 1.0, e.metric("outpost_submits_throttled_total", map[string]string{"via": "api"}))
	})

	t.Run("SubmitJobs wait their turn on the queue", func(t *testing.T) {
		spec := &jobsv1.JobSpec{Pool: "default", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}
		// With a burst of one, at least the last two wait, however long
		// the first took to come.
		for i := range 3 {
			id := fmt.Sprintf("paced-%d", i)
			e.publish(e.subjects.Submit("default"), &jobsv1.SubmitJob{Envelope: events.NewEnvelope("default", 0, "", ""), JobId: id, Spec: spec}, "submit/"+id)
		}
		for i := range 3 {
			e.waitState("", fmt.Sprintf("paced-%d", i), "QUEUED")
		}
		require.GreaterOrEqual(t, e.metric("outpost_submits_throttled_total", map[string]string{"via": "queue"}), 2.0)
	})

	t.Run("0 lifts the limit", func(t *testing.T) {
		code, out := e.do("PUT", "/api/v1/tenants/default", "", `{"limits":{"max_submits_per_second":0}}`)
		require.Equal(t, http.StatusOK, code, string(out))
		for range 5 {
			e.submit("", noopJob(nil))
		}
	})
}
