//go:build bench

package bench

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/tests/harness"
)

// historyJobs is how many finished jobs the tenant keeps in
// TestIdleWithHistory.
const historyJobs = 20000

// historyIdle is how long TestIdleWithHistory measures the idle stack, and
// historyView how often it reads the pools meanwhile.
const (
	historyIdle = 15 * time.Second
	historyView = 5 * time.Second
)

// TestIdleWithHistory: what the stack costs while nothing runs, once the
// tenant keeps historyJobs finished jobs (jobs.retention keeps 30 days of
// them): the scheduler's reaper passes (every 5 s) and, every 5 s, a
// GET /api/v1/pools and a scrape of the scheduler's /metrics (the pool
// gauges), as a dashboard and Prometheus would. Each process's CPU over
// the idle time, in cores.
func TestIdleWithHistory(t *testing.T) {
	r := newPathRig(t, harness.QueueNATS, nil, map[string]string{"OUTPOST_CONCURRENCY": "64"}, 1)
	r.burst(historyJobs)

	client := r.stack.Client()
	view := func() {
		code, out := client.Do("GET", "/api/v1/pools", nil)
		require.Equal(t, http.StatusOK, code, string(out))
		resp, err := http.Get(r.stack.Ops + "/metrics") //nolint:noctx // a bench's scrape
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	view() // the tenant's first view lists the bucket, as a start does
	before := r.cpu()
	start := time.Now()
	tick := time.NewTicker(historyView)
	defer tick.Stop()
	for time.Since(start) < historyIdle {
		<-tick.C
		view()
	}
	elapsed := time.Since(start)
	record("idle_history_jobs", historyJobs)
	for name, after := range r.cpu() {
		record("idle_history_cpu_util_"+name, float64(after-before[name])/float64(elapsed))
	}
}
