// Package pools keeps which executor pools of a tenant are paused, in a KV
// bucket shared by every scheduler replica.
package pools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/outposthq/outpost/libs/kv"
)

// State is the stored state of one pool.
type State struct {
	Pool      string     `json:"pool"`
	Paused    bool       `json:"paused"`
	PausedAt  *time.Time `json:"paused_at,omitempty"`
	UpdatedAt time.Time  `json:"updated_at"`
}

// Store holds the pool states of one tenant, keyed by pool.
type Store struct {
	kv kv.Store
}

// NewStore returns a Store over the tenant's pools bucket.
func NewStore(s kv.Store) *Store { return &Store{kv: s} }

// Get returns the state of pool; a pool never paused is not paused.
func (s *Store) Get(ctx context.Context, pool string) (State, error) {
	e, err := s.kv.Get(ctx, pool)
	if errors.Is(err, kv.ErrNotFound) {
		return State{Pool: pool}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("get pool %s: %w", pool, err)
	}
	var st State
	if err := json.Unmarshal(e.Value, &st); err != nil {
		return State{}, fmt.Errorf("decode pool %s: %w", pool, err)
	}
	return st, nil
}

// Paused reports whether pool is paused.
func (s *Store) Paused(ctx context.Context, pool string) (bool, error) {
	st, err := s.Get(ctx, pool)
	return st.Paused, err
}

// Set pauses or resumes pool and returns its new state.
func (s *Store) Set(ctx context.Context, pool string, paused bool, now time.Time) (State, error) {
	for range 20 {
		e, err := s.kv.Get(ctx, pool)
		exists := err == nil
		if err != nil && !errors.Is(err, kv.ErrNotFound) {
			return State{}, fmt.Errorf("get pool %s: %w", pool, err)
		}
		st := State{Pool: pool}
		if exists {
			if err := json.Unmarshal(e.Value, &st); err != nil {
				return State{}, fmt.Errorf("decode pool %s: %w", pool, err)
			}
		}
		if exists && st.Paused == paused {
			return st, nil
		}
		st.Paused = paused
		st.UpdatedAt = now
		st.PausedAt = nil
		if paused {
			st.PausedAt = &now
		}
		b, err := json.Marshal(st)
		if err != nil {
			return State{}, fmt.Errorf("encode pool %s: %w", pool, err)
		}
		if exists {
			_, err = s.kv.Update(ctx, pool, b, e.Revision)
		} else {
			_, err = s.kv.Create(ctx, pool, b)
		}
		if errors.Is(err, kv.ErrConflict) || errors.Is(err, kv.ErrExists) {
			continue
		}
		if err != nil {
			return State{}, fmt.Errorf("set pool %s: %w", pool, err)
		}
		return st, nil
	}
	return State{}, fmt.Errorf("set pool %s: %w", pool, kv.ErrConflict)
}

// List returns the state of every pool ever paused.
func (s *Store) List(ctx context.Context) ([]State, error) {
	var out []State
	err := s.kv.List(ctx, func(e kv.Entry) bool {
		var st State
		if json.Unmarshal(e.Value, &st) == nil {
			out = append(out, st)
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("list pools: %w", err)
	}
	return out, nil
}
