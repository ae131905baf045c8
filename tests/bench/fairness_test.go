//go:build bench

package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/tests/harness"
)

// floodTenant is the tenant that floods the shared scheduler and broker.
const floodTenant = "flood"

// floodJobs is how many jobs the flooding tenant submits at once.
const floodJobs = 10000

// idleSamples is how many of B's jobs measure its idle latency.
const idleSamples = 1000

// floodLimit is the flooding tenant's limits.max_submits_per_second in the
// second phase of TestTenantFairness.
const floodLimit = 250

// TestTenantFairness: tenant B (bench) submits one job at a time, first
// alone (its idle submit → claimed), then while tenant A (flood), with a
// runner of its own, submits 10,000 jobs at once; B's p50/p99 under the
// flood are recorded beside the idle ones, and their ratio (the aim: p99
// within 2x the idle p99). Runners serve one tenant; the scheduler and the
// broker are shared. The flood runs twice: with no limit on A, then with
// A's submissions limited to floodLimit a second (fairness_limited_*).
func TestTenantFairness(t *testing.T) {
	r := newPathRig(t, harness.QueueNATS, map[string]string{"OUTPOST_TENANTS": benchTenant + "," + floodTenant}, map[string]string{"OUTPOST_CONCURRENCY": "64"}, 1)
	r.stack.StartRunner("flood-runner", map[string]string{"OUTPOST_TENANT": floodTenant, "OUTPOST_CONCURRENCY": "64"})
	r.latencies([]string{r.submit(&jobsv1.NoopTask{})}, time.Minute) // warm-up
	ended := r.countEnded(floodTenant)

	one := func() time.Duration {
		c, _ := r.latencies([]string{r.submit(&jobsv1.NoopTask{})}, time.Minute)
		return c[0]
	}
	// As many idle samples as flooded ones, at most: a p99 of a few
	// hundred is its second or third largest, and the ratio would move
	// with it.
	var idle []time.Duration
	for range idleSamples {
		idle = append(idle, one())
	}
	record("fairness_idle_submit_to_claimed_p50_ms", ms(percentile(idle, 50)))
	record("fairness_idle_submit_to_claimed_p99_ms", ms(percentile(idle, 99)))

	flood := func(name, prefix string) {
		// The flood: every SubmitJob published at once.
		base := ended.Load()
		start := time.Now()
		go func() {
			for i := range floodJobs {
				if err := r.publishSubmit(floodTenant, fmt.Sprintf("%s%07d", prefix, i)); err != nil {
					t.Errorf("flood: %v", err)
					return
				}
			}
		}()
		var flooded []time.Duration
		for ended.Load()-base < floodJobs && len(flooded) < 2000 {
			flooded = append(flooded, one())
		}
		during := ended.Load() - base
		require.Eventually(t, func() bool { return ended.Load()-base >= floodJobs }, 5*time.Minute, 100*time.Millisecond, "the flood never ended")
		floodTime := time.Since(start)
		record(name+"_submit_to_claimed_p50_ms", ms(percentile(flooded, 50)))
		record(name+"_submit_to_claimed_p99_ms", ms(percentile(flooded, 99)))
		record(name+"_p99_ratio_to_idle_p99", float64(percentile(flooded, 99))/float64(percentile(idle, 99)))
		record(name+"_samples", float64(len(flooded)))
		record(name+"_jobs_per_s", floodJobs/floodTime.Seconds())
		t.Logf("%s: B sampled %d jobs while A's flood ran (%d of A's %d jobs ended by the last sample)", name, len(flooded), during, floodJobs)
	}
	flood("fairness_flood", "f")

	code, out := r.stack.Client().Do("PUT", "/api/v1/tenants/"+floodTenant, map[string]any{"limits": map[string]any{"max_submits_per_second": floodLimit}})
	require.Equal(t, 200, code, string(out))
	record("fairness_limited_max_submits_per_second", floodLimit)
	flood("fairness_limited", "l")
}

// publishSubmit publishes a SubmitJob of a no-op job of tenant (not
// followed by the rig's observer). A broker slower than the publisher
// stalls the async publishes: it waits for those in flight and tries
// again, a bounded number of times.
func (r *pathRig) publishSubmit(tenant, id string) error {
	msg, err := events.Encode(r.subs.Submit(tenant), &jobsv1.SubmitJob{
		Envelope: events.NewEnvelope(tenant, 0, id, ""),
		JobId:    id,
		Spec:     &jobsv1.JobSpec{Pool: "default", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}},
	}, "")
	if err != nil {
		return err
	}
	nm := &nats.Msg{Subject: msg.Subject, Data: msg.Data, Header: nats.Header{}}
	for k, v := range msg.Header {
		nm.Header.Set(k, v)
	}
	for range 100 {
		_, err = r.js.PublishMsgAsync(nm)
		if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			break
		}
		select {
		case <-r.js.PublishAsyncComplete():
		case <-time.After(10 * time.Second):
		}
	}
	if err != nil {
		return fmt.Errorf("publish SubmitJob %s: %w", id, err)
	}
	return nil
}

// countEnded counts the jobs of tenant recorded SUCCEEDED from now on.
func (r *pathRig) countEnded(tenant string) *atomic.Int64 {
	w := r.watchJobs(tenant)
	var n atomic.Int64
	go func() {
		seen := map[string]bool{} // a record is written again after it ends (results)
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var rec struct {
				State string `json:"state"`
			}
			if json.Unmarshal(e.Value(), &rec) == nil && rec.State == "SUCCEEDED" && !seen[e.Key()] {
				seen[e.Key()] = true
				n.Add(1)
			}
		}
	}()
	return &n
}
