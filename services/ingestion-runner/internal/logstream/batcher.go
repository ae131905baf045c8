// Package logstream ships what a job writes as LogChunk events: output is
// split into lines, secrets are masked, and lines are batched so that a
// chatty job sends a few events a second instead of one per line.
package logstream

import (
	"time"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// Limits bound a batch. A batch is sent when it holds MaxLines lines, when
// the next line would take it past MaxBytes, or Interval after its first
// line, whichever comes first.
type Limits struct {
	MaxLines int
	MaxBytes int
	Interval time.Duration
}

// lineOverhead approximates what a LogLine costs in a LogChunk besides its
// text (timestamp, stream name, field tags), so MaxBytes bounds the encoded
// event and not only the text.
const lineOverhead = 24

func lineSize(l *jobsv1.LogLine) int { return len(l.GetText()) + len(l.GetStream()) + lineOverhead }

// Batcher groups lines by the size rules of Limits; the Interval rule is
// the caller's, which owns the clock. It is not safe for concurrent use.
type Batcher struct {
	limits Limits
	lines  []*jobsv1.LogLine
	bytes  int
}

// NewBatcher returns an empty batcher.
func NewBatcher(l Limits) *Batcher { return &Batcher{limits: l} }

// Add appends l and returns the batches that are now complete, oldest
// first: the current one when l would not fit in it, and the one holding l
// when it reached a limit. A line larger than MaxBytes goes out alone.
func (b *Batcher) Add(l *jobsv1.LogLine) [][]*jobsv1.LogLine {
	var full [][]*jobsv1.LogLine
	size := lineSize(l)
	if len(b.lines) > 0 && b.bytes+size > b.limits.MaxBytes {
		full = append(full, b.Take())
	}
	b.lines = append(b.lines, l)
	b.bytes += size
	if len(b.lines) >= b.limits.MaxLines || b.bytes >= b.limits.MaxBytes {
		full = append(full, b.Take())
	}
	return full
}

// Len is the number of lines waiting.
func (b *Batcher) Len() int { return len(b.lines) }

// Take returns the waiting lines, possibly none, and empties the batch.
func (b *Batcher) Take() []*jobsv1.LogLine {
	out := b.lines
	b.lines, b.bytes = nil, 0
	return out
}
