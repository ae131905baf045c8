package e2e

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/queue/sqs"
	"github.com/outposthq/outpost/tests/harness"
)

// loseDeliveries takes the pool's work message lost times as a runner
// that never sees it would: each delivery is left unsettled until its ack
// wait (one second) passes. The broker counts every one, as JetStream
// counts a delivery to a pull request that expired during a leader
// election and SQS a receive whose answer never arrived.
func loseDeliveries(t *testing.T, s *harness.Stack, lost int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var b queue.Broker
	if s.SQS != nil {
		b = s.SQSBroker(sqs.Config{WaitTime: time.Second})
	} else {
		conn, err := natsjs.Connect(ctx, natsjs.Config{URL: s.BrokerURL, Name: "e2e-lost-deliveries", Credentials: s.NATS.ObserverCreds()})
		require.NoError(t, err)
		defer func() { _ = conn.Close() }()
		b = conn
	}
	var seen atomic.Int32
	cfg := queue.ConsumerConfig{
		Name: "runners-" + s.Pool, Subject: queue.NewSubjects("").Jobs(s.Tenant, s.Pool),
		AckWait: time.Second, MaxDeliveries: -1, Concurrency: 1,
	}
	var c queue.Consumer
	// The pool's queue exists once the scheduler dispatched to it.
	require.Eventually(t, func() bool {
		var err error
		c, err = b.Consume(ctx, cfg, func(_ context.Context, d queue.Delivery) {
			if int(seen.Load()) < lost {
				seen.Add(1)
			}
		})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "the pool's queue never appeared")
	require.Eventually(t, func() bool { return int(seen.Load()) >= lost }, 40*time.Second, 50*time.Millisecond,
		"the work message was not delivered %d times", lost)
	stopCtx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	require.NoError(t, c.Stop(stopCtx))
}

// Deliveries that never reached a runner are not attempts. A job whose
// work message was delivered four times without starting (more than its
// three attempts) runs and succeeds as attempt 1 on both backends: its
// runner hands the dispatch back, and the scheduler, which counts the
// attempts that started, dispatches it again.
func TestLostDeliveriesAreNotAttempts(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.start(t, nil)
			c := s.Client()
			job := c.Submit(harness.Command("default", "sh", "-c", "echo ran"))
			loseDeliveries(t, s, 4)
			require.Equal(t, "QUEUED", c.Get(job.ID).State)

			s.StartRunner("runner-1", nil)
			done := c.WaitTerminal(job.ID, 60*time.Second)
			require.Equal(t, "SUCCEEDED", done.State, done.String())
			require.Equal(t, 1, done.Attempt, done.String())
			require.Equal(t, []int{1}, attempts(done, "RUNNING"), done.String())
			reissued := false
			for _, h := range done.History {
				reissued = reissued || strings.Contains(h.Reason, "with 0 of 3 attempts started; dispatched again as attempt 1")
			}
			require.True(t, reissued, "the history shows the dispatch handed back: %s", done.String())
		})
	}
}

// Attempts that really started and whose runners died (SIGKILL each time)
// still exhaust the job: with two attempts allowed, the third delivery is
// not run, and the job fails with the reason, dead-lettered.
func TestKilledRunnersExhaustTheAttempts(t *testing.T) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			s := b.start(t, nil)
			c := s.Client()
			spec := harness.Command("default", "sleep", "30")
			spec["retry"] = map[string]any{"max_attempts": 2}
			job := c.Submit(spec)
			for i, name := range []string{"runner-a", "runner-b"} {
				r := s.StartRunner(name, nil)
				c.WaitFor(job.ID, 60*time.Second, func(j harness.Job) bool { return j.State == "RUNNING" && j.Attempt == i+1 })
				r.Kill()
			}
			last := s.StartRunner("runner-c", nil)
			done := c.WaitTerminal(job.ID, 60*time.Second)
			require.Equal(t, "FAILED", done.State, done.String())
			require.Equal(t, 2, done.Attempt, done.String())
			require.Equal(t, "dead-lettered: max attempts (2) exhausted; the runner of attempt 2 was lost", done.Reason)
			require.Equal(t, []int{1, 2}, attempts(done, "RUNNING"), done.String())
			last.WaitLog("job delivered past its last attempt", 10*time.Second)
			require.NotContains(t, last.Logs(), "job attempt started")
		})
	}
}
