//go:build bench

package bench

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/outposthq/outpost/libs/testenv"
	"github.com/outposthq/outpost/tests/harness"
)

// restClients is how many clients submit at once in the REST throughput
// run.
const restClients = 32

// restPlan sizes the REST runs; SQS (fauxqs) runs one job in flight
// only, fewer of them.
var restPlan = struct{ burst, inflight, sqsInflight int }{burst: 2000, inflight: 300, sqsInflight: 100}

// TestRESTPath measures submission through the REST API on JetStream, in
// one run both ways: the API recording and dispatching the job itself
// (rest_direct_, api.direct_submit, the default) and the API publishing a
// SubmitJob and polling for the record (rest_queue_). Figures: the submit's
// answer time and submit→claimed with one job in flight, and jobs/s and
// broker writes per job from restClients clients. On SQS (FIFO queues,
// rest_sqs_direct_ and rest_sqs_queue_): one job in flight, with the SQS
// requests per job.
func TestRESTPath(t *testing.T) {
	for _, v := range []struct{ prefix, queue, direct string }{
		{"rest_direct_", harness.QueueNATS, "true"},
		{"rest_queue_", harness.QueueNATS, "false"},
		{"rest_sqs_direct_", harness.QueueSQS, "true"},
		{"rest_sqs_queue_", harness.QueueSQS, "false"},
	} {
		t.Run(v.prefix, func(t *testing.T) {
			r := newPathRig(t, v.queue, map[string]string{"OUTPOST_API_DIRECT_SUBMIT": v.direct},
				map[string]string{"OUTPOST_CONCURRENCY": "64"}, 1)
			api := &testenv.Client{
				Base: r.stack.API, Token: r.stack.Token, Header: map[string]string{"X-Outpost-Tenant": benchTenant},
				HTTP: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: restClients}},
			}
			// Warm-up: connections, streams and consumers.
			r.latencies([]string{r.restSubmit(t, api)}, time.Minute)

			t.Run("one in flight", func(t *testing.T) {
				var answered, claimed []time.Duration
				n := restPlan.inflight
				if v.queue == harness.QueueSQS {
					n = restPlan.sqsInflight
				}
				reqBefore := r.sqsRequests()
				for range n {
					id := r.restSubmit(t, api)
					answered = append(answered, r.answeredAfter(id))
					c, _ := r.latencies([]string{id}, time.Minute)
					claimed = append(claimed, c...)
				}
				name := v.prefix + "1_inflight_"
				record(name+"answered_p50_ms", ms(percentile(answered, 50)))
				record(name+"answered_p99_ms", ms(percentile(answered, 99)))
				record(name+"submit_to_claimed_p50_ms", ms(percentile(claimed, 50)))
				record(name+"submit_to_claimed_p99_ms", ms(percentile(claimed, 99)))
				r.recordRequests(name, reqBefore, n)
			})
			if v.queue == harness.QueueSQS {
				return
			}

			t.Run("throughput", func(t *testing.T) {
				n := restPlan.burst
				before := r.storedMessages()
				cpuBefore := r.cpu()
				ids := make(chan string, n)
				start := time.Now()
				var wg sync.WaitGroup
				for c := range restClients {
					wg.Go(func() {
						for i := c; i < n; i += restClients {
							ids <- r.restSubmit(t, api)
						}
					})
				}
				wg.Wait()
				close(ids)
				var all []string
				for id := range ids {
					all = append(all, id)
				}
				r.latencies(all, 5*time.Minute)
				elapsed := time.Since(start)
				record(v.prefix+"jobs_per_s", float64(n)/elapsed.Seconds())
				record(v.prefix+"broker_writes_per_job", float64(r.storedMessages()-before)/float64(n))
				for name, after := range r.cpu() {
					record(v.prefix+"cpu_us_per_job_"+name, float64(after-cpuBefore[name])/float64(time.Microsecond)/float64(n))
				}
			})
		})
	}
}

// restSubmit submits a no-op job through the REST API and returns its id;
// the submit time is taken before the request, and the answer's time kept
// for answeredAfter. The API must answer 201.
func (r *pathRig) restSubmit(t *testing.T, api *testenv.Client) string {
	r.mu.Lock()
	r.seq++
	id := fmt.Sprintf("r%07d", r.seq)
	r.running[id] = make(chan time.Time, 1)
	r.done[id] = make(chan time.Time, 1)
	at := time.Now()
	r.submitted[id] = at
	r.mu.Unlock()
	code, body, err := api.Try(http.MethodPost, "/api/v1/jobs", map[string]any{
		"id": id, "pool": "default", "task": map[string]any{"noop": map[string]any{}},
	})
	answered := time.Since(at)
	if err != nil || code != http.StatusCreated {
		// Errorf, not require: this may run on a client's goroutine.
		t.Errorf("submit %s: %d %s %v", id, code, body, err)
	}
	r.mu.Lock()
	r.answered[id] = answered
	r.mu.Unlock()
	return id
}

// answeredAfter is how long the API took to answer the submit of id.
func (r *pathRig) answeredAfter(id string) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.answered[id]
}
