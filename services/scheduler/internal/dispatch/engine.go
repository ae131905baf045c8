// Package dispatch is the scheduler's engine: it turns submissions into job
// records and work items on the pools' queues, applies the runners' status
// events to the records with fencing, fails jobs whose work items were
// dead-lettered, tracks runner presence, and carries out cancel, pause and
// resume.
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	"github.com/outposthq/outpost/libs/telemetry"
	"github.com/outposthq/outpost/libs/workpool"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/directory"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/metrics"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// Durable consumer names, shared by every replica.
const (
	ConsumerSubmit     = "scheduler-submit"
	ConsumerStatus     = "scheduler-status"
	ConsumerDeadLetter = "scheduler-dlq"
)

// DefaultMaxDeliveries is the default of Options.MaxDeliveries. Failures
// that decode are retried with a growing delay (up to 30s between
// attempts), so 20 deliveries outlast a broker or store outage of about
// seven minutes before a message is dead-lettered, and a message that can
// never be processed stops being retried within that time.
const DefaultMaxDeliveries = 20

// Broker is what the engine needs of the queue.
type Broker interface {
	Publish(ctx context.Context, msg queue.Message) error
	Consume(ctx context.Context, cfg queue.ConsumerConfig, h queue.Handler) (queue.Consumer, error)
	Read(ctx context.Context, subject string, opts queue.ReadOptions, fn func(queue.StreamMessage) bool) error
}

// Options configure an Engine.
type Options struct {
	Subjects     queue.Subjects
	Policy       jobs.Policy
	HistoryLimit int
	// StatusBatch bounds how many status events are applied together.
	StatusBatch int
	// AckWait of the scheduler's consumers; 0 means 30s.
	AckWait time.Duration
	// SubmitConcurrency bounds the submissions handled at once; 0 means 8.
	SubmitConcurrency int
	// MaxDeliveries bounds the deliveries of a message to each of the
	// scheduler's consumers; past it the message is dead-lettered with the
	// reason "max deliveries (N) exceeded" (a dead letter is only
	// terminated: it stays listed). 0 means DefaultMaxDeliveries.
	MaxDeliveries int
	// ScheduleTick is how often the sources' schedules are checked; 0
	// means 1s.
	ScheduleTick time.Duration
	Metrics      *metrics.Metrics
	Logger       *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// GateInterval is how often the jobs the polling rules keep back are
	// looked at again (besides after every directory write through this
	// replica); 0 means 2s.
	GateInterval time.Duration
	// EnsurePool, when set, is called before the first dispatch of this
	// process to each pool of a tenant, until it succeeds: the SQS
	// backend creates the pool's queues there (jobs, and runners, which a
	// runner may send to but not create).
	EnsurePool func(ctx context.Context, tenant, pool string) error
	// Signer signs every JobDispatched; runners run only work whose
	// signature they verify. nil publishes unsigned jobs (tests of the
	// engine alone).
	Signer *signing.Signer
	// ResultsWait bounds the deliveries of a terminal status that waits
	// for its attempt's results (JobResult.record_batches) to be stored:
	// at that delivery the terminal state is applied even with results
	// missing, so a lost batch cannot keep a job from ending. 0 means
	// DefaultResultsWait; it stays below MaxDeliveries.
	ResultsWait int
	// LostAfter is how long a RUNNING job's runner may send no heartbeat
	// (and the record not change) before the job, if its work message is
	// gone, is dispatched again; 0 turns the check off. It must exceed
	// the runners' ack wait and heartbeat interval.
	LostAfter time.Duration
	// Retention is how long a finished job's record is kept after it
	// finished: the reaper's passes delete older ones. 0 keeps them.
	Retention time.Duration
	// RunningReportDelay is offered to the runners in every dispatch
	// (JobDispatched.running_report_delay): how long they may hold an
	// attempt's RUNNING back, so that a shorter attempt reports its start
	// with its outcome. 0: RUNNING at once.
	RunningReportDelay time.Duration
	// StatusBatchMax is offered to the runners in every dispatch
	// (JobDispatched.status_batch_max): how many short jobs' outcomes one
	// JobStatusBatch may carry (statusbatch.go). 0: every status alone.
	StatusBatchMax int
	// DirectSubmit lets the API create and dispatch jobs itself (direct.go)
	// where the broker allows it safely (queue.Deduplicator with a window
	// past DirectGrace and the sweep's band: JetStream, SQS FIFO queues);
	// DirectSubmit() tells whether it is on.
	DirectSubmit bool
	// DirectGrace is how long a direct job may stay QUEUED before the
	// sweep makes sure its dispatch was published; 0 means
	// DefaultDirectGrace.
	DirectGrace time.Duration
}

// Engine runs the consumers of every tenant and the job operations of the
// API. It is safe for concurrent use.
type Engine struct {
	broker   Broker
	subjects queue.Subjects
	opts     Options
	m        *metrics.Metrics
	log      *slog.Logger
	now      func() time.Time

	// pools holds "<tenant>/<pool>" for the pools EnsurePool succeeded for.
	pools sync.Map
	// limits holds each tenant's *limitState (limit.go).
	limits sync.Map
	// direct: the API submits directly (direct.go), with the broker's
	// deduplication window dedupeWindow; directs holds each tenant's
	// *directState.
	direct       bool
	dedupeWindow time.Duration
	directs      sync.Map
}

// New returns an engine over broker.
func New(broker Broker, opts Options) *Engine {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StatusBatch <= 0 {
		opts.StatusBatch = 64
	}
	if opts.HistoryLimit <= 0 {
		opts.HistoryLimit = 50
	}
	if opts.AckWait <= 0 {
		opts.AckWait = 30 * time.Second
	}
	if opts.SubmitConcurrency <= 0 {
		opts.SubmitConcurrency = 8
	}
	if opts.MaxDeliveries <= 0 {
		opts.MaxDeliveries = DefaultMaxDeliveries
	}
	if opts.ResultsWait <= 0 {
		opts.ResultsWait = DefaultResultsWait
	}
	opts.ResultsWait = min(opts.ResultsWait, opts.MaxDeliveries-1)
	if opts.ScheduleTick <= 0 {
		opts.ScheduleTick = time.Second
	}
	if opts.GateInterval <= 0 {
		opts.GateInterval = 2 * time.Second
	}
	if opts.DirectGrace <= 0 {
		opts.DirectGrace = DefaultDirectGrace
	}
	e := &Engine{broker: broker, subjects: opts.Subjects, opts: opts, m: opts.Metrics, log: opts.Logger, now: opts.Now}
	if d, ok := broker.(queue.Deduplicator); ok && opts.DirectSubmit {
		e.dedupeWindow = d.DedupeWindow()
		e.direct = e.dedupeWindow >= opts.DirectGrace+directBand+directMargin
		if !e.direct {
			e.log.Info("direct submit off: the broker's deduplication window is too short for the dispatch sweep",
				"window", e.dedupeWindow, "needed", opts.DirectGrace+directBand+directMargin)
		}
	}
	return e
}

// tenantState returns t's entry of m, made by mk the first time: called
// per job, it allocates nothing once the entry exists.
func tenantState[T any](m *sync.Map, t *tenants.Tenant, mk func() *T) *T {
	if s, ok := m.Load(t.Name); ok {
		return s.(*T)
	}
	s, _ := m.LoadOrStore(t.Name, mk())
	return s.(*T)
}

// ensurePool runs EnsurePool once per pool of a tenant (again after a
// failure).
func (e *Engine) ensurePool(ctx context.Context, tenant, pool string) error {
	if e.opts.EnsurePool == nil {
		return nil
	}
	key := tenant + "/" + pool
	if _, ok := e.pools.Load(key); ok {
		return nil
	}
	if err := e.opts.EnsurePool(ctx, tenant, pool); err != nil {
		return fmt.Errorf("provision the queues of pool %s: %w", pool, err)
	}
	e.pools.Store(key, struct{}{})
	return nil
}

// Start starts the consumers and the presence reader of tenant t under ctx
// (a tenants.Starter). The returned function stops them.
func (e *Engine) Start(ctx context.Context, t *tenants.Tenant) (func(context.Context) error, error) {
	ctx, cancel := context.WithCancel(ctx)
	var (
		consumers []queue.Consumer
		wg        sync.WaitGroup
	)
	// The status batches' per-job writers and settles run on goroutines
	// kept between batches, whose stacks grow once.
	workers := workpool.New(0)
	stop := func(sctx context.Context) error {
		err := queue.StopAll(sctx, consumers...)
		cancel()
		wg.Wait()
		workers.Close()
		return err
	}
	batcher := newBatcher(e.opts.StatusBatch)
	wg.Go(func() { batcher.run(ctx, func(b []*pending) { e.applyStatusBatch(ctx, t, workers, b) }) })
	maxDel := e.opts.MaxDeliveries
	// The submit and status consumers ack without waiting for the
	// broker's reply: a redelivered SubmitJob finds its record (and repeats
	// at most a deduplicated dispatch), a redelivered status is applied as
	// a duplicate or fenced; a lost ack costs a redelivery, not a job.
	specs := []struct {
		cfg queue.ConsumerConfig
		h   queue.Handler
	}{
		{queue.ConsumerConfig{Name: ConsumerSubmit, Subject: e.subjects.Submit(t.Name), AckWait: e.opts.AckWait, MaxDeliveries: maxDel, Concurrency: e.opts.SubmitConcurrency, AckNoWait: true}, e.handleSubmit(t)},
		{queue.ConsumerConfig{Name: ConsumerStatus, Subject: e.subjects.AllJobStatus(t.Name), AckWait: e.opts.AckWait, MaxDeliveries: maxDel, Concurrency: e.opts.StatusBatch, AckNoWait: true}, batcher.handle},
		{queue.ConsumerConfig{Name: ConsumerDeadLetter, Subject: e.subjects.All(t.Name, queue.RoleDeadLetter), AckWait: e.opts.AckWait, MaxDeliveries: maxDel, Concurrency: 4}, e.handleDeadLetter(t)},
		{queue.ConsumerConfig{Name: ConsumerRecords, Subject: e.subjects.AllJobRecords(t.Name), AckWait: e.opts.AckWait, MaxDeliveries: maxDel, Concurrency: 4}, e.handleRecords(t)},
	}
	for _, s := range specs {
		c, err := e.broker.Consume(ctx, s.cfg, s.h)
		if err != nil {
			_ = stop(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("consume %s as %s: %w", s.cfg.Subject, s.cfg.Name, err)
		}
		consumers = append(consumers, c)
	}
	wg.Go(func() { e.watchRunners(ctx, t) })
	wg.Go(func() { e.releaseAllHeld(ctx, t) })
	wg.Go(func() { e.runSchedules(ctx, t) })
	wg.Go(func() { e.runGate(ctx, t) })
	wg.Go(func() { e.runReaper(ctx, t) })
	wg.Go(func() { e.runLimits(ctx, t) })
	return stop, nil
}

// publish encodes m and publishes it on subject with dedupeID.
func (e *Engine) publish(ctx context.Context, subject string, m proto.Message, dedupeID string) error {
	msg, err := events.Encode(subject, m, dedupeID)
	if err != nil {
		return err
	}
	if err := e.broker.Publish(ctx, msg); err != nil {
		return fmt.Errorf("publish %s on %s: %w", events.TypeName(m), subject, err)
	}
	return nil
}

// Deduplication ids are scoped by what is published: JetStream deduplicates
// per stream, and the submit and jobs subjects of a tenant share one, so a
// SubmitJob and the JobDispatched of the same job must not share an id.
//
// A SubmitJob's id names the one message, "submit/<job id>/<event id>",
// not the job. The broker remembers a dedupe id for its whole window
// whatever becomes of the message: had the id been "submit/<job id>", a
// SubmitJob of that id dead-lettered by the submit consumer (sent by
// another client, or by a version this one cannot read) would make every
// later submit of the id be dropped as a duplicate within the window, and
// the job would never exist. Dedupe here only absorbs re-sends of one
// publish; one job per id comes from the record, whose create is
// idempotent (a second SubmitJob of an id is acknowledged without effect).
func submitDedupeID(id, eventID string) string { return "submit/" + id + "/" + eventID }
func dispatchDedupeID(id string) string        { return "dispatch/" + id }

// Submit publishes a SubmitJob for a job the API accepted; the submit
// consumer creates the record.
// The job's user is the principal of ctx (the API request's), if any.
// The trace of ctx (the API request's) goes with the job.
func (e *Engine) Submit(ctx context.Context, t *tenants.Tenant, id string, spec *jobsv1.JobSpec) error {
	return e.submitAs(ctx, t, id, spec, directory.UserOf(auth.PrincipalFrom(ctx)))
}

// submitAs publishes a SubmitJob of user ("" for none).
func (e *Engine) submitAs(ctx context.Context, t *tenants.Tenant, id string, spec *jobsv1.JobSpec, user string) (err error) {
	ctx, span := startSpan(ctx, "scheduler.submit", t, id)
	defer func() { telemetry.End(span, err) }()
	m := &jobsv1.SubmitJob{Envelope: events.WithTrace(ctx, events.NewEnvelope(t.Name, 0, id, "")), JobId: id, Spec: spec, User: user}
	return e.publish(ctx, e.subjects.Submit(t.Name), m, submitDedupeID(id, m.GetEnvelope().GetEventId()))
}

// dispatch puts the job on its pool's queue with the deduplication id
// "dispatch/<job id>", so a repeated dispatch within the broker's window is
// dropped.
func (e *Engine) dispatch(ctx context.Context, t *tenants.Tenant, r *jobs.Record) (err error) {
	ctx, span := startSpan(telemetry.Extract(ctx, r.TraceContext), "scheduler.dispatch", t, r.ID)
	defer func() { telemetry.End(span, err) }()
	if err := e.ensurePool(ctx, t.Name, r.Pool); err != nil {
		return err
	}
	if r.AttemptToken == "" {
		// A record written before attempt tokens: issue its token first,
		// so that the events of the dispatch find it.
		var err error
		if r, err = e.issueToken(ctx, t, r.ID); err != nil {
			return err
		}
	}
	// The dispatch opens attempt 1; the queue's redeliveries of this
	// message number the later ones.
	m, err := e.jobMessage(ctx, t, r, 1)
	if err != nil {
		return err
	}
	return e.publish(ctx, e.subjects.Jobs(t.Name, r.Pool), m, dispatchDedupeID(r.ID))
}

// jobMessage is the signed JobDispatched of r opening attempt; it carries
// the trace context of ctx.
func (e *Engine) jobMessage(ctx context.Context, t *tenants.Tenant, r *jobs.Record, attempt int) (*jobsv1.JobDispatched, error) {
	m := &jobsv1.JobDispatched{
		Envelope:     events.WithTrace(ctx, events.NewEnvelope(t.Name, uint32(attempt), r.ID, r.TraceID)),
		JobId:        r.ID,
		Spec:         r.Spec(),
		SubmittedAt:  timestamppb.New(r.CreatedAt),
		AttemptToken: r.AttemptToken,
		// The runner maps the user to the ServiceAccount of a kubernetes task.
		User: r.User,
		// The budget the runner checks the deliveries against.
		StartedAttempts: uint32(max(r.Started, 0)),
		// A short attempt's lines ride with its outcome (applyJobStatus
		// keeps them with the record).
		InlineLogsMax: jobs.InlineLogsMax,
		// A busy runner's short jobs' outcomes share a message
		// (statusbatch.go).
		StatusBatchMax: uint32(max(e.opts.StatusBatchMax, 0)),
	}
	if d := e.opts.RunningReportDelay; d > 0 {
		m.RunningReportDelay = durationpb.New(d)
	}
	if e.opts.Signer != nil {
		b := signing.Binding{Tenant: t.Name, Scope: signing.PoolScope(r.Pool), Subject: r.ID, Attempt: uint32(attempt)}
		if err := e.opts.Signer.Sign(m, b); err != nil {
			return nil, fmt.Errorf("sign job %s: %w", r.ID, err)
		}
	}
	return m, nil
}

// issueToken gives the record of id an attempt token if it has none yet,
// and returns the record as stored.
func (e *Engine) issueToken(ctx context.Context, t *tenants.Tenant, id string) (*jobs.Record, error) {
	token := jobs.NewAttemptToken()
	rec, _, err := t.Jobs.Update(ctx, id, func(r *jobs.Record) (bool, error) {
		if r.AttemptToken != "" {
			return false, nil
		}
		r.AttemptToken = token
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("issue attempt token of job %s: %w", id, err)
	}
	return rec, nil
}

// ErrNoRunner is returned when a cancel should go to a runner whose id
// cannot be a subject token (a runner older than the per-runner control
// subjects): no subject reaches it.
var ErrNoRunner = errors.New("no valid runner id to send the cancel to")

// sendCancel tells the runner that runs the job to stop it, on the
// runner's own control subject: SQS cannot broadcast to a pool, and only
// that runner needs to know.
func (e *Engine) sendCancel(ctx context.Context, t *tenants.Tenant, r *jobs.Record, runnerID string, attempt int, reason string) error {
	if !queue.ValidToken(runnerID) {
		return fmt.Errorf("%w: %q", ErrNoRunner, runnerID)
	}
	m := &jobsv1.CancelJob{
		Envelope: events.WithTrace(ctx, events.NewEnvelope(t.Name, uint32(max(attempt, 0)), r.ID+"-cancel", r.TraceID)),
		JobId:    r.ID,
		Reason:   reason,
	}
	return e.publish(ctx, e.subjects.RunnerControl(t.Name, r.Pool, runnerID), m, "")
}

// Deliveries are settled even while the engine stops (a settle is quick and
// saves a redelivery after the ack wait): their settle calls use a context
// that is not cancelled with the handler's; the queue library bounds them.

// poison dead-letters a message that cannot be processed, ever.
func (e *Engine) poison(ctx context.Context, d queue.Delivery, role queue.Role, err error) {
	e.m.MalformedMessage(role)
	e.log.Warn("malformed message dead-lettered", "subject", d.Subject(), "role", string(role), "type", d.Header()[queue.HeaderType], "attempt", d.Attempt(), "error", err)
	if terr := d.Term(context.WithoutCancel(ctx), err.Error()); terr != nil {
		e.log.Error("dead-letter message failed", "subject", d.Subject(), "error", terr)
	}
}

// retryLater returns a delivery whose processing failed for a transient
// reason to its queue, later each time (at once when the engine stops).
func (e *Engine) retryLater(ctx context.Context, d queue.Delivery, err error) {
	delay := retryDelay(d)
	if ctx.Err() != nil {
		delay = 0 // stopping: hand it to another replica now
	} else {
		e.log.Warn("message processing failed, will retry", "subject", d.Subject(), "attempt", d.Attempt(), "retry_in", delay, "error", err)
	}
	if nerr := d.Nak(context.WithoutCancel(ctx), delay); nerr != nil {
		e.log.Error("nak message failed", "subject", d.Subject(), "error", nerr)
	}
}

// retryDelay is how long a delivery handed back for a retry waits: longer
// each time, 30s at most.
func retryDelay(d queue.Delivery) time.Duration {
	return min(100*time.Millisecond<<min(d.Attempt(), 9), 30*time.Second)
}

func (e *Engine) ack(ctx context.Context, d queue.Delivery) {
	if err := d.Ack(context.WithoutCancel(ctx)); err != nil {
		e.log.Warn("ack message failed", "subject", d.Subject(), "error", err)
	}
}
