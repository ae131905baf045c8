package sqs_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awssqs "github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/queuetest"
	"github.com/outposthq/outpost/libs/queue/sqs"
	"github.com/outposthq/outpost/libs/queue/sqs/sqstest"
)

// server starts a fauxqs for one top-level test; t.Cleanup stops it.
func server(t *testing.T) *sqstest.Server {
	t.Helper()
	return sqstest.Start(t)
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// got collects deliveries.
type got struct {
	mu   sync.Mutex
	list []queue.Delivery
}

func (g *got) add(d queue.Delivery) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.list = append(g.list, d)
}

func (g *got) len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.list)
}

// distinct is how many different payloads were handled: a message
// delivered twice (at least once) counts once.
func (g *got) distinct() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[string]bool{}
	for _, d := range g.list {
		seen[string(d.Data())] = true
	}
	return len(seen)
}

func (g *got) all() []queue.Delivery {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]queue.Delivery(nil), g.list...)
}

func consume(t *testing.T, b queue.Broker, cfg queue.ConsumerConfig, h queue.Handler) {
	t.Helper()
	c, err := b.Consume(ctxFor(t), cfg, h)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Stop(ctx)
	})
}

func ackAll(g *got) queue.Handler {
	return func(ctx context.Context, d queue.Delivery) {
		g.add(d)
		_ = d.Ack(ctx)
	}
}

// TestRequestsPerMessage measures the batching: a burst of 100 jobs
// published at once, consumed by 10 handlers that each extend the
// visibility once and ack.
func TestRequestsPerMessage(t *testing.T) {
	s := server(t)
	for _, qt := range []sqs.QueueType{sqs.QueueFIFO, sqs.QueueStandard} {
		t.Run(string(qt), func(t *testing.T) {
			const n = 100
			b := sqstest.Connect(t, s, sqs.Config{QueueType: qt})
			tenant := queuetest.UniqueTenant()
			ctx := ctxFor(t)
			require.NoError(t, b.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
			subject := b.Subjects().Jobs(tenant, "bench")
			require.NoError(t, b.EnsureQueues(ctx, subject))

			before := b.Requests()
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					require.NoError(t, b.Publish(ctx, queue.Message{Subject: subject, Data: []byte("job " + strconv.Itoa(i)), Header: map[string]string{queue.HeaderType: "outpost.jobs.v1.JobDispatched"}}))
				})
			}
			wg.Wait()
			sent := b.Requests().Sub(before)

			before = b.Requests()
			g := &got{}
			// A receive whose response is lost on the way (a reused
			// connection the server just closed) leaves its messages
			// invisible for the visibility timeout: keep it well inside
			// the wait below so that they come back in time.
			consume(t, b, queue.ConsumerConfig{Name: "bench", Subject: subject, Concurrency: 10, AckWait: 5 * time.Second}, func(ctx context.Context, d queue.Delivery) {
				g.add(d)
				if err := d.InProgress(ctx); err != nil {
					t.Errorf("in progress: %v", err)
				}
				if err := d.Ack(ctx); err != nil {
					t.Errorf("ack: %v", err)
				}
			})
			require.Eventually(t, func() bool { return g.distinct() == n }, 20*time.Second, 10*time.Millisecond)
			require.Eventually(t, func() bool { return b.Messages()["DeleteMessageBatch"] >= uint64(g.len()) }, 5*time.Second, 10*time.Millisecond)
			handled := b.Requests().Sub(before)

			perMsg := func(rc sqs.RequestCounts, op string) float64 { return float64(rc[op]) / n }
			t.Logf("%s: per message: SendMessageBatch %.2f, ReceiveMessage %.2f, ChangeMessageVisibilityBatch %.2f, DeleteMessageBatch %.2f (send %v, consume %v)",
				qt, perMsg(sent, "SendMessageBatch"), perMsg(handled, "ReceiveMessage"), perMsg(handled, "ChangeMessageVisibilityBatch"), perMsg(handled, "DeleteMessageBatch"), sent, handled)
			require.LessOrEqual(t, sent["SendMessageBatch"], uint64(n/5), "sends are batched")
			require.LessOrEqual(t, handled["ReceiveMessage"], uint64(n/3), "receives take several messages")
			require.LessOrEqual(t, handled["DeleteMessageBatch"], uint64(n/3), "deletes are batched")
			require.LessOrEqual(t, handled["ChangeMessageVisibilityBatch"], uint64(n/3), "visibility changes are batched")
		})
	}
}

// TestRedriveMovedMessage: a consumer that allows more deliveries than the
// queue's redrive policy loses the message to SQS's own dead-lettering,
// which the dead-letter consumer sees with a reason of its own.
func TestRedriveMovedMessage(t *testing.T) {
	s := server(t)
	b := sqstest.Connect(t, s, sqs.Config{JobsMaxDeliveries: 1}) // redrive after 2 receives
	tenant := queuetest.UniqueTenant()
	require.NoError(t, b.EnsureTenant(ctxFor(t), tenant, queue.TenantLimits{}))
	subject := b.Subjects().Jobs(tenant, "p")
	g := &got{}
	consume(t, b, queue.ConsumerConfig{Name: "w", Subject: subject, MaxDeliveries: 5, AckWait: 10 * time.Second}, func(ctx context.Context, d queue.Delivery) {
		g.add(d)
		_ = d.Nak(ctx, 0)
	})
	dlq := &got{}
	consume(t, b, queue.ConsumerConfig{Name: "dlq", Subject: b.Subjects().DeadLetter(tenant, queue.RoleJobs)}, ackAll(dlq))
	require.NoError(t, b.Publish(ctxFor(t), queue.Message{Subject: subject, Data: []byte("poison"), Header: map[string]string{"X-Trace-Id": "t-9"}}))

	require.Eventually(t, func() bool { return dlq.len() == 1 }, 15*time.Second, 10*time.Millisecond)
	require.Equal(t, 2, g.len(), "handled until the redrive")
	d := dlq.all()[0]
	require.Equal(t, b.Subjects().DeadLetter(tenant, queue.RoleJobs), d.Subject())
	require.Equal(t, "poison", string(d.Data()))
	require.Equal(t, 1, d.Attempt())
	h := d.Header()
	require.Equal(t, "moved by the SQS redrive policy after 2 receives", h[queue.HeaderDeadLetterReason])
	require.Equal(t, subject, h[queue.HeaderDeadLetterSubject])
	require.Equal(t, "2", h[queue.HeaderDeadLetterAttempts])
	require.Equal(t, "t-9", h["X-Trace-Id"])
}

// TestDuplicatesFromTwoPublishers: the same DedupeID from two processes.
// FIFO queues drop the second copy on the server; on standard queues the
// consumer drops it (one consumer process here).
func TestDuplicatesFromTwoPublishers(t *testing.T) {
	s := server(t)
	for _, qt := range []sqs.QueueType{sqs.QueueFIFO, sqs.QueueStandard} {
		t.Run(string(qt), func(t *testing.T) {
			a := sqstest.Connect(t, s, sqs.Config{QueueType: qt})
			b := sqstest.Connect(t, s, sqs.Config{QueueType: qt})
			tenant := queuetest.UniqueTenant()
			require.NoError(t, a.EnsureTenant(ctxFor(t), tenant, queue.TenantLimits{}))
			subject := a.Subjects().Jobs(tenant, "p")
			for _, p := range []*sqs.Broker{a, b} {
				require.NoError(t, p.Publish(ctxFor(t), queue.Message{Subject: subject, Data: []byte("once"), DedupeID: "job-1"}))
			}
			require.NoError(t, a.Publish(ctxFor(t), queue.Message{Subject: subject, Data: []byte("other"), DedupeID: "job-2"}))
			g := &got{}
			consume(t, a, queue.ConsumerConfig{Name: "w", Subject: subject, Concurrency: 4}, ackAll(g))
			require.Eventually(t, func() bool { return g.len() >= 2 }, 10*time.Second, 10*time.Millisecond)
			require.Never(t, func() bool { return g.len() > 2 }, time.Second, 20*time.Millisecond, "duplicate handled")
		})
	}
}

func TestHeadersAndBinaryRoundTrip(t *testing.T) {
	s := server(t)
	b := sqstest.Connect(t, s, sqs.Config{})
	tenant := queuetest.UniqueTenant()
	require.NoError(t, b.EnsureTenant(ctxFor(t), tenant, queue.TenantLimits{}))
	cases := map[string]map[string]string{
		"none":         {},
		"each its own": {queue.HeaderType: "outpost.jobs.v1.JobStatus", "X-Trace-Id": "abc"},
		"packed": {"X-Empty": "", "with space": "v", "outpost.subject": "spoof", "a": "1", "b": "2", "c": "3",
			"d": "4", "e": "5", "f": "6", "g": "7", "h": "8", "i": "9"},
	}
	data := []byte{0, 1, 2, 0xfe, 0xff, '\n'}
	subject := b.Subjects().JobStatus(tenant, "job-1")
	for name, h := range cases {
		require.NoError(t, b.Publish(ctxFor(t), queue.Message{Subject: subject, Data: data, Header: h}), name)
	}
	g := &got{}
	consume(t, b, queue.ConsumerConfig{Name: "r", Subject: b.Subjects().AllJobStatus(tenant)}, ackAll(g))
	require.Eventually(t, func() bool { return g.len() == len(cases) }, 10*time.Second, 10*time.Millisecond)
	var headers []map[string]string
	for _, d := range g.all() {
		require.Equal(t, subject, d.Subject())
		require.Equal(t, data, d.Data())
		headers = append(headers, d.Header())
	}
	want := make([]map[string]string, 0, len(cases))
	for _, h := range cases {
		want = append(want, h)
	}
	require.ElementsMatch(t, want, headers)
}

func TestForeignMessage(t *testing.T) {
	s := server(t)
	b := sqstest.Connect(t, s, sqs.Config{QueueType: sqs.QueueStandard})
	tenant := queuetest.UniqueTenant()
	require.NoError(t, b.EnsureTenant(ctxFor(t), tenant, queue.TenantLimits{}))
	subject := b.Subjects().Jobs(tenant, "p")
	require.NoError(t, b.EnsureQueues(ctxFor(t), subject))
	name, err := b.QueueName(subject)
	require.NoError(t, err)
	url, err := b.Client().GetQueueUrl(ctxFor(t), &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
	require.NoError(t, err)
	_, err = b.Client().SendMessage(ctxFor(t), &awssqs.SendMessageInput{QueueUrl: url.QueueUrl, MessageBody: aws.String("hello!"),
		MessageAttributes: map[string]types.MessageAttributeValue{"X-From": {DataType: aws.String("String"), StringValue: aws.String("cli")}}})
	require.NoError(t, err)
	g := &got{}
	consume(t, b, queue.ConsumerConfig{Name: "r", Subject: subject}, ackAll(g))
	require.Eventually(t, func() bool { return g.len() == 1 }, 10*time.Second, 10*time.Millisecond)
	d := g.all()[0]
	require.Equal(t, subject, d.Subject(), "the queue's subject")
	require.Equal(t, "hello!", string(d.Data()), "the raw body")
	require.Equal(t, "cli", d.Header()["X-From"])
}

func TestNameConflict(t *testing.T) {
	s := server(t)
	b := sqstest.Connect(t, s, sqs.Config{})
	a := queuetest.UniqueTenant()
	ctx := ctxFor(t)
	require.NoError(t, b.EnsureTenant(ctx, a, queue.TenantLimits{}))
	// Tenant a, pool "jobs-x" and tenant "a-jobs", pool "x" map to the
	// same queue name.
	require.NoError(t, b.Publish(ctx, queue.Message{Subject: b.Subjects().Jobs(a, "jobs-x"), Data: []byte("mine")}))
	require.NoError(t, b.EnsureTenant(ctx, a+"-jobs", queue.TenantLimits{}))
	err := b.Publish(ctx, queue.Message{Subject: b.Subjects().Jobs(a+"-jobs", "x"), Data: []byte("theirs")})
	require.ErrorIs(t, err, sqs.ErrNameConflict)

	// A fresh broker (no cache) checks too.
	c := sqstest.Connect(t, s, sqs.Config{})
	_, err = c.Consume(ctx, queue.ConsumerConfig{Name: "w", Subject: c.Subjects().Jobs(a+"-jobs", "x")}, func(context.Context, queue.Delivery) {})
	require.ErrorIs(t, err, sqs.ErrNameConflict)
}

// A runner's own control queue is created by its first Consume and takes
// what is published to its subject; pool "p-r" with runner "1" maps to
// the same name as pool "p" with runner "r-1", and the tags tell them apart.
func TestRunnerControlQueue(t *testing.T) {
	s := server(t)
	b := sqstest.Connect(t, s, sqs.Config{})
	tenant := queuetest.UniqueTenant()
	ctx := ctxFor(t)
	require.NoError(t, b.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
	subject := b.Subjects().RunnerControl(tenant, "p", "r-1")
	g := &got{}
	consume(t, b, queue.ConsumerConfig{Name: "runner-r-1", Subject: subject}, ackAll(g))
	require.NoError(t, b.Publish(ctx, queue.Message{Subject: subject, Data: []byte("cancel")}))
	require.Eventually(t, func() bool { return g.len() == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, subject, g.all()[0].Subject())

	c := sqstest.Connect(t, s, sqs.Config{})
	err := c.Publish(ctx, queue.Message{Subject: c.Subjects().RunnerControl(tenant, "p-r", "1"), Data: []byte("x")})
	require.ErrorIs(t, err, sqs.ErrNameConflict)
}

func TestWildcardConsumerFindsNewPools(t *testing.T) {
	s := server(t)
	b := sqstest.Connect(t, s, sqs.Config{DiscoveryInterval: 200 * time.Millisecond})
	tenant := queuetest.UniqueTenant()
	require.NoError(t, b.EnsureTenant(ctxFor(t), tenant, queue.TenantLimits{}))
	g := &got{}
	consume(t, b, queue.ConsumerConfig{Name: "all", Subject: b.Subjects().All(tenant, queue.RoleJobs), Concurrency: 2}, ackAll(g))
	for _, pool := range []string{"late-1", "late-2"} {
		require.NoError(t, b.Publish(ctxFor(t), queue.Message{Subject: b.Subjects().Jobs(tenant, pool), Data: []byte(pool)}))
	}
	require.Eventually(t, func() bool { return g.len() == 2 }, 10*time.Second, 10*time.Millisecond)
}

func TestEnsureTenantProvisions(t *testing.T) {
	s := server(t)
	b := sqstest.Connect(t, s, sqs.Config{QueueType: sqs.QueueStandard})
	tenant := queuetest.UniqueTenant()
	ctx := ctxFor(t)
	require.NoError(t, b.EnsureTenant(ctx, tenant, queue.TenantLimits{MaxMessages: 500}))
	jobs := b.Subjects().Jobs(tenant, "p")
	require.NoError(t, b.EnsureQueues(ctx, jobs))

	attrs := func(b *sqs.Broker, subject string) (map[string]string, map[string]string) {
		name, err := b.QueueName(subject)
		require.NoError(t, err)
		url, err := b.Client().GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
		require.NoError(t, err)
		out, err := b.Client().GetQueueAttributes(ctx, &awssqs.GetQueueAttributesInput{QueueUrl: url.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll}})
		require.NoError(t, err)
		tags, err := b.Client().ListQueueTags(ctx, &awssqs.ListQueueTagsInput{QueueUrl: url.QueueUrl})
		require.NoError(t, err)
		return out.Attributes, tags.Tags
	}
	cases := []struct {
		subject    string
		dlq        string
		maxReceive string
		retention  string
	}{
		{b.Subjects().Submit(tenant), "-dlq-submit", "1000", strconv.Itoa(14 * 24 * 3600)},
		{jobs, "-dlq-jobs", "11", strconv.Itoa(14 * 24 * 3600)},
		{b.Subjects().JobStatus(tenant, "j"), "-dlq-job-events", "1000", strconv.Itoa(7 * 24 * 3600)},
	}
	for _, tc := range cases {
		t.Run(tc.subject, func(t *testing.T) {
			a, tags := attrs(b, tc.subject)
			require.Equal(t, "30", a["VisibilityTimeout"])
			require.Equal(t, tc.retention, a["MessageRetentionPeriod"])
			require.Equal(t, "1048576", a["MaximumMessageSize"])
			require.Contains(t, a["RedrivePolicy"], `"maxReceiveCount":`+tc.maxReceive)
			require.Contains(t, a["RedrivePolicy"], tenant+tc.dlq)
			require.Equal(t, tenant, tags["outpost:tenant"])
		})
	}
	_, tags := attrs(b, b.Subjects().Submit(tenant))
	require.Equal(t, "500", tags["outpost:max-messages"])

	// Another configuration updates the existing queues.
	c := sqstest.Connect(t, s, sqs.Config{QueueType: sqs.QueueStandard, VisibilityTimeout: time.Minute})
	require.NoError(t, c.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
	a, _ := attrs(c, b.Subjects().Submit(tenant))
	require.Equal(t, "60", a["VisibilityTimeout"])
}

func TestConnectAndReady(t *testing.T) {
	s := server(t)
	b := sqstest.Connect(t, s, sqs.Config{})
	require.True(t, b.Ready())

	_, err := b.Consume(ctxFor(t), queue.ConsumerConfig{Name: "one-job", Subject: b.Subjects().JobStatus("acme", "job-1")}, func(context.Context, queue.Delivery) {})
	require.ErrorIs(t, err, sqs.ErrFilterUnsupported)
	require.ErrorIs(t, err, errors.ErrUnsupported)
	err = b.Read(ctxFor(t), b.Subjects().All("acme", queue.RoleJobEvents), queue.ReadOptions{}, func(queue.StreamMessage) bool { return true })
	require.ErrorIs(t, err, sqs.ErrNoHistory)

	require.NoError(t, b.Close())
	require.False(t, b.Ready())
	require.ErrorIs(t, b.Publish(ctxFor(t), queue.Message{Subject: b.Subjects().Submit("acme")}), queue.ErrClosed)

	// Nothing listens there: Connect gives up with ctx.
	dead := &sqstest.Server{Endpoint: "http://127.0.0.1:1"}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = sqs.Connect(ctx, dead.Config(sqs.Config{}))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Contains(t, err.Error(), "127.0.0.1:1")
}

// TestTermOnDeadLetter: a dead letter cannot be dead-lettered again.
func TestTermOnDeadLetter(t *testing.T) {
	s := server(t)
	b := sqstest.Connect(t, s, sqs.Config{})
	tenant := queuetest.UniqueTenant()
	require.NoError(t, b.EnsureTenant(ctxFor(t), tenant, queue.TenantLimits{}))
	subject := b.Subjects().Submit(tenant)
	consume(t, b, queue.ConsumerConfig{Name: "w", Subject: subject}, func(ctx context.Context, d queue.Delivery) { _ = d.Term(ctx, "bad") })
	var termErr atomic.Value
	consume(t, b, queue.ConsumerConfig{Name: "dlq", Subject: b.Subjects().All(tenant, queue.RoleDeadLetter)}, func(ctx context.Context, d queue.Delivery) {
		termErr.Store(d.Term(ctx, "again"))
		_ = d.Ack(ctx)
	})
	require.NoError(t, b.Publish(ctxFor(t), queue.Message{Subject: subject, Data: []byte("x")}))
	require.Eventually(t, func() bool { return termErr.Load() != nil }, 10*time.Second, 10*time.Millisecond)
	require.ErrorIs(t, termErr.Load().(error), errors.ErrUnsupported)
}

// A consumer whose queue is deleted under it (by hand, or a server without
// persistence restarting) makes it again and goes on receiving, rather
// than polling a vanished queue forever.
func TestConsumerRemakesAVanishedQueue(t *testing.T) {
	s := server(t)
	b := sqstest.Connect(t, s, sqs.Config{})
	tenant := queuetest.UniqueTenant()
	ctx := ctxFor(t)
	require.NoError(t, b.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
	subject := b.Subjects().Jobs(tenant, "p")
	require.NoError(t, b.EnsureQueues(ctx, subject))
	g := &got{}
	consume(t, b, queue.ConsumerConfig{Name: "r", Subject: subject}, ackAll(g))
	require.NoError(t, b.Publish(ctx, queue.Message{Subject: subject, Data: []byte("before")}))
	require.Eventually(t, func() bool { return g.len() == 1 }, 10*time.Second, 10*time.Millisecond)

	name, err := b.QueueName(subject)
	require.NoError(t, err)
	url, err := b.Client().GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
	require.NoError(t, err)
	_, err = b.Client().DeleteQueue(ctx, &awssqs.DeleteQueueInput{QueueUrl: url.QueueUrl})
	require.NoError(t, err)

	// The consumer's next receive finds the queue gone and makes it again.
	require.Eventually(t, func() bool {
		_, err := b.Client().GetQueueUrl(ctx, &awssqs.GetQueueUrlInput{QueueName: aws.String(name)})
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "the consumer did not make its queue again")
	// A publish right after the delete may find it gone once; the next
	// goes to the queue made again, and the consumer receives it.
	require.Eventually(t, func() bool {
		return b.Publish(ctx, queue.Message{Subject: subject, Data: []byte("after")}) == nil
	}, 30*time.Second, 100*time.Millisecond)
	require.Eventually(t, func() bool {
		for _, d := range g.all() {
			if string(d.Data()) == "after" {
				return true
			}
		}
		return false
	}, 30*time.Second, 10*time.Millisecond, "nothing received from the queue made again")
}

// TestInProgressSkipsFreshExtension: an InProgress within a tenth of the
// ack wait of the receive (a short job checking it still holds its
// delivery) sends no request; once that has passed, it extends the
// visibility timeout again. Fenced or not, the answer is the same.
func TestInProgressSkipsFreshExtension(t *testing.T) {
	s := server(t)
	for _, fenced := range []bool{false, true} {
		t.Run(fmt.Sprintf("fenced=%v", fenced), func(t *testing.T) {
			b := sqstest.Connect(t, s, sqs.Config{})
			tenant := queuetest.UniqueTenant()
			ctx := ctxFor(t)
			require.NoError(t, b.EnsureTenant(ctx, tenant, queue.TenantLimits{}))
			subject := b.Subjects().Jobs(tenant, "fresh")
			require.NoError(t, b.EnsureQueues(ctx, subject))
			held := make(chan queue.Delivery, 1)
			release := make(chan struct{})
			consume(t, b, queue.ConsumerConfig{Name: "fresh", Subject: subject, AckWait: 3 * time.Second, Fenced: fenced}, func(ctx context.Context, d queue.Delivery) {
				held <- d
				<-release
				if err := d.Ack(ctx); err != nil {
					t.Errorf("ack: %v", err)
				}
			})
			require.NoError(t, b.Publish(ctx, queue.Message{Subject: subject, Data: []byte("short job")}))
			var d queue.Delivery
			require.Eventually(t, func() bool {
				select {
				case d = <-held:
					return true
				default:
					return false
				}
			}, 20*time.Second, 5*time.Millisecond)
			defer close(release)
			visibility := func() uint64 { return b.Requests()["ChangeMessageVisibilityBatch"] }
			before := visibility()
			require.NoError(t, d.InProgress(ctx), "fresh delivery")
			require.Equal(t, before, visibility(), "an InProgress right after the receive sends nothing")
			require.Eventually(t, func() bool {
				return d.InProgress(ctx) == nil && visibility() > before
			}, 5*time.Second, 50*time.Millisecond, "a later InProgress extends the visibility timeout")
		})
	}
}
