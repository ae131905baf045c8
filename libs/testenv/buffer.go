package testenv

import (
	"bytes"
	"sync"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads. With
// Limit above zero, writes past that many bytes are dropped (and reported
// as written), so a chatty writer cannot grow it without bound.
type SyncBuffer struct {
	// Limit is the most bytes kept; zero keeps everything.
	Limit int

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.Limit > 0 && b.buf.Len() >= b.Limit {
		return len(p), nil
	}
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// tailBuffer keeps the last limit bytes written to it and counts every
// byte, so that a reader can ask for what came after a given offset.
type tailBuffer struct {
	limit int

	mu    sync.Mutex
	buf   []byte
	total int64 // bytes ever written; buf holds the last len(buf) of them
}

func (w *tailBuffer) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	w.total += int64(len(b))
	if over := len(w.buf) - w.limit; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
	}
	return len(b), nil
}

// offset is the number of bytes written so far.
func (w *tailBuffer) offset() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.total
}

// since is what was written after offset, as far as it is still kept.
func (w *tailBuffer) since(offset int64) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	first := w.total - int64(len(w.buf)) // offset of buf[0]
	if offset < first {
		offset = first
	}
	return string(w.buf[offset-first:])
}
