package natsjs_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv/kvtest"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	"github.com/outposthq/outpost/libs/queue/queuetest"
)

const testMaxPayload = 64 << 10

func testLogger() *slog.Logger {
	if os.Getenv("NATSJS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// connect opens a connection that is closed when the test ends.
func connect(t testing.TB, cfg natsjs.Config) *natsjs.Conn {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := natsjs.Connect(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func harness(url string, cfg natsjs.Config, caps queuetest.Capabilities) func(t *testing.T) queuetest.Harness {
	return func(t *testing.T) queuetest.Harness {
		cfg := cfg
		cfg.URL = url
		cfg.MaxPayload = testMaxPayload
		c := connect(t, cfg)
		return queuetest.Harness{
			Broker:       c,
			Subjects:     c.Subjects(),
			Tenant:       queuetest.UniqueTenant(),
			MaxPayload:   c.MaxPayload(),
			Capabilities: caps,
		}
	}
}

var jetStreamCaps = queuetest.Capabilities{
	OrderedDelivery: true,
	Read:            true,
	Dedupe:          true,
	FanOut:          true,
	TimingTolerance: 2 * time.Second,
}

func TestConformanceSingleNode(t *testing.T) {
	srv := natstest.RunServer(t)
	for _, layout := range []natsjs.Layout{natsjs.LayoutPerTenant, natsjs.LayoutShared} {
		t.Run(string(layout), func(t *testing.T) {
			// One stack per layout: their stream subjects would overlap.
			queuetest.Run(t, harness(srv.ClientURL(), natsjs.Config{Stack: "single-" + string(layout), Layout: layout, Name: "conformance"}, jetStreamCaps))
		})
	}
}

func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node cluster")
	}
	nodes := natstest.RunCluster(t, 3)
	caps := jetStreamCaps
	caps.TimingTolerance = 3 * time.Second
	// A delivery crosses a route from the consumer's leader and, on a
	// loaded machine, can reach the handler a few hundred milliseconds
	// after the leader started its ack timer.
	caps.EarlySlack = 400 * time.Millisecond
	url := natstest.URL(nodes...)
	queuetest.Run(t, harness(url, natsjs.Config{Stack: "cluster", Replicas: 3, Name: "conformance"}, caps))

	// Replicated KV buckets report CAS conflicts with another error code.
	t.Run("KV", func(t *testing.T) {
		kvtest.Run(t, stores(connect(t, natsjs.Config{URL: url, Stack: "cluster", Replicas: 3})), kvtest.Replicated())
	})
}
