package kv

import (
	"context"
	"sync"
)

// Memory is an in-process Store for unit tests.
type Memory struct {
	mu   sync.Mutex
	rev  uint64
	data map[string]Entry
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{data: map[string]Entry{}} }

// Get implements Store.
func (m *Memory) Get(_ context.Context, key string) (Entry, error) {
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
func (m *Memory) Create(_ context.Context, key string, value []byte) (uint64, error) {
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
func (m *Memory) Update(_ context.Context, key string, value []byte, rev uint64) (uint64, error) {
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
func (m *Memory) Delete(_ context.Context, key string, rev uint64) error {
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

// List implements Store.
func (m *Memory) List(_ context.Context, fn func(Entry) bool) error {
	m.mu.Lock()
	entries := make([]Entry, 0, len(m.data))
	for _, e := range m.data {
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
