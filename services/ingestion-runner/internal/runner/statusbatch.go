package runner

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// statusBatchBytes bounds the encoded statuses of one JobStatusBatch,
// well under what every backend takes in a message (SQS: 256 KiB).
const statusBatchBytes = 64 << 10

// statusReq is one status waiting for the status sender.
type statusReq struct {
	msg queue.Message // the status alone, as it is published alone
	st  *jobsv1.JobStatus
	// max is how many statuses the status's dispatch lets share a
	// message (JobDispatched.status_batch_max).
	max  int
	done chan error // the publish's result
}

// statusSender publishes the outcomes of short jobs (the only status of
// their attempt) for the whole runner, one publish at a time: the
// outcomes that end while a publish is in flight go together in the next
// one, as one JobStatusBatch. An idle runner's outcome goes at once and
// alone, as before; a busy runner's cost the broker one message for
// several jobs.
type statusSender struct {
	publish func(context.Context, queue.Message) error
	tenant  string
	subject func(jobID string) string

	mu     sync.Mutex
	queued []*statusReq
	wake   chan struct{} // holds a token when queued may have grown
}

func newStatusSender(tenant string, publish func(context.Context, queue.Message) error, subject func(string) string) *statusSender {
	return &statusSender{publish: publish, tenant: tenant, subject: subject, wake: make(chan struct{}, 1)}
}

// send queues req for the sender and waits for its publish, at most until
// ctx ends.
func (s *statusSender) send(ctx context.Context, req *statusReq) error {
	req.done = make(chan error, 1)
	s.mu.Lock()
	s.queued = append(s.queued, req)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run publishes what send queues until ctx ends.
func (s *statusSender) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		}
		for batch := s.take(); batch != nil; batch = s.take() {
			err := s.publishBatch(ctx, batch)
			for _, r := range batch {
				r.done <- err
			}
		}
	}
}

// take takes the next batch off the queue: the oldest status and those
// after it, as many as every one's dispatch allows and within
// statusBatchBytes; nil when nothing is queued.
func (s *statusSender) take() []*statusReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queued) == 0 {
		return nil
	}
	n, size, limit := 1, len(s.queued[0].msg.Data), s.queued[0].max
	for ; n < len(s.queued) && n < limit; n++ {
		r := s.queued[n]
		if n >= r.max || size+len(r.msg.Data) > statusBatchBytes {
			break
		}
		size += len(r.msg.Data)
		limit = min(limit, r.max)
	}
	batch := s.queued[:n:n]
	s.queued = s.queued[n:]
	if len(s.queued) == 0 {
		s.queued = nil // let the taken ones go
	}
	return batch
}

// publishBatch publishes one status alone, several as a JobStatusBatch on
// the subject of the first one's job. A batch the broker refuses as too
// large goes one status at a time.
func (s *statusSender) publishBatch(ctx context.Context, batch []*statusReq) error {
	if len(batch) == 1 {
		return s.publishRetrying(ctx, batch[0].msg)
	}
	b := &jobsv1.JobStatusBatch{Statuses: make([]*jobsv1.JobStatus, len(batch))}
	h := sha256.New()
	for i, r := range batch {
		b.Statuses[i] = r.st
		h.Write([]byte(r.msg.DedupeID))
		h.Write([]byte{0})
	}
	// The same statuses sent again are the same message to the broker.
	dedupe := "statuses-" + hex.EncodeToString(h.Sum(nil)[:16])
	b.Envelope = events.NewEnvelope(s.tenant, 0, dedupe, "")
	msg, err := events.Encode(s.subject(batch[0].st.GetJobId()), b, dedupe)
	if err == nil {
		err = s.publishRetrying(ctx, msg)
	}
	if !errors.Is(err, queue.ErrPayloadTooLarge) {
		return err
	}
	for _, r := range batch {
		if err := s.publishRetrying(ctx, r.msg); err != nil {
			return err
		}
	}
	return nil
}

// publishRetrying publishes msg, retrying for a while: a status is what
// the scheduler records, so it is worth waiting for. Its dedupe id makes
// the retries harmless.
func (s *statusSender) publishRetrying(ctx context.Context, msg queue.Message) error {
	ctx, cancel := context.WithTimeout(ctx, statusPublishTimeout)
	defer cancel()
	b := backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(100*time.Millisecond),
		backoff.WithMaxInterval(2*time.Second),
		backoff.WithMaxElapsedTime(0),
	)
	return backoff.Retry(func() error {
		pctx, pcancel := context.WithTimeout(ctx, settleTimeout)
		defer pcancel()
		err := s.publish(pctx, msg)
		if errors.Is(err, queue.ErrClosed) || errors.Is(err, queue.ErrInvalidSubject) || errors.Is(err, queue.ErrPayloadTooLarge) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(b, ctx))
}
