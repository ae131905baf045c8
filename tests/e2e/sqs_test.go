package e2e

import (
	"context"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/sqs"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/tests/harness"
)

// sqsAckWait is the runners' ack wait (the SQS visibility timeout of a
// job) in these tests.
const sqsAckWait = 3 * time.Second

// startSQSStack runs the scheduler and runners on SQS (fauxqs). Receives
// long-poll for 1s instead of 20s: a killed runner's poll stays open on the
// server until it ends and would take the job the runner left (a real
// SQS may do the same), and stopping is quicker. Heartbeat queues of new
// pools are found within a second.
func startSQSStack(t *testing.T, runner map[string]string) *harness.Stack {
	t.Helper()
	return harness.StartStack(t, sqsStackOptions(runner))
}

// sqsStackOptions are startSQSStack's options, with runner added to the
// runners' environment.
func sqsStackOptions(runner map[string]string) harness.StackOptions {
	sqsEnv := map[string]string{"OUTPOST_SQS_WAIT_TIME": "1s", "OUTPOST_SQS_DISCOVERY_INTERVAL": "1s"}
	renv := maps.Clone(runnerEnv)
	maps.Copy(renv, sqsEnv)
	renv["OUTPOST_ACK_WAIT"] = sqsAckWait.String()
	maps.Copy(renv, runner)
	return harness.StackOptions{Queue: harness.QueueSQS, RunnerEnv: renv, SchedulerEnv: sqsEnv}
}

// A message on a jobs queue that does not decode is dead-lettered by the
// runner with its reason, once. The runner serves a tenant the scheduler
// does not, so that the test is the only consumer of the dead letters
// (the scheduler would take and settle them).
func TestSQSPoisonJobIsDeadLettered(t *testing.T) {
	s := startSQSStack(t, nil)
	const tenant = "poison"
	b := s.SQSBroker(sqs.Config{WaitTime: time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, b.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
	runner := s.StartRunner("runner-1", map[string]string{"OUTPOST_TENANT": tenant})

	subjects := b.Subjects()
	garbage := []byte{0xff, 0x00, 0x13, 0x37}
	require.NoError(t, b.Publish(ctx, queue.Message{
		Subject: subjects.Jobs(tenant, "default"),
		Data:    garbage,
		Header:  map[string]string{queue.HeaderType: events.TypeName(&jobsv1.JobDispatched{})},
	}))

	var mu sync.Mutex
	var dead []queue.Delivery
	dlq, err := b.Consume(ctx, queue.ConsumerConfig{Name: "e2e-dlq", Subject: subjects.DeadLetter(tenant, queue.RoleJobs)},
		func(ctx context.Context, d queue.Delivery) {
			mu.Lock()
			dead = append(dead, d)
			mu.Unlock()
			_ = d.Ack(ctx)
		})
	require.NoError(t, err)
	defer func() { _ = dlq.Stop(context.Background()) }()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(dead)
	}
	require.Eventually(t, func() bool { return count() == 1 }, 30*time.Second, 20*time.Millisecond, "nothing dead-lettered")

	d := dead[0]
	require.Equal(t, garbage, d.Data())
	h := d.Header()
	require.Contains(t, h[queue.HeaderDeadLetterReason], "malformed")
	require.Equal(t, subjects.Jobs(tenant, "default"), h[queue.HeaderDeadLetterSubject])
	require.Equal(t, "1", h[queue.HeaderDeadLetterAttempts])
	require.Equal(t, events.TypeName(&jobsv1.JobDispatched{}), h[queue.HeaderType])

	// Not redelivered: the runner sees it once, past two visibility
	// timeouts, and it is dead-lettered once.
	require.Equal(t, 1.0, harness.Metric(t, runner.Ops, "outpost_malformed_messages_total"))
	// Never runs the condition on a goroutine that may outlive the test:
	// it must not fail the test itself.
	malformed := func() float64 {
		m, err := harness.ScrapeBy(runner.Ops, "outpost_malformed_messages_total", "")
		if err != nil {
			return 0
		}
		return m[""]
	}
	require.Never(t, func() bool { return count() > 1 || malformed() > 1 }, 2*sqsAckWait, 100*time.Millisecond,
		"the poison message came back")
}
