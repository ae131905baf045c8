// Package sqs is the AWS SQS backend of package queue.
//
// # Queues
//
// Every (tenant, role, key) that needs its own consumer group gets its own
// queue, named "<prefix><stack>-<tenant>-<role>[-<key>]" (plus ".fifo" for
// FIFO queues; a name over SQS's 80 characters is cut and ends with a hash):
//
//	subject                                  queue                                 created by
//	<stack>.<tenant>.submit                  <stack>-<tenant>-submit               EnsureTenant
//	<stack>.<tenant>.jobs.<pool>             <stack>-<tenant>-jobs-<pool>          first Publish/Consume, or EnsureQueues
//	<stack>.<tenant>.control.<pool>          <stack>-<tenant>-control-<pool>       first Publish/Consume, or EnsureQueues
//	<stack>.<tenant>.control.<pool>.<runner> <stack>-<tenant>-control-<pool>-<runner> the runner's first Consume (or first Publish)
//	<stack>.<tenant>.runners.<pool>          <stack>-<tenant>-runners-<pool>       first Publish/Consume, or EnsureQueues
//	<stack>.<tenant>.job-events.<job>.<kind> <stack>-<tenant>-job-events-<kind>    EnsureTenant (status, logs)
//	<stack>.<tenant>.dlq.<role>              <stack>-<tenant>-dlq-<role>           EnsureTenant (one per role)
//
// Pools are bounded, so jobs, control and runners get a queue per pool: a
// runner's IAM policy names exactly its pool's queues. A runner also has a
// control queue of its own (SQS has no fan-out, so a cancel must go to the
// one runner that runs the job); the dot between pool and runner becomes a
// dash in the name, and a wildcard consumer of control.> discovers the
// pools' queues only, not the runners'. Job ids are not
// bounded, so the events of every job share one queue per event kind
// ("status", "logs"). Every message carries its full subject in the
// "outpost.subject" message attribute, and Delivery.Subject returns it.
//
// Because an SQS queue cannot be filtered, a consumer filter must cover
// whole queues: an exact subject of submit, jobs, control or runners; a
// wildcard over a role ("jobs.>", "dlq.>", "job-events.>", which list the
// tenant's queues of that role, again every DiscoveryInterval); or
// "job-events.*.<kind>". A filter for one job's events is refused with
// ErrFilterUnsupported.
//
// Each queue is tagged outpost:stack, outpost:tenant, outpost:role and
// outpost:key. Names alone are ambiguous (tenant "a-jobs" and tenant "a"
// with pool "jobs-x" would both give "outpost-a-jobs-jobs-x"), so the
// backend checks the tags of every queue once per process before using it
// and refuses a queue owned by another tenant with ErrNameConflict.
//
// # Messages
//
// The body is the payload in base64 (SQS bodies must be text). Headers
// become String message attributes of the same name when all of them can
// (valid names, non-empty values, at most 10 attributes in all), else they
// travel together as JSON in the "outpost.headers" attribute. Payloads
// over Config.MaxPayload are refused with queue.ErrPayloadTooLarge; the
// default leaves room for base64 and attributes in SQS's message limit.
//
// # Delivery
//
// Consume long-polls (Config.WaitTime) with the consumer's AckWait as the
// visibility timeout, in whole seconds (rounded up). Ack deletes the
// message, InProgress sets its visibility to AckWait again, Nak(delay) sets
// it to delay; the three are batched (up to 10 per request, after a
// Config.BatchLinger wait) per queue, as are Publish's sends. Attempt is
// SQS's ApproximateReceiveCount. An InProgress within a tenth of the
// AckWait of the receive, or of the last InProgress sent, checks the
// fence and sends nothing.
//
// Term sends a copy of the message to the dead-letter queue of its role
// with the queue.HeaderDeadLetter* headers, then deletes it. A delivery
// whose attempt is over ConsumerConfig.MaxDeliveries is dead-lettered the
// same way, with the reason "max deliveries (N) exceeded", without calling
// the handler. EnsureTenant also gives every queue a redrive policy to its
// dead-letter queue, as a backstop for consumers that die mid-way: jobs
// queues with maxReceiveCount Config.JobsMaxDeliveries+1 (so the library's own
// check, with its reason, runs first), other queues with SQS's maximum of
// 1000 (their consumers, the scheduler's, allow unlimited deliveries). A
// message SQS moved by itself has no reason attribute; on delivery from the
// dead-letter queue it gets the reason "moved by the SQS redrive policy
// after N receives", the original subject and N as attempts.
//
// # Guarantees that differ from JetStream
//
//   - No history: Read returns an error wrapping ErrNoHistory and
//     errors.ErrUnsupported. Read-based consumers (the runner's control
//     follow, the logs API) need Consume instead.
//   - No fan-out: consumers with different names on one queue compete.
//   - Order: FIFO queues (the default) keep publish order within a message
//     group; work messages each get their own group (so one slow job never
//     blocks another), events are grouped by subject (one job's statuses
//     stay in order). Standard queues keep no order.
//   - Dedupe: FIFO queues drop a repeated DedupeID for 5 minutes, across
//     processes. Standard queues have no server-side deduplication: the
//     Broker does not send a DedupeID again that it sent within
//     DuplicateWindow, and a consuming Broker deletes, without handling it, a
//     second SQS message carrying a DedupeID it already received within the
//     window (a redelivery of the same message is not a duplicate). Both
//     checks are per process: copies published by two processes and received
//     by two consumer processes are both handled.
//   - Time: ack waits and Nak delays are whole seconds, 12 hours at most.
//   - TenantLimits are recorded as queue tags but not enforced (SQS has no
//     per-queue quotas).
//
// The IAM policies that match this layout are in deploy/iam.
package sqs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/libs/queue"
)

// QueueType chooses FIFO or standard queues.
type QueueType string

const (
	// QueueFIFO uses FIFO queues: exact deduplication for 5 minutes and
	// order within a message group. The default.
	QueueFIFO QueueType = "fifo"
	// QueueStandard uses standard queues: higher throughput, no order,
	// deduplication only within one process (see the package doc).
	QueueStandard QueueType = "standard"
)

// Defaults applied by Connect.
const (
	DefaultVisibilityTimeout   = 30 * time.Second
	DefaultWaitTime            = 20 * time.Second
	DefaultMaxMessageSize      = 1 << 20 // SQS's limit since 2025
	DefaultWorkRetention       = 14 * 24 * time.Hour
	DefaultEventsRetention     = 7 * 24 * time.Hour
	DefaultDeadLetterRetention = 14 * 24 * time.Hour
	DefaultJobsMaxDeliveries   = 10
	DefaultBatchLinger         = 10 * time.Millisecond
	DefaultDuplicateWindow     = 5 * time.Minute
	DefaultDiscoveryInterval   = time.Minute
	// BackstopMaxReceiveCount is the redrive maxReceiveCount of queues
	// other than jobs: SQS's maximum.
	BackstopMaxReceiveCount = 1000
	// attributeReserve is what the default MaxPayload leaves for message
	// attributes within the message size limit.
	attributeReserve = 8 << 10
)

// Config configures a Broker. Credentials come from the standard AWS chain
// (environment, shared files, web identity, ECS/EC2 roles) unless
// Credentials is set.
type Config struct {
	// Region of the queues; default from the standard chain (AWS_REGION).
	Region string
	// Endpoint overrides the SQS endpoint, e.g. "http://127.0.0.1:4566"
	// for a local SQS-compatible server or a VPC endpoint URL.
	Endpoint string
	// Credentials overrides the standard credential chain.
	Credentials aws.CredentialsProvider
	// Stack is the subject prefix; default queue.DefaultStack.
	Stack string
	// QueuePrefix is put before every queue name, e.g. "prod-".
	QueuePrefix string
	// QueueType is QueueFIFO (default) or QueueStandard.
	QueueType QueueType
	// VisibilityTimeout is the queues' default visibility timeout (a
	// consumer's AckWait overrides it on every receive); default 30s.
	VisibilityTimeout time.Duration
	// WaitTime is the long-poll wait of a receive, 1s to 20s; default 20s.
	WaitTime time.Duration
	// MaxMessageSize is the queues' MaximumMessageSize in bytes, body and
	// attributes included; default and maximum 1 MiB.
	MaxMessageSize int
	// MaxPayload is the largest Message.Data Publish accepts; default and
	// maximum (MaxMessageSize - 8 KiB) * 3/4, which leaves room for base64
	// and attributes.
	MaxPayload int
	// WorkRetention, EventsRetention and DeadLetterRetention are how long
	// the queues of work roles (submit, jobs), event roles and dead
	// letters keep a message; defaults 14, 7 and 14 days (SQS's maximum is
	// 14 days).
	WorkRetention       time.Duration
	EventsRetention     time.Duration
	DeadLetterRetention time.Duration
	// JobsMaxDeliveries is the ConsumerConfig.MaxDeliveries the jobs
	// queues are provisioned for: their redrive maxReceiveCount is
	// JobsMaxDeliveries+1. Default 10 (the runner's default).
	JobsMaxDeliveries int
	// BatchLinger is how long a send, delete or visibility change waits for
	// others to the same queue to share its request; default 10ms,
	// negative for no wait.
	BatchLinger time.Duration
	// DuplicateWindow is how long a DedupeID is remembered on standard
	// queues; default 5 minutes (FIFO queues: always 5 minutes).
	DuplicateWindow time.Duration
	// DiscoveryInterval is how often a wildcard consumer lists the queues
	// of its role again to pick up new pools; default 1 minute.
	DiscoveryInterval time.Duration
	// Registerer, when set, gets the outpost_sqs_* Prometheus counters.
	Registerer prometheus.Registerer
	// Logger receives warnings and handler failures; default slog.Default().
	Logger *slog.Logger
}

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Stack == "" {
		cfg.Stack = queue.DefaultStack
	}
	if !queue.ValidToken(cfg.Stack) {
		return cfg, fmt.Errorf("sqs: stack %q: want 1-64 characters of [a-zA-Z0-9_-]", cfg.Stack)
	}
	for _, c := range cfg.QueuePrefix {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') || len(cfg.QueuePrefix) > 20 {
			return cfg, fmt.Errorf("sqs: queue prefix %q: want up to 20 characters of [a-zA-Z0-9_-]", cfg.QueuePrefix)
		}
	}
	switch cfg.QueueType {
	case "":
		cfg.QueueType = QueueFIFO
	case QueueFIFO, QueueStandard:
	default:
		return cfg, fmt.Errorf("sqs: queue type %q: want %q or %q", cfg.QueueType, QueueFIFO, QueueStandard)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.VisibilityTimeout, DefaultVisibilityTimeout)
	def(&cfg.WaitTime, DefaultWaitTime)
	def(&cfg.WorkRetention, DefaultWorkRetention)
	def(&cfg.EventsRetention, DefaultEventsRetention)
	def(&cfg.DeadLetterRetention, DefaultDeadLetterRetention)
	def(&cfg.DuplicateWindow, DefaultDuplicateWindow)
	def(&cfg.DiscoveryInterval, DefaultDiscoveryInterval)
	if cfg.BatchLinger == 0 {
		cfg.BatchLinger = DefaultBatchLinger
	}
	if cfg.WaitTime < time.Second || cfg.WaitTime > 20*time.Second {
		return cfg, fmt.Errorf("sqs: wait time %s: want 1s to 20s", cfg.WaitTime)
	}
	if cfg.VisibilityTimeout > maxVisibility {
		return cfg, fmt.Errorf("sqs: visibility timeout %s: at most 12h", cfg.VisibilityTimeout)
	}
	for _, r := range []time.Duration{cfg.WorkRetention, cfg.EventsRetention, cfg.DeadLetterRetention} {
		if r < time.Minute || r > 14*24*time.Hour {
			return cfg, fmt.Errorf("sqs: retention %s: want 1 minute to 14 days", r)
		}
	}
	switch {
	case cfg.MaxMessageSize == 0:
		cfg.MaxMessageSize = DefaultMaxMessageSize
	case cfg.MaxMessageSize < 16<<10 || cfg.MaxMessageSize > DefaultMaxMessageSize:
		return cfg, fmt.Errorf("sqs: max message size %d: want 16 KiB to 1 MiB", cfg.MaxMessageSize)
	}
	limit := (cfg.MaxMessageSize - attributeReserve) / 4 * 3
	switch {
	case cfg.MaxPayload == 0:
		cfg.MaxPayload = limit
	case cfg.MaxPayload < 0 || cfg.MaxPayload > limit:
		return cfg, fmt.Errorf("sqs: max payload %d: want 1 to %d bytes for a %d-byte message size", cfg.MaxPayload, limit, cfg.MaxMessageSize)
	}
	switch {
	case cfg.JobsMaxDeliveries == 0:
		cfg.JobsMaxDeliveries = DefaultJobsMaxDeliveries
	case cfg.JobsMaxDeliveries < 0 || cfg.JobsMaxDeliveries >= BackstopMaxReceiveCount:
		return cfg, fmt.Errorf("sqs: jobs max deliveries %d: want 1 to %d", cfg.JobsMaxDeliveries, BackstopMaxReceiveCount-1)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

// Broker is a connection to SQS. It implements queue.Broker and is safe
// for concurrent use.
type Broker struct {
	cfg      Config
	fifo     bool
	client   *sqs.Client
	subjects queue.Subjects
	log      *slog.Logger
	metrics  *metrics

	// base is cancelled by Close: it bounds batch flushes and receives.
	base       context.Context
	cancelBase context.CancelFunc
	closed     atomic.Bool

	queuesMu sync.Mutex
	queues   map[string]*queueInfo // by queue name

	sends    *batcher[sendEntry]
	deletes  *batcher[string]
	visibles *batcher[visibility]

	// sent and handled are the standard-queue duplicate windows.
	sent    *window
	handled *window

	consMu    sync.Mutex
	consumers map[*consumer]struct{}
}

var (
	_ queue.Broker       = (*Broker)(nil)
	_ queue.QueueEnsurer = (*Broker)(nil)
)

// Connect builds the SQS client and waits until SQS answers a signed
// request (a GetQueueUrl for a queue that need not exist), or ctx is done.
// Missing credentials or a rejected signature fail at once.
func Connect(ctx context.Context, cfg Config) (*Broker, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.Credentials != nil {
		opts = append(opts, awsconfig.WithCredentialsProvider(cfg.Credentials))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("sqs: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return nil, errors.New("sqs: no region: set Config.Region or AWS_REGION")
	}
	cfg.Region = awsCfg.Region
	if _, err := awsCfg.Credentials.Retrieve(ctx); err != nil {
		return nil, fmt.Errorf("sqs: no AWS credentials: %w", err)
	}
	b := &Broker{
		cfg:       cfg,
		fifo:      cfg.QueueType == QueueFIFO,
		subjects:  queue.NewSubjects(cfg.Stack),
		log:       cfg.Logger.With("component", "sqs", "stack", cfg.Stack),
		metrics:   newMetrics(cfg.Registerer, cfg.Stack),
		queues:    map[string]*queueInfo{},
		consumers: map[*consumer]struct{}{},
		sent:      newWindow(cfg.DuplicateWindow),
		handled:   newWindow(cfg.DuplicateWindow),
	}
	b.client = sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.APIOptions = append(o.APIOptions, b.metrics.countRequests)
	})
	b.base, b.cancelBase = context.WithCancel(context.Background())
	b.sends = newBatcher(b, "send", cfg.MaxMessageSize, b.sendBatch)
	b.deletes = newBatcher(b, "delete", 0, b.deleteBatch)
	b.visibles = newBatcher(b, "change visibility", 0, b.visibilityBatch)
	if err := b.probe(ctx); err != nil {
		b.cancelBase()
		return nil, err
	}
	b.metrics.alive.Store(true)
	go b.probeLiveness(b.base)
	return b, nil
}

// probe waits until SQS answers a signed request.
func (b *Broker) probe(ctx context.Context) error {
	name := QueueNameFor(b.cfg.QueuePrefix, b.cfg.Stack, "probe", queue.RoleSubmit, "", b.fifo)
	wait := 100 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := b.client.GetQueueUrl(pctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		cancel()
		var apiErr smithy.APIError
		switch {
		case err == nil, isNotFound(err):
			return nil
		case errors.As(err, &apiErr):
			if code := apiErr.ErrorCode(); code == "AccessDenied" || code == "AccessDeniedException" {
				return nil // signed and understood; this principal may not look up that name
			}
			return fmt.Errorf("sqs: connect to %s: %w", b.endpointName(), err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("sqs: connect to %s: %w (last error: %w)", b.endpointName(), ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func (b *Broker) endpointName() string {
	if b.cfg.Endpoint != "" {
		return b.cfg.Endpoint
	}
	return "SQS in " + b.cfg.Region
}

// Ready reports whether the broker is open, SQS answered its last request
// and its liveness probe (a request every 2 s in the background) is
// answered, for readiness probes.
func (b *Broker) Ready() bool {
	return !b.closed.Load() && b.metrics.ready.Load() && b.metrics.alive.Load()
}

// Subjects returns the subject builder of the broker's stack.
func (b *Broker) Subjects() queue.Subjects { return b.subjects }

// MaxPayload is the largest Message.Data that Publish accepts.
func (b *Broker) MaxPayload() int { return b.cfg.MaxPayload }

// FIFO reports whether the broker uses FIFO queues.
func (b *Broker) FIFO() bool { return b.fifo }

// DedupeWindow implements queue.Deduplicator: FIFO queues drop a repeated
// DedupeID for 5 minutes whichever process sends it; standard queues
// remember one per process only, which is no window at all (0).
func (b *Broker) DedupeWindow() time.Duration {
	if b.fifo {
		return fifoDedupeWindow
	}
	return 0
}

// fifoDedupeWindow is SQS's deduplication interval of FIFO queues.
const fifoDedupeWindow = 5 * time.Minute

// Requests returns how many SQS requests the broker made so far, by
// operation: the figure that sets the AWS bill. Retries count.
func (b *Broker) Requests() RequestCounts {
	return snapshot(&b.metrics.mu, b.metrics.requests)
}

// Messages returns how many messages the broker's requests carried, by
// operation; Messages()[op] / Requests()[op] is the batching factor.
func (b *Broker) Messages() RequestCounts {
	return snapshot(&b.metrics.mu, b.metrics.entries)
}

// Client returns the underlying SQS client, for tests and tools. Services
// must not use it to send or receive.
func (b *Broker) Client() *sqs.Client { return b.client }

// closeWait bounds how long Close waits for running handlers.
const closeWait = 5 * time.Second

// Close stops every consumer (running handlers see their context
// cancelled and get up to 5s to return), then aborts outstanding requests;
// messages an aborted receive had taken come back after their ack wait.
// Operations after Close return queue.ErrClosed.
func (b *Broker) Close() error {
	if !b.closed.CompareAndSwap(false, true) {
		return nil
	}
	b.consMu.Lock()
	cons := make([]*consumer, 0, len(b.consumers))
	for k := range b.consumers {
		cons = append(cons, k)
	}
	b.consMu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), closeWait)
	defer cancel()
	for _, k := range cons {
		k.stopLoops()
		k.cancelHandlers()
	}
	for _, k := range cons {
		if err := k.Stop(ctx); err != nil {
			b.log.Warn("consumer did not stop before close", "consumer", k.cfg.Name, "filter", k.cfg.Subject, "error", err)
		}
	}
	b.cancelBase()
	return nil
}

func (b *Broker) addConsumer(k *consumer) bool {
	b.consMu.Lock()
	defer b.consMu.Unlock()
	if b.closed.Load() {
		return false
	}
	b.consumers[k] = struct{}{}
	return true
}

func (b *Broker) removeConsumer(k *consumer) {
	b.consMu.Lock()
	defer b.consMu.Unlock()
	delete(b.consumers, k)
}

// isNotFound reports SQS's "queue does not exist".
func isNotFound(err error) bool {
	var nf *types.QueueDoesNotExist
	if errors.As(err, &nf) {
		return true
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "NonExistentQueue":
			return true
		}
	}
	return false
}

// isAccessDenied reports an IAM refusal.
func isAccessDenied(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode() {
		case "AccessDenied", "AccessDeniedException", "AuthorizationError":
			return true
		}
	}
	return false
}
