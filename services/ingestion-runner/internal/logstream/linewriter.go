package logstream

import (
	"bytes"
	"sync"
	"unicode/utf8"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/redact"
)

// LineWriter splits what is written to it into lines (without the "\n" or
// "\r\n") and hands each to emit. A line longer than max is split so one
// runaway line cannot hold unbounded memory. It is safe for concurrent use.
type LineWriter struct {
	emit     func(string)
	max      int
	redactor *redact.Redactor

	mu  sync.Mutex
	buf []byte
}

// NewLineWriter returns a writer calling emit for each line, splitting lines
// longer than max bytes away from the values redactor masks.
func NewLineWriter(emit func(string), max int, redactor *redact.Redactor) *LineWriter {
	return &LineWriter{emit: emit, max: max, redactor: redactor}
}

// Write implements io.Writer; it never fails.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		// A long line is cut only once hold bytes past max are buffered, so a
		// secret straddling the cut is seen whole and the cut moved off it:
		// masking each piece on its own would let both halves through.
		hold := max(w.redactor.MaxLen()-1, 0)
		window := w.max + hold
		if i := bytes.IndexByte(w.buf, '\n'); i >= 0 && i <= window {
			w.emitLine(w.buf[:i])
			w.buf = w.buf[i+1:]
			continue
		}
		// A line of window bytes may still end in a newline; waiting for
		// one more byte also puts w.buf[w.max] in the buffer.
		if len(w.buf) <= window {
			break
		}
		// Keep a multi-byte character whole, then move the cut off any
		// secret: in that order, so the first step cannot move it back
		// into a secret.
		want := w.max
		for c := want; c > 0 && c > w.max-utf8.UTFMax; c-- {
			if utf8.RuneStart(w.buf[c]) {
				want = c
				break
			}
		}
		cut := w.redactor.SafeCut(string(w.buf[:window]), want)
		w.emit(string(w.buf[:cut]))
		w.buf = w.buf[cut:]
	}
	if len(w.buf) == 0 {
		w.buf = nil // drop the backing array a long line grew
	}
	return len(p), nil
}

func (w *LineWriter) emitLine(b []byte) {
	w.emit(string(bytes.TrimSuffix(b, []byte{'\r'})))
}

// Close emits what is left as a last line.
func (w *LineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emitLine(w.buf)
		w.buf = nil
	}
	return nil
}
