package logstream

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/redact"
)

// Stream names of LogLine.stream.
const (
	StreamStdout = "stdout"
	StreamStderr = "stderr"
	StreamRunner = "runner"
)

// publishTimeout bounds one LogChunk publish; a broker that stays away
// longer costs the chunk, not the job.
const publishTimeout = 10 * time.Second

// sendQueue is how many finished chunks may wait for the broker before
// writers block, which slows a job down rather than buffering its output
// without bound.
const sendQueue = 32

// Publisher is the part of the broker the streamer needs.
type Publisher interface {
	Publish(ctx context.Context, msg queue.Message) error
}

// Options configure a Streamer for one attempt of one job.
type Options struct {
	Publisher Publisher
	Subject   string
	Tenant    string
	JobID     string
	Attempt   uint32
	// AttemptToken is the dispatch's attempt token, echoed on every chunk.
	AttemptToken string
	Limits       Limits
	// MaxLineBytes is where a line without a newline is split.
	MaxLineBytes int
	Redactor     *redact.Redactor
	Logger       *slog.Logger
	// OnSent, when set, is told how many lines each published chunk held.
	OnSent func(lines int)
}

type chunk struct {
	firstSeq uint64
	lines    []*jobsv1.LogLine
}

// Streamer turns lines into LogChunk events published in order. Lines are
// numbered from 1 within the attempt. It is safe for concurrent use.
type Streamer struct {
	opts Options

	mu     sync.Mutex
	batch  *Batcher
	first  uint64 // seq of the first line in batch; advances as batches are taken
	timer  *time.Timer
	gen    uint64 // bumped whenever the batch is taken, to ignore a stale timer
	closed bool

	sendq chan chunk
	done  chan struct{}
}

// Start returns a running Streamer. Close it to send what is left.
func Start(opts Options) *Streamer {
	if opts.Redactor == nil {
		opts.Redactor = redact.New()
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Streamer{
		opts:  opts,
		batch: NewBatcher(opts.Limits),
		first: 1,
		sendq: make(chan chunk, sendQueue),
		done:  make(chan struct{}),
	}
	go s.sendLoop()
	return s
}

// Mask adds values to redact from every later line.
func (s *Streamer) Mask(values ...string) { s.opts.Redactor.Add(values...) }

// Log adds a line from the runner itself.
func (s *Streamer) Log(text string) { s.Line(StreamRunner, text) }

// Stream returns a writer whose bytes become lines of stream. Close it to
// send a last line that has no newline.
func (s *Streamer) Stream(name string) io.WriteCloser {
	return NewLineWriter(func(t string) { s.Line(name, t) }, s.opts.MaxLineBytes, s.opts.Redactor)
}

// Line adds one line, redacted. Lines added after Close are dropped.
func (s *Streamer) Line(stream, text string) {
	text = s.opts.Redactor.Redact(text)
	// Protobuf strings must be UTF-8; a binary byte in the output must not
	// cost the whole chunk.
	text = strings.ToValidUTF8(text, "\uFFFD")
	l := &jobsv1.LogLine{Time: timestamppb.Now(), Stream: stream, Text: text}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	for _, full := range s.batch.Add(l) {
		s.enqueueLocked(full)
	}
	if s.batch.Len() > 0 && s.timer == nil {
		gen := s.gen
		s.timer = time.AfterFunc(s.opts.Limits.Interval, func() { s.flushIfGen(gen) })
	}
}

func (s *Streamer) flushIfGen(gen uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gen != gen || s.closed {
		return
	}
	s.enqueueLocked(s.batch.Take())
}

// enqueueLocked hands a taken batch to the send loop. The batch it came
// from restarts, so its timer is stopped and the generation moves on.
func (s *Streamer) enqueueLocked(lines []*jobsv1.LogLine) {
	s.gen++
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
	if len(lines) == 0 {
		return
	}
	c := chunk{firstSeq: s.first, lines: lines}
	s.first += uint64(len(lines))
	s.sendq <- c
}

// Close sends the waiting lines and waits until every chunk has been
// published or ctx is done.
func (s *Streamer) Close(ctx context.Context) error {
	_, err := s.CloseInline(ctx, 0)
	return err
}

// CloseInline is Close, except that when no chunk was published before
// and the waiting lines, as one LogChunk, encode to at most maxBytes, they
// are not published: the chunk is returned, for the caller to send with
// the attempt's outcome (JobStatus.logs). It returns nil when the lines
// were published (or there were none); maxBytes 0 never keeps them.
func (s *Streamer) CloseInline(ctx context.Context, maxBytes int) (*jobsv1.LogChunk, error) {
	var inline *jobsv1.LogChunk
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		lines := s.batch.Take()
		s.gen++
		if s.timer != nil {
			s.timer.Stop()
		}
		if len(lines) > 0 && s.first == 1 && maxBytes > 0 {
			c := &jobsv1.LogChunk{FirstSeq: 1, Lines: lines, AttemptToken: s.opts.AttemptToken}
			if proto.Size(c) <= maxBytes {
				inline, lines = c, nil
			}
		}
		if len(lines) > 0 {
			// Not enqueueLocked: with the broker away the queue may be full,
			// and ctx bounds how long the job waits for its last lines.
			select {
			case s.sendq <- chunk{firstSeq: s.first, lines: lines}:
			case <-ctx.Done():
			}
		}
		close(s.sendq)
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return inline, nil
	case <-ctx.Done():
		return inline, fmt.Errorf("flush job logs: %w", ctx.Err())
	}
}

func (s *Streamer) sendLoop() {
	defer close(s.done)
	for c := range s.sendq {
		if err := s.publish(c); err != nil {
			// Logs are best effort: the status events carry the outcome.
			s.opts.Logger.Warn("job log chunk dropped", "job_id", s.opts.JobID, "attempt", s.opts.Attempt,
				"first_seq", c.firstSeq, "lines", len(c.lines), "error", err)
			continue
		}
		if s.opts.OnSent != nil {
			s.opts.OnSent(len(c.lines))
		}
	}
}

func (s *Streamer) publish(c chunk) error {
	dedupe := events.LogChunkDedupeID(s.opts.JobID, s.opts.Attempt, c.firstSeq)
	m := &jobsv1.LogChunk{
		Envelope:     events.NewEnvelope(s.opts.Tenant, s.opts.Attempt, dedupe, ""),
		JobId:        s.opts.JobID,
		FirstSeq:     c.firstSeq,
		Lines:        c.lines,
		AttemptToken: s.opts.AttemptToken,
	}
	msg, err := events.Encode(s.opts.Subject, m, dedupe)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	if err := s.opts.Publisher.Publish(ctx, msg); err != nil {
		return fmt.Errorf("publish log chunk: %w", err)
	}
	return nil
}
