package kv

import (
	"context"
	"errors"
	"sync"
)

// Codec turns a record type into the bytes a Store keeps and back. Clone
// returns a copy that shares nothing mutable with its argument.
type Codec[T any] struct {
	Encode func(T) ([]byte, error)
	Decode func([]byte) (T, error)
	Clone  func(T) T
}

// Cache remembers, for recently written keys, the decoded value and the
// revision of the last write this process made (or saw), so that the
// records a replica keeps changing are neither read nor decoded again:
//
//   - Mutate starts from the remembered value instead of reading the key:
//     the compare-and-set either succeeds, because nobody wrote the key
//     since, or fails with ErrConflict, and Mutate then reads it afresh;
//   - Get and Decode hand out a copy of the remembered value when the
//     store's revision is the remembered one, instead of decoding.
//
// Correctness rests on the compare-and-set and on revisions, never on the
// cache; it only saves work when this process is the key's only writer,
// the common case for a record created and updated by one replica. The
// values it hands out are copies (Codec.Clone): callers may change them.
type Cache[T any] struct {
	codec Codec[T]
	size  int

	mu      sync.Mutex
	entries map[string]cached[T]
	order   []string // insertion order, for eviction
	next    int
}

type cached[T any] struct {
	rev uint64
	v   T // never handed out: only its clones are
}

// NewCache returns a cache holding at most size keys (the oldest
// remembered key is forgotten first).
func NewCache[T any](size int, codec Codec[T]) *Cache[T] {
	size = max(size, 1)
	return &Cache[T]{codec: codec, size: size, entries: make(map[string]cached[T], size), order: make([]string, size)}
}

// remember keeps v (owned by the cache from now on) as key's value at rev,
// unless a later revision is remembered already.
func (c *Cache[T]) remember(key string, rev uint64, v T) {
	c.mu.Lock()
	defer c.mu.Unlock()
	old, ok := c.entries[key]
	if ok && old.rev > rev {
		return
	}
	if !ok {
		if gone := c.order[c.next]; gone != "" {
			delete(c.entries, gone)
		}
		c.order[c.next] = key
		c.next = (c.next + 1) % c.size
	}
	c.entries[key] = cached[T]{rev: rev, v: v}
}

// lookup returns a copy of key's remembered value and its revision.
func (c *Cache[T]) lookup(key string) (T, uint64, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok {
		var zero T
		return zero, 0, false
	}
	return c.codec.Clone(e.v), e.rev, true
}

// at returns a copy of key's remembered value if it is the one at rev.
func (c *Cache[T]) at(key string, rev uint64) (T, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || e.rev != rev {
		var zero T
		return zero, false
	}
	return c.codec.Clone(e.v), true
}

// Decode returns the value of e: a copy of the remembered one when e is
// at the remembered revision, else e's value decoded.
func (c *Cache[T]) Decode(e Entry) (T, error) {
	if v, ok := c.at(e.Key, e.Revision); ok {
		return v, nil
	}
	return c.codec.Decode(e.Value)
}

// Get reads key from s and returns its value (Decode).
func (c *Cache[T]) Get(ctx context.Context, s Store, key string) (T, error) {
	e, err := s.Get(ctx, key)
	if err != nil {
		var zero T
		return zero, err
	}
	return c.Decode(e)
}

// Create writes v under key if key does not exist, and remembers it.
func (c *Cache[T]) Create(ctx context.Context, s Store, key string, v T) error {
	b, err := c.codec.Encode(v)
	if err != nil {
		return err
	}
	rev, err := s.Create(ctx, key, b)
	if err != nil {
		return err
	}
	c.remember(key, rev, c.codec.Clone(v))
	return nil
}

// Mutate applies fn to key's value and writes the result with
// compare-and-set, starting from the remembered value when there is one
// and reading afresh (at most attempts times) on a conflict. fn returns
// false to write nothing; as the remembered value may be stale, that is
// only believed of a fresh read. Mutate returns the value as stored
// afterwards (a copy the caller owns) and whether it wrote.
func (c *Cache[T]) Mutate(ctx context.Context, s Store, key string, attempts int, fn func(T) (bool, error)) (T, bool, error) {
	var zero T
	if v, rev, ok := c.lookup(key); ok {
		write, err := fn(v)
		if err != nil {
			return zero, false, err
		}
		if write {
			done, err := c.write(ctx, s, key, v, rev)
			if err != nil {
				return zero, false, err
			}
			if done {
				return v, true, nil
			}
		}
	}
	if attempts <= 0 {
		attempts = 10
	}
	var lastErr error
	for range attempts {
		e, err := s.Get(ctx, key)
		if err != nil {
			return zero, false, err
		}
		v, err := c.Decode(e)
		if err != nil {
			return zero, false, err
		}
		write, err := fn(v)
		if err != nil || !write {
			return v, false, err
		}
		done, err := c.write(ctx, s, key, v, e.Revision)
		if err != nil {
			return zero, false, err
		}
		if done {
			return v, true, nil
		}
		lastErr = ErrConflict
	}
	return zero, false, lastErr
}

// write stores v under key if key is still at rev; it reports false on a
// conflict.
func (c *Cache[T]) write(ctx context.Context, s Store, key string, v T, rev uint64) (bool, error) {
	b, err := c.codec.Encode(v)
	if err != nil {
		return false, err
	}
	next, err := s.Update(ctx, key, b, rev)
	if errors.Is(err, ErrConflict) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c.remember(key, next, c.codec.Clone(v))
	return true, nil
}
