//go:build bench

package bench

import (
	"context"
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
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/tests/harness"
)

const substrateMessages = 50_000

// rawSubject is the raw stream's subject: a pool's work subject, which the
// control plane's credentials may publish to.
var rawSubject = queue.NewSubjects("").Jobs("bench", "default")

// brokerProcess is outpost-broker run as a process, the same binary
// `make run` uses, in operator mode, with control-plane (scheduler role)
// credentials in creds.
type brokerProcess struct {
	*harness.Process
	healthURL string
	creds     string
}

// HealthURL is the broker's /readyz.
func (b brokerProcess) HealthURL() string { return b.healthURL }

func startBroker(t *testing.T) (brokerProcess, string) {
	t.Helper()
	n := harness.StartNATS(t, harness.NATSOptions{})
	b := brokerProcess{Process: n.Nodes[0], healthURL: n.Readyz[0], creds: n.Creds("bench", "-role", "scheduler")}
	return b, n.URL
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
	// The control plane's credentials publish to the Outpost subjects of
	// its roles: the raw stream takes a pool's work subject.
	b, url := startBroker(t)
	opts, err := harness.ClientOptions(b.creds)
	require.NoError(t, err)
	nc, err := nats.Connect(url, opts...)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	require.NoError(t, err)
	ctx := context.Background()

	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: "RAW", Subjects: []string{rawSubject}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage,
	})
	require.NoError(t, err)
	payload := dispatchPayload(t)
	record("payload_bytes", float64(len(payload)))

	start := time.Now()
	for range substrateMessages {
		_, err := js.PublishAsync(rawSubject, payload)
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
