package kv

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Memory is an in-process Store for unit tests. It keeps the contract of
// Store as the JetStream store does (package kvtest runs on both): keys
// are checked, a done context fails the call, values are copied in and
// out.
type Memory struct {
	mu   sync.Mutex
	rev  uint64
	data map[string]Entry
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{data: map[string]Entry{}} }

// check refuses a call the JetStream store would refuse: a done context
// or an invalid key.
func check(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	if !ValidKey(key) {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	return nil
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, key string) (Entry, error) {
	if err := check(ctx, key); err != nil {
		return Entry{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.data[key]
	if !ok {
		return Entry{}, ErrNotFound
	}
	e.Value = append([]byte(nil), e.Value...)
	return e, nil
}

// Create implements Store.
func (m *Memory) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := check(ctx, key); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.data[key]; ok {
		return 0, ErrExists
	}
	m.rev++
	m.data[key] = Entry{Key: key, Value: append([]byte(nil), value...), Revision: m.rev}
	return m.rev, nil
}

// Update implements Store.
func (m *Memory) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if err := check(ctx, key); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.data[key]
	if !ok {
		return 0, ErrNotFound
	}
	if e.Revision != rev {
		return 0, ErrConflict
	}
	m.rev++
	m.data[key] = Entry{Key: key, Value: append([]byte(nil), value...), Revision: m.rev}
	return m.rev, nil
}

// Delete implements Store.
func (m *Memory) Delete(ctx context.Context, key string, rev uint64) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.data[key]
	switch {
	case !ok:
		return ErrNotFound
	case rev != 0 && e.Revision != rev:
		return ErrConflict
	}
	delete(m.data, key)
	return nil
}

// Prune implements Store.
func (m *Memory) Prune(ctx context.Context, key string) error {
	if err := check(ctx, key); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for k := range m.data {
		if k == key || strings.HasPrefix(k, key+".") {
			delete(m.data, k)
		}
	}
	return nil
}

// Changes implements Store: the current value of each key written after
// rev.
func (m *Memory) Changes(ctx context.Context, rev uint64, fn func(Entry) bool) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return rev, fmt.Errorf("kv: %w", err)
	}
	m.mu.Lock()
	last := max(m.rev, rev)
	var entries []Entry
	for _, e := range m.data {
		if e.Revision > rev {
			e.Value = append([]byte(nil), e.Value...)
			entries = append(entries, e)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(entries, func(a, b Entry) int { return cmp.Compare(a.Revision, b.Revision) })
	for _, e := range entries {
		if !fn(e) {
			return e.Revision, nil
		}
	}
	return last, nil
}

// List implements Store.
func (m *Memory) List(ctx context.Context, fn func(Entry) bool) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kv: %w", err)
	}
	m.mu.Lock()
	entries := make([]Entry, 0, len(m.data))
	for _, e := range m.data {
		e.Value = append([]byte(nil), e.Value...)
		entries = append(entries, e)
	}
	m.mu.Unlock()
	for _, e := range entries {
		if !fn(e) {
			return nil
		}
	}
	return nil
}
