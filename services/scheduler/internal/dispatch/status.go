package dispatch

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/workpool"
	commonv1 "github.com/outposthq/outpost/proto/outpost/common/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// statusWorkers bounds how many jobs of one batch are written at once.
const statusWorkers = 8

// unknownJobRetries is how often a status event of a job without a record
// is retried (a replica may read a store that lags) before it is dropped.
const unknownJobRetries = 3

// pending is a status delivery waiting in a batch; its handler returns when
// done is closed, so the consumer's concurrency bounds the batch.
type pending struct {
	d    queue.Delivery
	done chan struct{}
}

// batcher gathers the deliveries that arrive while a batch is applied into
// the next one, so that the events of one job in a batch cost one write.
type batcher struct {
	size int
	in   chan *pending
}

func newBatcher(size int) *batcher { return &batcher{size: size, in: make(chan *pending)} }

// handle is the consumer's handler: it hands the delivery to the batch loop
// and waits until the delivery is settled.
func (b *batcher) handle(ctx context.Context, d queue.Delivery) {
	p := &pending{d: d, done: make(chan struct{})}
	select {
	case b.in <- p:
	case <-ctx.Done():
		return // unsettled: redelivered after the ack wait
	}
	select {
	case <-p.done:
	case <-ctx.Done():
	}
}

func (b *batcher) run(ctx context.Context, apply func([]*pending)) {
	for {
		var batch []*pending
		select {
		case <-ctx.Done():
			return
		case p := <-b.in:
			batch = append(batch, p)
		}
	fill:
		for len(batch) < b.size {
			select {
			case p := <-b.in:
				batch = append(batch, p)
			default:
				break fill
			}
		}
		apply(batch)
		for _, p := range batch {
			close(p.done)
		}
	}
}

// statusItem is a decoded status event with its delivery.
type statusItem struct {
	d  queue.Delivery
	ev jobs.Event
	// batches is how many JobRecords batches the attempt sent before a
	// terminal status (JobResult.record_batches); 0 waits for none.
	batches int
	// logs are the attempt's lines its outcome carries (JobStatus.logs).
	logs *jobsv1.LogChunk
	// started is the RUNNING of an outcome that carries its attempt's
	// start (JobStatus.started_at): the runner reported no RUNNING.
	started *jobs.Event
	// env is the event's envelope when it carries a trace context.
	env *commonv1.Envelope
}

// settlements holds the settles of a batch's deliveries, run together once
// the batch is applied: with SQS, settles made at the same time share one
// request (up to 10 deliveries), where settles made one by one by each
// job's writer would each wait for their own.
type settlements struct {
	workers *workpool.Pool
	mu      sync.Mutex
	fns     []func()
}

func (s *settlements) add(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fns = append(s.fns, fn)
}

// run runs every settle at once and waits for them.
func (s *settlements) run() {
	g := workpool.Group{Pool: s.workers}
	for _, fn := range s.fns {
		g.Go(fn)
	}
	g.Wait()
}

// applyStatusBatch decodes a batch of status deliveries, dead-letters the
// malformed ones and applies the others job by job on workers; it returns
// once every delivery is settled.
func (e *Engine) applyStatusBatch(ctx context.Context, t *tenants.Tenant, workers *workpool.Pool, batch []*pending) {
	settle := &settlements{workers: workers}
	defer settle.run()
	byJob := map[string][]statusItem{}
	var order []string
	for _, p := range batch {
		for _, s := range e.decodeStatuses(t, p.d) {
			e.m.StatusEvents.Inc()
			if s.err != nil {
				settle.add(func() { e.poison(ctx, s.it.d, queue.RoleJobEvents, s.err) })
				continue
			}
			if _, ok := byJob[s.id]; !ok {
				order = append(order, s.id)
			}
			byJob[s.id] = append(byJob[s.id], s.it)
		}
	}
	for _, items := range byJob {
		// Deliveries are handled concurrently and may have swapped places:
		// put each job's events back in the order a runner sends them.
		slices.SortStableFunc(items, func(a, b statusItem) int {
			return cmp.Or(cmp.Compare(a.ev.Attempt, b.ev.Attempt), cmp.Compare(phase(a.ev.State), phase(b.ev.State)))
		})
	}
	sem := make(chan struct{}, statusWorkers)
	g := workpool.Group{Pool: workers}
	for _, id := range order {
		sem <- struct{}{}
		g.Go(func() {
			defer func() { <-sem }()
			items := e.awaitResults(ctx, t, id, byJob[id], settle)
			if len(items) > 0 {
				e.applyJobStatus(ctx, t, id, items, settle)
			}
		})
	}
	g.Wait()
}

// phase orders the events of one attempt: RUNNING comes before its outcome.
func phase(s jobs.State) int {
	if s == jobs.StateRunning {
		return 0
	}
	return 1
}

// decodeStatus decodes a JobStatus and checks it against its subject.
func decodeStatus(d queue.Delivery) (string, statusItem, error) {
	m, err := events.DecodeAs[*jobsv1.JobStatus](d.Header(), d.Data())
	if err != nil {
		return "", statusItem{}, err
	}
	if err := checkSubjectJob(d.Subject(), m.JobId); err != nil {
		return "", statusItem{}, err
	}
	return decodeStatusMessage(d, m)
}

// decodeStatusMessage checks a decoded JobStatus of delivery d and turns
// it into the job's id and item.
func decodeStatusMessage(d queue.Delivery, m *jobsv1.JobStatus) (string, statusItem, error) {
	if !queue.ValidToken(m.JobId) {
		return "", statusItem{}, fmt.Errorf("%w: job_id %q is not a job id", events.ErrMalformed, m.JobId)
	}
	it := statusItem{d: d}
	if len(m.GetEnvelope().GetTraceContext()) > 0 {
		it.env = m.Envelope
	}
	ev := jobs.Event{
		State:    jobs.StateFromProto(m.State),
		Attempt:  int(m.GetEnvelope().GetAttempt()),
		Reason:   m.Reason,
		RunnerID: m.RunnerId,
		Token:    m.GetAttemptToken(),
	}
	if ts := m.GetEnvelope().GetOccurredAt(); ts != nil {
		ev.At = ts.AsTime()
	}
	if m.RetryAt != nil {
		at := m.RetryAt.AsTime()
		ev.RetryAt = &at
	}
	if r := m.Result; r != nil && ev.State.Terminal() {
		code := r.ExitCode
		ev.ExitCode = &code
		ev.Outputs = r.Outputs
		it.batches = int(r.RecordBatches)
	}
	if err := ev.Check(); err != nil {
		return "", statusItem{}, fmt.Errorf("%w: %w", events.ErrMalformed, err)
	}
	if len(m.GetLogs().GetLines()) > 0 {
		it.logs = m.Logs
	}
	if m.StartedAt != nil && ev.State != jobs.StateRunning {
		it.started = &jobs.Event{State: jobs.StateRunning, Attempt: ev.Attempt, RunnerID: ev.RunnerID, Token: ev.Token, At: m.StartedAt.AsTime()}
	}
	it.ev = ev
	return m.JobId, it, nil
}

// applyJobStatus applies the events of one job in one compare-and-set write
// and adds the settles of their deliveries to settle.
func (e *Engine) applyJobStatus(ctx context.Context, t *tenants.Tenant, id string, items []statusItem, settle *settlements) {
	var (
		// results are those of the events evs applied, in order.
		results []jobs.Result
		evs     []jobs.Event
		// applied holds the items applied; forged holds those whose
		// attempt token is not the job's current one.
		applied, forged []statusItem
		// stop holds the events of runners that run a job that has
		// ended (cancelled, or finished by an attempt they did not know
		// was superseded): each of them is told to stop it.
		stop []jobs.Event
		// unkept holds the items whose inline logs the record cannot
		// keep: they are published on the job's log subject instead.
		unkept []statusItem
		now    = e.now()
	)
	ctx, span := statusSpan(ctx, t, id, items)
	defer span.End()
	rec, changed, err := t.Jobs.Update(ctx, id, func(r *jobs.Record) (bool, error) {
		results, evs, stop, applied, forged, unkept = results[:0], evs[:0], stop[:0], applied[:0], forged[:0], unkept[:0]
		changed := false
		apply := func(ev jobs.Event) error {
			res, err := r.Apply(ev, now, e.opts.HistoryLimit)
			if err != nil {
				return err
			}
			results, evs = append(results, res), append(evs, ev)
			changed = changed || res.Outcome == jobs.Applied || res.Outcome == jobs.Backfilled
			return nil
		}
		for _, it := range items {
			if !r.TokenMatches(it.ev.Token) {
				forged = append(forged, it)
				continue
			}
			applied = append(applied, it)
			// An outcome that carries its start: the start first, as if
			// the runner had reported RUNNING (a runner of an ended job
			// that reports only its outcome is not told to stop: it has).
			if it.started != nil {
				if err := apply(*it.started); err != nil {
					return false, err
				}
			}
			if err := apply(it.ev); err != nil {
				return false, err
			}
			if results[len(results)-1].Outcome == jobs.FencedTerminal && it.ev.State == jobs.StateRunning {
				stop = append(stop, it.ev)
			}
			// The lines of an attempt are kept whatever became of its
			// state (a late outcome of a cancelled job still has logs).
			switch placeLogs(r, it, now) {
			case logsKept:
				changed = true
			case logsUnkept:
				unkept = append(unkept, it)
			}
		}
		return changed, nil
	})
	switch {
	case errors.Is(err, jobs.ErrNotFound):
		for _, it := range items {
			if it.d.Attempt() < unknownJobRetries {
				settle.add(func() { e.retryLater(ctx, it.d, err) })
				continue
			}
			e.m.Fenced.WithLabelValues("unknown_job").Inc()
			e.log.Warn("status of unknown job dropped", "tenant", t.Name, "job_id", id, "subject", it.d.Subject())
			settle.add(func() { e.ack(ctx, it.d) })
		}
		return
	case errors.Is(err, jobs.ErrCorrupt):
		for _, it := range items {
			settle.add(func() { e.poison(ctx, it.d, queue.RoleJobEvents, err) })
		}
		return
	case err != nil:
		for _, it := range items {
			settle.add(func() { e.retryLater(ctx, it.d, err) })
		}
		return
	}
	sent := map[string]bool{}
	for _, ev := range stop {
		if sent[ev.RunnerID] {
			continue
		}
		sent[ev.RunnerID] = true
		reason := fmt.Sprintf("job is %s", rec.State)
		err := e.sendCancel(ctx, t, rec, ev.RunnerID, ev.Attempt, reason)
		if errors.Is(err, ErrNoRunner) {
			e.log.Warn("runner of an ended job cannot be told to stop it", "tenant", t.Name, "job_id", id, "runner_id", ev.RunnerID, "error", err)
			continue
		}
		if err != nil {
			// Applying the events again is harmless; the cancel is what
			// must not be lost.
			for _, it := range items {
				settle.add(func() { e.retryLater(ctx, it.d, err) })
			}
			return
		}
		e.log.Info("cancel sent to the runner of an ended job", "tenant", t.Name, "job_id", id, "state", string(rec.State), "attempt", ev.Attempt, "runner_id", ev.RunnerID)
	}
	if changed {
		e.m.StatusWrites.Inc()
	}
	for i, res := range results {
		e.count(t, rec, evs[i], res)
	}
	for _, it := range unkept {
		if err := e.publishLogs(ctx, t, id, it); err != nil {
			// Applying the events again is harmless; the lines are what
			// must not be lost.
			for _, it := range items {
				settle.add(func() { e.retryLater(ctx, it.d, err) })
			}
			return
		}
	}
	for _, it := range applied {
		settle.add(func() { e.ack(ctx, it.d) })
	}
	for _, it := range forged {
		settle.add(func() { e.rejectToken(ctx, t, it.d, id, it.ev.Attempt) })
	}
}

// logPlace is where placeLogs put the lines an outcome carried.
type logPlace int

const (
	logsNone   logPlace = iota // none, or the record has them already
	logsKept                   // kept with the record: it changed
	logsUnkept                 // for the log subject: larger than the dispatch's offer, or the record keeps as many attempts' lines as it may
)

// placeLogs keeps it.logs, the log lines its outcome carries, with r if
// they belong there, and says where they went.
func placeLogs(r *jobs.Record, it statusItem, now time.Time) logPlace {
	if it.logs == nil || r.HasLogs(it.ev.Attempt, it.ev.Token) {
		return logsNone
	}
	if proto.Size(it.logs) > jobs.InlineLogsMax {
		return logsUnkept
	}
	at := it.ev.At
	if at.IsZero() {
		at = now
	}
	l := jobs.AttemptLogs{Attempt: it.ev.Attempt, Token: it.ev.Token, FirstSeq: max(it.logs.GetFirstSeq(), 1), Lines: make([]jobs.LogLine, len(it.logs.GetLines()))}
	for i, line := range it.logs.GetLines() {
		l.Lines[i] = jobs.LogLine{Time: at, Stream: line.GetStream(), Text: line.GetText()}
		if line.GetTime() != nil {
			l.Lines[i].Time = line.GetTime().AsTime()
		}
	}
	if !r.AddLogs(l) {
		return logsUnkept
	}
	return logsKept
}

// publishLogs publishes it.logs, which the job's record could not keep, on
// the job's log subject, as the runner would have: with the dedupe id of
// the runner's chunk.
func (e *Engine) publishLogs(ctx context.Context, t *tenants.Tenant, id string, it statusItem) error {
	first := max(it.logs.GetFirstSeq(), 1)
	dedupe := events.LogChunkDedupeID(id, uint32(it.ev.Attempt), first)
	m := &jobsv1.LogChunk{
		Envelope:     events.NewEnvelope(t.Name, uint32(it.ev.Attempt), dedupe, ""),
		JobId:        id,
		FirstSeq:     first,
		Lines:        it.logs.GetLines(),
		AttemptToken: it.ev.Token,
	}
	return e.publish(ctx, e.subjects.JobLogs(t.Name, id), m, dedupe)
}

// ReasonAttemptToken is the dead-letter reason of a status, log or records
// event whose attempt token is not the one of its job's current dispatch.
const ReasonAttemptToken = "attempt token does not match the job's current attempt"

// rejectToken dead-letters an event that carries the wrong attempt token:
// it was not sent by the runner of the job's current dispatch, so it
// changes nothing.
func (e *Engine) rejectToken(ctx context.Context, t *tenants.Tenant, d queue.Delivery, jobID string, attempt int) {
	e.m.Fenced.WithLabelValues("attempt_token").Inc()
	e.log.Warn("event with a wrong attempt token dead-lettered", "tenant", t.Name, "job_id", jobID, "subject", d.Subject(), "attempt", attempt)
	if err := d.Term(context.WithoutCancel(ctx), ReasonAttemptToken); err != nil {
		e.log.Error("dead-letter message failed", "subject", d.Subject(), "error", err)
	}
}

func (e *Engine) count(t *tenants.Tenant, rec *jobs.Record, ev jobs.Event, res jobs.Result) {
	switch {
	case res.Outcome == jobs.Applied || res.Outcome == jobs.Backfilled:
		to := res.To
		if res.Outcome == jobs.Backfilled {
			to = jobs.StateRunning
		}
		e.m.Jobs.WithLabelValues(string(to)).Inc()
		if res.FirstStart {
			at := ev.At
			if at.IsZero() {
				at = e.now()
			}
			e.m.DispatchLatency.Observe(max(at.Sub(rec.CreatedAt), 0).Seconds())
		}
		if res.Redelivery {
			e.m.Redeliveries.Inc()
		}
		level := slog.LevelDebug
		if res.To.Terminal() && res.Outcome == jobs.Applied {
			level = slog.LevelInfo
			e.jobEnded(t)
		}
		e.log.Log(context.Background(), level, "job state changed", "tenant", t.Name, "job_id", rec.ID, "outcome", res.Outcome.String(),
			"from", string(res.From), "to", string(to), "attempt", ev.Attempt, "runner_id", ev.RunnerID, "reason", ev.Reason)
	case res.Outcome.Fenced():
		e.m.Fenced.WithLabelValues(res.Outcome.String()).Inc()
		e.log.Info("status event fenced", "tenant", t.Name, "job_id", rec.ID, "reason", res.Outcome.String(),
			"event_state", string(ev.State), "event_attempt", ev.Attempt, "state", string(rec.State), "attempt", rec.Attempt)
	}
}
