// Package runner is the ingestion runner's core: it consumes its pool's job
// queue, runs each job with its task, reports status and logs, follows
// cancels, heartbeats, and hands work back to the queue when it stops.
//
// The queue is the retry and recovery mechanism: a job stays un-acked (kept
// alive with in-progress acks) while it runs; a retryable failure is nak'd
// with a backoff delay; a runner that dies lets its jobs be redelivered to
// another runner after the ack wait. The delivery count is not an attempt
// count (see budget): the control plane owns the attempt budget.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	"github.com/outposthq/outpost/libs/version"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/logstream"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// ErrShutdown is the context cause of jobs stopped because the runner shuts
// down; they are handed back to the queue, not failed.
var ErrShutdown = errors.New("runner shutting down")

// ErrSuperseded is the context cause of a job whose delivery was
// superseded: its ack wait passed without an InProgress (the runner was
// paused or cut off from the broker), so the job went, or goes, to another
// attempt. The run is stopped and neither reported nor settled; the
// scheduler fences what it would report anyway.
var ErrSuperseded = errors.New("delivery superseded by a later attempt")

// ErrJobsLeft is returned by Run when jobs were still running at the end of
// the drain: the queue hands them to another runner after the ack wait
// instead of at once.
var ErrJobsLeft = errors.New("jobs still running after the drain")

// consumerStopWait bounds the wait for the queue consumer to stop once
// every job is settled.
const consumerStopWait = 5 * time.Second

// ErrNotReady is returned by Ready before the runner consumes its queue and
// once it drains.
var ErrNotReady = errors.New("runner not consuming")

// Broker is what the runner needs from the queue.
type Broker interface {
	queue.Publisher
	queue.Subscriber
	queue.Reader
}

// Config is what the runner needs from the service configuration.
type Config struct {
	Tenant   string
	Pool     string
	RunnerID string
	// Version is reported in heartbeats; the binary's version (libs/version) when empty.
	Version string

	Concurrency       int
	AckWait           time.Duration
	MaxDeliveries     int
	HeartbeatInterval time.Duration
	DrainGrace        time.Duration
	// StopGrace bounds the wait for jobs stopped at the end of the drain:
	// a command's SIGTERM-to-SIGKILL grace plus time to report.
	StopGrace time.Duration

	Logs         logstream.Limits
	MaxLineBytes int
	// RetryJitter spreads retry delays by ±this fraction.
	RetryJitter float64
	// Verifier checks the control plane's signature of every job before
	// it runs; nil runs unsigned work (development only, configured
	// explicitly).
	Verifier *signing.Verifier
}

// Runner runs the jobs of one tenant's pool.
type Runner struct {
	cfg      Config
	broker   Broker
	subjects queue.Subjects
	tasks    *tasks.Registry
	log      *slog.Logger
	metrics  *Metrics

	// base outlives the caller's context: jobs, status publishes and acks
	// must go on during the drain that a cancelled context starts.
	base       context.Context
	cancelBase context.CancelFunc

	consuming atomic.Bool
	draining  atomic.Bool

	mu        sync.Mutex
	running   map[*jobRun]struct{}
	cancelled *cancelSet
	// finished remembers the dispatches (finishedKey) this runner ran to
	// a reported end, with that end's state: a delivery of one that comes
	// back (its Ack was lost) is acked again, not run again.
	finished *cancelSet
	inflight int           // handlers running, including ones not yet running a job
	idle     chan struct{} // closed when inflight drops to 0

	// statuses publishes the jobs' statuses, several short jobs'
	// outcomes in one message when the runner is busy.
	statuses *statusSender
}

// New returns a runner. metrics may be nil.
func New(cfg Config, broker Broker, subjects queue.Subjects, registry *tasks.Registry, log *slog.Logger, metrics *Metrics) *Runner {
	if cfg.Version == "" {
		cfg.Version = version.Get()
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	idle := make(chan struct{})
	close(idle)
	statuses := newStatusSender(cfg.Tenant, broker.Publish, func(id string) string { return subjects.JobStatus(cfg.Tenant, id) })
	return &Runner{
		statuses:  statuses,
		cfg:       cfg,
		broker:    broker,
		subjects:  subjects,
		tasks:     registry,
		log:       log.With("tenant", cfg.Tenant, "pool", cfg.Pool, "runner_id", cfg.RunnerID),
		metrics:   metrics,
		running:   map[*jobRun]struct{}{},
		cancelled: newCancelSet(recentCancelled),
		finished:  newCancelSet(recentFinished),
		idle:      idle,
	}
}

// Ready reports nil while the runner takes work.
func (r *Runner) Ready() error {
	if !r.consuming.Load() || r.draining.Load() {
		return ErrNotReady
	}
	return nil
}

// Run consumes the pool's jobs until ctx is done, then drains: no new work,
// running jobs get the drain grace to finish, what is left is stopped and
// handed back to the queue. It returns once that is done.
func (r *Runner) Run(ctx context.Context) error {
	r.base, r.cancelBase = context.WithCancel(context.WithoutCancel(ctx))

	var bg sync.WaitGroup
	defer bg.Wait()
	defer r.cancelBase() // runs before bg.Wait: stops the follower and heartbeats
	bg.Go(func() { r.followControl(r.base) })
	bg.Go(func() { r.statuses.run(r.base) })

	subject := r.subjects.Jobs(r.cfg.Tenant, r.cfg.Pool)
	consumer, err := r.consume(ctx, subject)
	if err != nil {
		return err
	}
	if consumer == nil { // ctx ended before the queue could be consumed
		return nil
	}
	r.consuming.Store(true)
	bg.Go(func() { r.heartbeats(r.base) })
	r.log.Info("Starting outpost ingestion runner", "subject", subject, "concurrency", r.cfg.Concurrency, "version", r.cfg.Version)

	<-ctx.Done()
	return r.drain(consumer)
}

// consume starts the durable consumer. A tenant whose queues are not
// provisioned yet is waited for: the control plane creates them, the runner
// may well start first.
func (r *Runner) consume(ctx context.Context, subject string) (queue.Consumer, error) {
	cc := queue.ConsumerConfig{
		Name:          "runners-" + r.cfg.Pool,
		Subject:       subject,
		AckWait:       r.cfg.AckWait,
		MaxDeliveries: r.cfg.MaxDeliveries,
		Concurrency:   r.cfg.Concurrency,
		// Fenced: a runner paused past the ack wait must neither settle
		// nor report the attempt another runner now holds. Fencing needs
		// an ack wait of a few seconds; a shorter one runs unfenced.
		Fenced: r.cfg.AckWait >= queue.MinFencedAckWait,
	}
	if !cc.Fenced {
		r.log.Warn("ack wait too short to fence stale settlements; a runner paused past it may settle an attempt another runner holds",
			"ack_wait", r.cfg.AckWait, "min_fenced_ack_wait", queue.MinFencedAckWait)
	}
	wait := 250 * time.Millisecond
	for {
		c, err := r.broker.Consume(r.base, cc, r.handle)
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, queue.ErrUnknownTenant) {
			return nil, fmt.Errorf("consume %s: %w", subject, err)
		}
		r.log.Warn("tenant queues not provisioned yet; waiting", "subject", subject, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, nil
		case <-time.After(wait):
		}
		wait = min(wait*2, 10*time.Second)
	}
}

func (r *Runner) drain(consumer queue.Consumer) error {
	r.draining.Store(true)
	r.mu.Lock()
	n := len(r.running)
	r.mu.Unlock()
	r.log.Info("runner draining", "running", n, "drain_grace", r.cfg.DrainGrace)
	r.heartbeat(r.base)

	stopCtx, cancelStop := context.WithTimeout(r.base, r.cfg.DrainGrace+r.cfg.StopGrace)
	defer cancelStop()
	stopped := make(chan error, 1)
	// Stop ends fetching at once; it returns when the handlers have.
	go func() { stopped <- consumer.Stop(stopCtx) }()

	var err error
	grace := time.NewTimer(r.cfg.DrainGrace)
	defer grace.Stop()
	select {
	case <-r.idleCh():
	case <-grace.C:
		n := r.stopAll(ErrShutdown)
		r.log.Warn("drain grace over; handing running jobs back to the queue", "jobs", n)
		select {
		case <-r.idleCh():
		case <-stopCtx.Done():
			err = ErrJobsLeft
			r.log.Error("jobs still running after the drain; the queue redelivers them after the ack wait")
		}
	}
	// Every delivery this runner had is settled by now, so the consumer
	// has nothing left to wait for; a Stop that still hangs costs nothing
	// but time, and is not worth holding the exit.
	wait := time.NewTimer(consumerStopWait)
	defer wait.Stop()
	select {
	case serr := <-stopped:
		if serr != nil {
			r.log.Warn("queue consumer stop failed", "error", serr)
		}
	case <-wait.C:
		r.log.Warn("queue consumer did not stop in time; going on", "waited", consumerStopWait)
	}
	r.heartbeat(r.base)
	r.log.Info("runner stopped")
	return err
}

// stopAll cancels every running job with cause and returns how many.
func (r *Runner) stopAll(cause error) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for run := range r.running {
		run.cancel(cause)
	}
	return len(r.running)
}

func (r *Runner) enter() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.inflight == 0 {
		r.idle = make(chan struct{})
	}
	r.inflight++
}

func (r *Runner) leave() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inflight--
	if r.inflight == 0 {
		close(r.idle)
	}
}

func (r *Runner) idleCh() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.idle
}

// heartbeats publishes a heartbeat now and every interval until ctx ends.
func (r *Runner) heartbeats(ctx context.Context) {
	t := time.NewTicker(r.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		r.heartbeat(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (r *Runner) heartbeat(ctx context.Context) {
	r.mu.Lock()
	running := len(r.running)
	r.mu.Unlock()
	hb := &jobsv1.RunnerHeartbeat{
		Envelope: events.NewEnvelope(r.cfg.Tenant, 0, "", ""),
		RunnerId: r.cfg.RunnerID,
		Pool:     r.cfg.Pool,
		Version:  r.cfg.Version,
		Running:  uint32(running),
		Capacity: uint32(r.cfg.Concurrency),
		Draining: r.draining.Load(),
	}
	msg, err := events.Encode(r.subjects.Runners(r.cfg.Tenant, r.cfg.Pool), hb, "")
	if err == nil {
		pctx, cancel := context.WithTimeout(ctx, r.cfg.HeartbeatInterval)
		err = r.broker.Publish(pctx, msg)
		cancel()
	}
	if err != nil && ctx.Err() == nil {
		r.log.Warn("heartbeat not published", "error", err)
	}
}
