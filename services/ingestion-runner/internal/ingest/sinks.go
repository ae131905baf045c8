package ingest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cenkalti/backoff/v4"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/policy"
)

// ErrSink is returned (wrapped) when a sink could not take records.
var ErrSink = errors.New("sink failed")

// Sink takes records in batches.
type Sink interface {
	// BatchSize is how many records Write takes at most.
	BatchSize() int
	Write(ctx context.Context, recs []*Record) error
	// Close flushes and releases; it is called once, after the last Write,
	// even when the run failed.
	Close(ctx context.Context) error
}

// Publisher is the part of the queue broker the outpost sink needs.
type Publisher interface {
	Publish(ctx context.Context, msg queue.Message) error
}

// lineSink writes one JSON record per line.
type lineSink struct {
	w     *bufio.Writer
	close func() error
	// line is the buffer each record is encoded into.
	line []byte
}

func (s *lineSink) BatchSize() int { return 100 }

func (s *lineSink) Write(_ context.Context, recs []*Record) error {
	for _, r := range recs {
		line, err := r.AppendJSON(s.line[:0])
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSink, err)
		}
		s.line = append(line, '\n')
		if _, err := s.w.Write(s.line); err != nil {
			return fmt.Errorf("%w: write: %w", ErrSink, err)
		}
	}
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("%w: write: %w", ErrSink, err)
	}
	return nil
}

func (s *lineSink) Close(context.Context) error {
	err := s.w.Flush()
	if s.close != nil {
		err = errors.Join(err, s.close())
	}
	if err != nil {
		return fmt.Errorf("%w: close: %w", ErrSink, err)
	}
	return nil
}

// newFileSink truncates filename: a run's file holds that run's records
// only, as with DataHub's file sink.
func newFileSink(filename string) (*lineSink, error) {
	f, err := os.OpenFile(filename, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: file sink: %w", ErrSink, err)
	}
	return &lineSink{w: bufio.NewWriter(f), close: f.Close}, nil
}

// newFileSinkIn opens filename under the policy's file sink directory
// through os.Root, so neither ".." nor a symbolic link created since the
// job was checked leads the write out of it.
func newFileSinkIn(p *policy.Policy, filename string) (*lineSink, error) {
	rel, err := p.FileTarget(filename)
	if err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(p.FileSinkDir)
	if err != nil {
		return nil, fmt.Errorf("%w: file sink: %w", ErrSink, err)
	}
	defer root.Close()
	f, err := root.OpenFile(rel, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%w: file sink: %w", ErrSink, err)
	}
	return &lineSink{w: bufio.NewWriter(f), close: f.Close}, nil
}

func newConsoleSink(w io.WriteCloser) *lineSink {
	return &lineSink{w: bufio.NewWriter(w), close: w.Close}
}

// outpostSink publishes JobRecords on the job's records subject.
type outpostSink struct {
	pub       Publisher
	subject   string
	tenant    string
	jobID     string
	attempt   int
	token     string
	batchSize int
	// next is the sequence of the next record in the attempt, from 1.
	next uint64
	// sent counts the batches published.
	sent int
	now  func() time.Time
}

// publishTimeout bounds the retries of one JobRecords message.
const publishTimeout = 30 * time.Second

func (s *outpostSink) BatchSize() int { return s.batchSize }

func (s *outpostSink) Write(ctx context.Context, recs []*Record) error {
	first := s.next
	msgs := make([]*ingestv1.MetadataRecord, len(recs))
	for i, r := range recs {
		m, err := r.Proto()
		if err != nil {
			return fmt.Errorf("%w: outpost: %w", ErrSink, err)
		}
		msgs[i] = m
	}
	// The dedupe id makes a retried publish harmless; attempt and first
	// sequence identify the batch within the job.
	dedupe := fmt.Sprintf("%s-%d-records-%d", s.jobID, s.attempt, first)
	m := &ingestv1.JobRecords{
		Envelope:     events.NewEnvelope(s.tenant, uint32(s.attempt), dedupe, ""),
		JobId:        s.jobID,
		FirstSeq:     first,
		Records:      msgs,
		ProducedAt:   timestamppb.New(s.now()),
		AttemptToken: s.token,
	}
	if err := publish(ctx, s.pub, s.subject, m, dedupe); err != nil {
		return fmt.Errorf("%w: outpost: publish records %d-%d: %w", ErrSink, first, first+uint64(len(recs))-1, err)
	}
	s.next += uint64(len(recs))
	s.sent++
	return nil
}

// RecordBatches is how many batches Write published.
func (s *outpostSink) RecordBatches() int { return s.sent }

func (s *outpostSink) Close(context.Context) error { return nil }

// publish sends one JobRecords with retries.
func publish(ctx context.Context, pub Publisher, subject string, m *ingestv1.JobRecords, dedupe string) error {
	msg, err := events.Encode(subject, m, dedupe)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(100*time.Millisecond), backoff.WithMaxInterval(2*time.Second))
	return backoff.Retry(func() error {
		err := pub.Publish(ctx, msg)
		if errors.Is(err, queue.ErrClosed) || errors.Is(err, queue.ErrInvalidSubject) || errors.Is(err, queue.ErrPayloadTooLarge) {
			return backoff.Permanent(err)
		}
		return err
	}, backoff.WithContext(b, ctx))
}

// PublishChecks sends check results as one JobRecords message, the way
// the assertion task reports.
func PublishChecks(ctx context.Context, pub Publisher, subjects queue.Subjects, tenant, jobID string, attempt int, token string, checks []*ingestv1.CheckResult) error {
	dedupe := fmt.Sprintf("%s-%d-checks-1", jobID, attempt)
	m := &ingestv1.JobRecords{
		Envelope:     events.NewEnvelope(tenant, uint32(attempt), dedupe, ""),
		JobId:        jobID,
		FirstSeq:     1,
		Checks:       checks,
		ProducedAt:   timestamppb.Now(),
		AttemptToken: token,
	}
	return publish(ctx, pub, subjects.JobRecords(tenant, jobID), m, dedupe)
}
