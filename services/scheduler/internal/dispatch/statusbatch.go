package dispatch

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

var (
	jobStatusType      = events.TypeName(&jobsv1.JobStatus{})
	jobStatusBatchType = events.TypeName(&jobsv1.JobStatusBatch{})
)

// decodedStatus is one status event of a delivery: its job and item, or
// why it cannot be applied (item.d is then what is dead-lettered).
type decodedStatus struct {
	id  string
	it  statusItem
	err error
}

// decodeStatuses decodes the status events a delivery carries: one for a
// JobStatus, one per status for a JobStatusBatch. A batch's statuses are
// each settled on their own (statusPart): a malformed one is dead-lettered
// alone, the others applied. A batch that does not decode, or whose first
// status is not of the job its subject names, is malformed as a whole.
func (e *Engine) decodeStatuses(t *tenants.Tenant, d queue.Delivery) []decodedStatus {
	if d.Header()[queue.HeaderType] != jobStatusBatchType {
		id, it, err := decodeStatus(d)
		if err != nil {
			it.d = d
		}
		return []decodedStatus{{id: id, it: it, err: err}}
	}
	b, err := events.DecodeAs[*jobsv1.JobStatusBatch](d.Header(), d.Data())
	if err == nil && len(b.GetStatuses()) == 0 {
		err = fmt.Errorf("%w: a status batch without statuses", events.ErrMalformed)
	}
	if err == nil {
		err = checkSubjectJob(d.Subject(), b.GetStatuses()[0].GetJobId())
	}
	if err != nil {
		return []decodedStatus{{it: statusItem{d: d}, err: err}}
	}
	batch := &sharedDelivery{d: d, left: len(b.GetStatuses())}
	out := make([]decodedStatus, 0, len(b.GetStatuses()))
	for i, st := range b.GetStatuses() {
		p := &statusPart{shared: batch, index: i, status: st, subject: e.subjects.JobStatus(t.Name, st.GetJobId()), e: e, tenant: t.Name}
		if !queue.ValidToken(st.GetJobId()) {
			// No subject can name it: dead-lettered under the batch's.
			p.subject = d.Subject()
		}
		id, it, err := decodeStatusMessage(p, st)
		it.d = p
		out = append(out, decodedStatus{id: id, it: it, err: err})
	}
	return out
}

// checkSubjectJob checks that a status of job id came on that job's status
// subject.
func checkSubjectJob(subject, id string) error {
	if p, err := queue.ParseSubject(subject); err == nil {
		if subjID, _, _ := strings.Cut(p.Key, "."); subjID != id {
			return fmt.Errorf("%w: job_id %q on the subject of job %q", events.ErrMalformed, id, subjID)
		}
	}
	return nil
}

// sharedDelivery settles a delivery that carried the statuses of several
// jobs once each of them is settled: acknowledged when every one was
// applied (or dead-lettered on its own), handed back when any one was, so
// that the queue brings the whole message again. Applying a status twice
// changes nothing, so the others are harmless to repeat.
type sharedDelivery struct {
	d queue.Delivery

	mu    sync.Mutex
	left  int
	nak   bool
	delay time.Duration
}

// settled records one status's settlement; the last one settles the
// delivery.
func (s *sharedDelivery) settled(ctx context.Context, nak bool, delay time.Duration) error {
	s.mu.Lock()
	s.left--
	if nak {
		s.nak, s.delay = true, max(s.delay, delay)
	}
	last, doNak, d := s.left == 0, s.nak, s.delay
	s.mu.Unlock()
	switch {
	case !last:
		return nil
	case doNak:
		return s.d.Nak(ctx, d)
	default:
		return s.d.Ack(ctx)
	}
}

// statusPart is one status of a JobStatusBatch, handled as a delivery of
// its own: its subject is its job's status subject and its data the
// status alone, and dead-lettering it stores that status alone.
type statusPart struct {
	shared  *sharedDelivery
	index   int
	status  *jobsv1.JobStatus
	subject string
	e       *Engine
	tenant  string

	once sync.Once
}

var _ queue.Delivery = (*statusPart)(nil)

func (p *statusPart) Subject() string { return p.subject }

func (p *statusPart) Data() []byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p.status)
	return b
}

func (p *statusPart) Header() map[string]string {
	return map[string]string{queue.HeaderType: jobStatusType}
}

func (p *statusPart) Attempt() int { return p.shared.d.Attempt() }

// settle settles the part once; a second settlement of it is ignored.
func (p *statusPart) settle(ctx context.Context, nak bool, delay time.Duration) error {
	var err error
	p.once.Do(func() { err = p.shared.settled(ctx, nak, delay) })
	return err
}

func (p *statusPart) Ack(ctx context.Context) error { return p.settle(ctx, false, 0) }

func (p *statusPart) Nak(ctx context.Context, delay time.Duration) error {
	return p.settle(ctx, true, delay)
}

func (p *statusPart) InProgress(ctx context.Context) error { return p.shared.d.InProgress(ctx) }

// Term dead-letters the status alone, as the backend would a message of
// its own: on the tenant's dead-letter subject, with the reason, its
// job's status subject and the delivery count. Should that publish fail,
// the whole delivery comes back.
func (p *statusPart) Term(ctx context.Context, reason string) error {
	msg, err := events.Encode(p.e.subjects.DeadLetter(p.tenant, queue.RoleJobEvents), p.status, p.dedupeID())
	if err == nil {
		msg.Header[queue.HeaderDeadLetterReason] = strings.NewReplacer("\r", " ", "\n", " ").Replace(reason)
		msg.Header[queue.HeaderDeadLetterSubject] = p.subject
		msg.Header[queue.HeaderDeadLetterAttempts] = strconv.Itoa(p.Attempt())
		err = p.e.broker.Publish(ctx, msg)
	}
	if err != nil {
		_ = p.settle(ctx, true, retryDelay(p))
		return fmt.Errorf("dead-letter status %d of a batch on %s: %w", p.index, p.shared.d.Subject(), err)
	}
	return p.settle(ctx, false, 0)
}

// dedupeID names the part's dead letter: the status's own idempotency key
// (the runner's "<job>-<attempt>-<STATE>") when it has one.
func (p *statusPart) dedupeID() string {
	if k := p.status.GetEnvelope().GetIdempotencyKey(); k != "" {
		return "dlq-" + k
	}
	return ""
}
