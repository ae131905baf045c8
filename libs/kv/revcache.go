package kv

import (
	"context"
	"errors"
	"sync"
)

// RevisionCache remembers, for recently written keys, the value and
// revision this process wrote last. Its Mutate starts from the remembered
// entry instead of reading the key: the compare-and-set either succeeds,
// because nobody wrote the key since, or fails with ErrConflict, and Mutate
// then falls back to a fresh read. Correctness still rests on the
// compare-and-set; the cache only saves the read when this process is the
// key's only writer, which is the common case for a record created and
// updated by one replica.
type RevisionCache struct {
	size int

	mu      sync.Mutex
	entries map[string]Entry
	order   []string // insertion order, for eviction
	next    int
}

// NewRevisionCache returns a cache holding at most size keys (the oldest
// remembered key is forgotten first).
func NewRevisionCache(size int) *RevisionCache {
	if size <= 0 {
		size = 1
	}
	return &RevisionCache{size: size, entries: make(map[string]Entry, size), order: make([]string, size)}
}

// Remember records e as the latest entry this process wrote.
func (c *RevisionCache) Remember(e Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[e.Key]; !ok {
		if old := c.order[c.next]; old != "" {
			delete(c.entries, old)
		}
		c.order[c.next] = e.Key
		c.next = (c.next + 1) % c.size
	}
	e.Value = append([]byte(nil), e.Value...)
	c.entries[e.Key] = e
}

func (c *RevisionCache) lookup(key string) (Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	return e, ok
}

// Mutate is the package's Mutate, starting from the remembered entry of key
// when there is one, and remembering what it writes.
func (c *RevisionCache) Mutate(ctx context.Context, s Store, key string, attempts int, fn func(cur []byte) (next []byte, ok bool, err error)) (Entry, error) {
	if e, ok := c.lookup(key); ok {
		next, write, err := fn(append([]byte(nil), e.Value...))
		if err != nil {
			return Entry{}, err
		}
		if !write {
			// The remembered value may be stale: only a fresh read can say
			// that nothing is to be written.
			return c.mutateFresh(ctx, s, key, attempts, fn)
		}
		rev, err := s.Update(ctx, key, next, e.Revision)
		if err == nil {
			out := Entry{Key: key, Value: next, Revision: rev}
			c.Remember(out)
			return out, nil
		}
		if !errors.Is(err, ErrConflict) {
			return Entry{}, err
		}
	}
	return c.mutateFresh(ctx, s, key, attempts, fn)
}

func (c *RevisionCache) mutateFresh(ctx context.Context, s Store, key string, attempts int, fn func(cur []byte) (next []byte, ok bool, err error)) (Entry, error) {
	e, err := Mutate(ctx, s, key, attempts, fn)
	if err == nil {
		c.Remember(e)
	}
	return e, err
}
