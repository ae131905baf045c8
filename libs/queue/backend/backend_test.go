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

func TestSettingsValidate(t *testing.T) {
	with := func(edit func(*backend.Settings)) backend.Settings {
		s := backend.DefaultSettings("svc")
		edit(&s)
		return s
	}
	sqsKind := func(s *backend.Settings) { s.Queue.Kind = backend.KindSQS }
	cases := []struct {
		name string
		s    backend.Settings
		req  backend.Requirements
		bad  []string // keys in the error; none for valid settings
	}{
		{"defaults", backend.DefaultSettings("svc"), backend.Requirements{}, nil},
		{"shared layout", with(func(s *backend.Settings) { s.Broker.Layout = queue.LayoutShared }), backend.Requirements{}, nil},
		{"no url", with(func(s *backend.Settings) { s.Broker.URL = "" }), backend.Requirements{}, []string{"broker.url"}},
		{"sqs needs no url", with(func(s *backend.Settings) { sqsKind(s); s.Broker.URL = "" }), backend.Requirements{SQS: true}, nil},
		{"sqs with history needs the url", with(func(s *backend.Settings) { sqsKind(s); s.Broker.URL = "" }), backend.Requirements{SQS: true, History: true}, []string{"broker.url"}},
		{"sqs refused", with(sqsKind), backend.Requirements{}, []string{"queue.kind"}},
		{"sqs section checked", with(func(s *backend.Settings) { sqsKind(s); s.Queue.SQS.WaitTime = time.Hour }), backend.Requirements{SQS: true}, []string{"queue.sqs.wait_time"}},
		{"every fault at once", with(func(s *backend.Settings) {
			s.Broker.Stack, s.Broker.Layout, s.Broker.Replicas, s.Broker.TLS.Cert = "a.b", "mixed", 2, "c.pem"
		}), backend.Requirements{}, []string{"broker.stack", "broker.layout", "broker.replicas: 2 must be 1 or 3", "broker.tls"}},
		{"empty layout", with(func(s *backend.Settings) { s.Broker.Layout = "" }), backend.Requirements{}, []string{"broker.layout"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate(tc.req)
			if len(tc.bad) == 0 {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, backend.ErrInvalid)
			for _, b := range tc.bad {
				require.ErrorContains(t, err, b)
			}
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
			got := backend.SQSConfig(s, "blue", tc.opts)
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
	s := backend.DefaultSettings("test")
	s.Broker.URL = srv.ClientURL()
	b, err := backend.Open(ctx, s, backend.Options{Logger: quiet()})
	require.NoError(t, err)
	defer b.Close()
	require.NotNil(t, b.JetStream())
	require.Nil(t, b.Queues())
	require.Same(t, b.JetStream(), b.Broker)
	require.NoError(t, b.Ready())
}

func TestOpenRefusesInvalidConfig(t *testing.T) {
	_, err := backend.Open(context.Background(), backend.Settings{Queue: backend.Config{Kind: "kafka"}}, backend.Options{})
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
	cfg := backend.DefaultSettings("test")
	cfg.Broker.URL = srv.ClientURL()
	cfg.Queue.Kind = backend.KindSQS
	cfg.Queue.SQS.Endpoint, cfg.Queue.SQS.Region, cfg.Queue.SQS.WaitTime = fq.Endpoint, sqstest.Region, time.Second
	b, err := backend.Open(ctx, cfg, backend.Options{History: true, Logger: quiet()})
	require.NoError(t, err)
	defer b.Close()
	require.NotNil(t, b.JetStream())
	require.NotNil(t, b.Queues())
	require.NoError(t, b.Ready())

	tenant := queuetest.UniqueTenant()
	subjects := queue.NewSubjects("")
	require.NoError(t, b.Broker.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
	require.NoError(t, b.Queues().EnsureQueues(ctx, subjects.Jobs(tenant, "p1")))

	// Published through the broker: on SQS, not in JetStream's history.
	logs := subjects.JobLogs(tenant, "j1")
	require.NoError(t, b.Broker.Publish(ctx, queue.Message{Subject: logs, Data: []byte("via sqs")}))
	got := make(chan string, 1)
	c, err := b.Queues().Consume(ctx, queue.ConsumerConfig{Name: "t", Subject: subjects.All(tenant, queue.RoleJobEvents)}, func(ctx context.Context, d queue.Delivery) {
		got <- string(d.Data())
		_ = d.Ack(ctx)
	})
	require.NoError(t, err)
	defer func() { _ = c.Stop(ctx) }()
	require.Equal(t, "via sqs", <-got)

	// Copied into JetStream (what the scheduler's bridge does): readable
	// through the broker.
	require.NoError(t, b.JetStream().Publish(ctx, queue.Message{Subject: logs, Data: []byte("copied")}))
	var read []string
	require.NoError(t, b.Broker.Read(ctx, logs, queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		read = append(read, string(m.Data))
		return true
	}))
	require.Equal(t, []string{"copied"}, read)
}
