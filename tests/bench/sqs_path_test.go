//go:build bench

package bench

import (
	"strings"
	"testing"

	"github.com/outposthq/outpost/tests/harness"
)

// sqsPlans are smaller than the JetStream one: fauxqs (an SQS server in
// one Node process) shares the machine's cores with the services. The
// second shows what a longer batch linger buys at a moderate rate: fuller
// batches (fewer requests per job) for more latency per hop.
var sqsPlans = []pathPlan{
	{prefix: "sqs_", burst: 2000, inflight: 100, rate: 200, seconds: 5},
	{prefix: "sqs_linger50ms_", rate: 200, seconds: 5, pacedOnly: true, env: map[string]string{"OUTPOST_SQS_BATCH_LINGER": "50ms"}},
}

// TestSQSJobPath runs the job path with the scheduler and the runner on
// SQS (fauxqs), beside the same figures on JetStream measured in the same
// run (TestJobPath's, or measured here when it did not run), and counts the
// SQS requests per job: the figure that sets a user's AWS bill.
func TestSQSJobPath(t *testing.T) {
	if _, ok := figure("path_jobs_per_s"); !ok {
		t.Run("jetstream", func(t *testing.T) {
			r := newPathRig(t, harness.QueueNATS, nil, map[string]string{"OUTPOST_CONCURRENCY": "64"}, 1)
			runJobPath(t, r, jetStreamPlan)
		})
	}
	for _, p := range sqsPlans {
		t.Run(strings.TrimSuffix(p.prefix, "_"), func(t *testing.T) {
			r := newPathRig(t, harness.QueueSQS, p.env, map[string]string{"OUTPOST_CONCURRENCY": "64"}, 1)
			runJobPath(t, r, p)
		})
	}
	js, _ := figure("path_jobs_per_s")
	if s, ok := figure("sqs_path_jobs_per_s"); ok && js > 0 {
		record("sqs_path_jobs_per_s_ratio_to_jetstream", s/js)
	}
}

func figure(name string) (float64, bool) { return results.Figure(name) }
