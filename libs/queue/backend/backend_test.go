package backend_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/backend"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/queue/queuetest"
	"github.com/outposthq/outpost/libs/queue/sqs"
	"github.com/outposthq/outpost/libs/queue/sqs/sqstest"
)

func TestValidate(t *testing.T) {
	sqsWith := func(edit func(*backend.SQS)) backend.Config {
		c := backend.Default()
		c.Kind = backend.KindSQS
		edit(&c.SQS)
		return c
	}
	cases := []struct {
		name string
		cfg  backend.Config
		bad  string // the key in the error; "" for a valid configuration
	}{
		{"default is nats", backend.Default(), ""},
		{"nats ignores the sqs section", func() backend.Config {
			c := backend.Default()
			c.SQS.WaitTime = time.Hour
			return c
		}(), ""},
		{"sqs defaults", sqsWith(func(*backend.SQS) {}), ""},
		{"unknown kind", backend.Config{Kind: "kafka"}, "queue.kind"},
		{"queue type", sqsWith(func(s *backend.SQS) { s.QueueType = "lifo" }), "queue.sqs.queue_type"},
		{"prefix characters", sqsWith(func(s *backend.SQS) { s.QueuePrefix = "prod." }), "queue.sqs.queue_prefix"},
		{"prefix length", sqsWith(func(s *backend.SQS) { s.QueuePrefix = "abcdefghijklmnopqrstu" }), "queue.sqs.queue_prefix"},
		{"visibility", sqsWith(func(s *backend.SQS) { s.VisibilityTimeout = 13 * time.Hour }), "queue.sqs.visibility_timeout"},
		{"wait time too long", sqsWith(func(s *backend.SQS) { s.WaitTime = 21 * time.Second }), "queue.sqs.wait_time"},
		{"wait time not whole seconds", sqsWith(func(s *backend.SQS) { s.WaitTime = 1500 * time.Millisecond }), "queue.sqs.wait_time"},
		{"linger", sqsWith(func(s *backend.SQS) { s.BatchLinger = -time.Millisecond }), "queue.sqs.batch_linger"},
		{"no linger", sqsWith(func(s *backend.SQS) { s.BatchLinger = 0 }), ""},
		{"discovery interval", sqsWith(func(s *backend.SQS) { s.DiscoveryInterval = 0 }), "queue.sqs.discovery_interval"},
		{"jobs max deliveries", sqsWith(func(s *backend.SQS) { s.JobsMaxDeliveries = 1000 }), "queue.sqs.jobs_max_deliveries"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.bad == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, backend.ErrInvalid)
			require.ErrorContains(t, err, tc.bad)
		})
	}
}

func TestSQSConfig(t *testing.T) {
	cases := []struct {
		name       string
		edit       func(*backend.SQS)
		opts       backend.Options
		wantLinger time.Duration
		wantJobs   int
	}{
		{"defaults", func(*backend.SQS) {}, backend.Options{}, sqs.DefaultBatchLinger, 0},
		{"zero linger sends at once", func(s *backend.SQS) { s.BatchLinger = 0 }, backend.Options{}, -1, 0},
		{"jobs max deliveries derived from the runner", func(*backend.SQS) {}, backend.Options{JobsMaxDeliveries: 4}, sqs.DefaultBatchLinger, 4},
		{"jobs max deliveries configured", func(s *backend.SQS) { s.JobsMaxDeliveries = 7 }, backend.Options{JobsMaxDeliveries: 4}, sqs.DefaultBatchLinger, 7},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := backend.Default().SQS
			tc.edit(&s)
			tc.opts.Stack = "blue"
			got := backend.SQSConfig(s, tc.opts)
			require.Equal(t, tc.wantLinger, got.BatchLinger)
			require.Equal(t, tc.wantJobs, got.JobsMaxDeliveries)
			require.Equal(t, "blue", got.Stack)
			require.Equal(t, sqs.QueueFIFO, got.QueueType)
		})
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestOpenNATS(t *testing.T) {
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := backend.Open(ctx, backend.Default(), backend.Options{NATS: natsjs.Config{URL: srv.ClientURL()}, Logger: quiet()})
	require.NoError(t, err)
	defer b.Close()
	require.NotNil(t, b.NATS)
	require.Nil(t, b.SQS)
	require.Same(t, b.NATS, b.Broker)
	require.NoError(t, b.Ready())
}

func TestOpenRefusesInvalidConfig(t *testing.T) {
	_, err := backend.Open(context.Background(), backend.Config{Kind: "kafka"}, backend.Options{})
	require.ErrorIs(t, err, backend.ErrInvalid)
}

// With History, the broker publishes and consumes on SQS and reads on
// JetStream; EnsureTenant provisions both.
func TestOpenSQSWithHistory(t *testing.T) {
	fq := sqstest.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	srv := natstest.RunServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := backend.Default()
	cfg.Kind = backend.KindSQS
	cfg.SQS.Endpoint, cfg.SQS.Region, cfg.SQS.WaitTime = fq.Endpoint, sqstest.Region, time.Second
	b, err := backend.Open(ctx, cfg, backend.Options{NATS: natsjs.Config{URL: srv.ClientURL()}, History: true, Logger: quiet()})
	require.NoError(t, err)
	defer b.Close()
	require.NotNil(t, b.NATS)
	require.NotNil(t, b.SQS)
	require.NoError(t, b.Ready())

	tenant := queuetest.UniqueTenant()
	subjects := queue.NewSubjects("")
	require.NoError(t, b.Broker.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
	_, err = b.SQS.QueueName(subjects.Submit(tenant))
	require.NoError(t, err)

	// Published through the broker: on SQS, not in JetStream's history.
	logs := subjects.JobLogs(tenant, "j1")
	require.NoError(t, b.Broker.Publish(ctx, queue.Message{Subject: logs, Data: []byte("via sqs")}))
	got := make(chan string, 1)
	c, err := b.SQS.Consume(ctx, queue.ConsumerConfig{Name: "t", Subject: subjects.All(tenant, queue.RoleJobEvents)}, func(ctx context.Context, d queue.Delivery) {
		got <- string(d.Data())
		_ = d.Ack(ctx)
	})
	require.NoError(t, err)
	defer func() { _ = c.Stop(ctx) }()
	require.Equal(t, "via sqs", <-got)

	// Copied into JetStream (what the scheduler's bridge does): readable
	// through the broker.
	require.NoError(t, b.NATS.Publish(ctx, queue.Message{Subject: logs, Data: []byte("copied")}))
	var read []string
	require.NoError(t, b.Broker.Read(ctx, logs, queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		read = append(read, string(m.Data))
		return true
	}))
	require.Equal(t, []string{"copied"}, read)
}
