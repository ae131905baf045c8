//go:build bench

package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/signing"
	"github.com/outposthq/outpost/libs/testenv"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/tests/harness"
)

const substrateMessages = 50_000

// brokerProcess is outpost-broker run as a process, the same binary
// `make run` uses.
type brokerProcess struct {
	*harness.Process
	healthURL string
}

// HealthURL is the broker's /readyz.
func (b brokerProcess) HealthURL() string { return b.healthURL }

func startBroker(t *testing.T) (brokerProcess, string) {
	t.Helper()
	port, health := testenv.FreePort(t), testenv.FreePort(t)
	p := harness.Start(t, "broker", "outpost-broker", nil,
		"-listen", fmt.Sprintf("127.0.0.1:%d", port),
		"-health", fmt.Sprintf("127.0.0.1:%d", health),
		"-data", filepath.Join(t.TempDir(), "js"))
	b := brokerProcess{Process: p, healthURL: fmt.Sprintf("http://127.0.0.1:%d/readyz", health)}
	harness.WaitReady(t, b.healthURL, 30*time.Second)
	return b, fmt.Sprintf("nats://127.0.0.1:%d", port)
}

// dispatchPayload is a JobDispatched as the scheduler sends it for a no-op
// job: the substrate is measured with messages of the same size.
func dispatchPayload(t *testing.T) []byte {
	t.Helper()
	m := &jobsv1.JobDispatched{
		Envelope:     events.NewEnvelope("bench", 1, "job-0000000000000000000000", ""),
		JobId:        "job-0000000000000000000000",
		Spec:         &jobsv1.JobSpec{Pool: "default", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}, Timeout: durationpb.New(time.Hour)},
		SubmittedAt:  timestamppb.Now(),
		AttemptToken: "AAAAAAAAAAAAAAAAAAAAAA",
	}
	key := harness.NewSigningKey(t, "bench-1")
	require.NoError(t, key.Signer.Sign(m, signing.Binding{Tenant: "bench", Scope: signing.PoolScope("default"), Subject: m.JobId, Attempt: 1}))
	data, err := proto.Marshal(m)
	require.NoError(t, err)
	return data
}

// TestSubstrate measures raw JetStream on the broker binary: async publish
// into a file-backed work-queue stream, then a durable pull consumer that
// acks every message. These rates are what the job path is compared with.
func TestSubstrate(t *testing.T) {
	_, url := startBroker(t)
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	require.NoError(t, err)
	ctx := context.Background()

	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{"raw.>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	})
	require.NoError(t, err)
	payload := dispatchPayload(t)
	record("payload_bytes", float64(len(payload)))

	start := time.Now()
	for range substrateMessages {
		_, err := js.PublishAsync("raw.jobs.default", payload)
		require.NoError(t, err)
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		t.Fatal("raw publish did not complete")
	}
	record("raw_publish_async_msgs_per_s", substrateMessages/time.Since(start).Seconds())

	cons, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: "raw", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1000,
	})
	require.NoError(t, err)
	var n atomic.Int64
	done := make(chan struct{})
	start = time.Now()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		if n.Add(1) == substrateMessages {
			close(done)
		}
	}, jetstream.PullMaxMessages(500))
	require.NoError(t, err)
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("raw consume got %d of %d", n.Load(), substrateMessages)
	}
	record("raw_consume_ack_msgs_per_s", substrateMessages/time.Since(start).Seconds())
	cc.Stop()
}
