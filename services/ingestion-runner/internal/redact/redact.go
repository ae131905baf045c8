// Package redact masks secret values in text before it leaves the runner.
package redact

import (
	"slices"
	"strings"
	"sync"
)

// Mask replaces every secret occurrence.
const Mask = "****"

// Redactor masks a set of values that grows as a job resolves secrets. It is
// safe for concurrent use. The zero value masks nothing.
type Redactor struct {
	mu     sync.RWMutex
	values []string
	maxLen int
}

// New returns a Redactor for values.
func New(values ...string) *Redactor {
	r := &Redactor{}
	r.Add(values...)
	return r
}

// Add adds values to mask. Empty values are ignored. A multi-line value is
// also masked line by line, because output is redacted one line at a time
// and such a value can never appear whole in one line.
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range values {
		r.add(v)
		if strings.ContainsAny(v, "\r\n") {
			for _, line := range strings.FieldsFunc(v, func(c rune) bool { return c == '\n' || c == '\r' }) {
				r.add(line)
			}
		}
	}
}

func (r *Redactor) add(v string) {
	if strings.TrimSpace(v) == "" || slices.Contains(r.values, v) {
		return
	}
	r.values = append(r.values, v)
	r.maxLen = max(r.maxLen, len(v))
}

// MaxLen is the length of the longest masked value, 0 when there is none.
// A line splitter keeps that many bytes back so a value is never cut in two.
func (r *Redactor) MaxLen() int {
	if r == nil {
		return 0
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.maxLen
}

// Redact returns s with every occurrence of every value replaced by Mask.
// Occurrences that overlap or touch (values that share characters, or one
// inside another) become a single Mask, so no fragment of either shows.
func (r *Redactor) Redact(s string) string {
	spans := r.Spans(s)
	if len(spans) == 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	prev := 0
	for _, sp := range spans {
		b.WriteString(s[prev:sp[0]])
		b.WriteString(Mask)
		prev = sp[1]
	}
	b.WriteString(s[prev:])
	return b.String()
}

// Spans returns the merged byte ranges [start, end) of s that hold a value,
// in order.
func (r *Redactor) Spans(s string) [][2]int {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var spans [][2]int
	for _, v := range r.values {
		// Step one byte at a time, not past the match: a value may overlap
		// its own next occurrence ("aa" in "aaa").
		for off := 0; off < len(s); {
			i := strings.Index(s[off:], v)
			if i < 0 {
				break
			}
			spans = append(spans, [2]int{off + i, off + i + len(v)})
			off += i + 1
		}
	}
	if len(spans) == 0 {
		return nil
	}
	slices.SortFunc(spans, func(a, b [2]int) int { return a[0] - b[0] })
	merged := spans[:1]
	for _, sp := range spans[1:] {
		last := &merged[len(merged)-1]
		if sp[0] <= last[1] {
			last[1] = max(last[1], sp[1])
			continue
		}
		merged = append(merged, sp)
	}
	return merged
}

// SafeCut returns a cut point for s at or near want that does not fall
// inside a masked value: the start of the value when it begins after 0,
// otherwise its end.
func (r *Redactor) SafeCut(s string, want int) int {
	for _, sp := range r.Spans(s) {
		if sp[0] < want && want < sp[1] {
			if sp[0] > 0 {
				return sp[0]
			}
			return sp[1]
		}
	}
	return want
}
