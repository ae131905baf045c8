// Package pools keeps which executor pools of a tenant are paused, in a KV
// bucket shared by every scheduler replica.
package pools

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
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

// pausedTTL bounds how stale PausedCached may be. Every submitted job asks
// whether its pool is paused, and pauses are rare: reading the bucket once
// a second per pool instead of once per job saves a broker round trip on
// the submit path.
const pausedTTL = time.Second

// Store holds the pool states of one tenant, keyed by pool.
type Store struct {
	kv  kv.Store
	now func() time.Time

	mu     sync.Mutex
	paused map[string]cachedPause
}

type cachedPause struct {
	paused bool
	at     time.Time
}

// NewStore returns a Store over the tenant's pools bucket.
func NewStore(s kv.Store) *Store {
	return &Store{kv: s, now: time.Now, paused: map[string]cachedPause{}}
}

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

// Paused reports whether pool is paused, read from the bucket.
func (s *Store) Paused(ctx context.Context, pool string) (bool, error) {
	st, err := s.Get(ctx, pool)
	if err == nil {
		s.remember(pool, st.Paused)
	}
	return st.Paused, err
}

// PausedCached is Paused as this replica saw it within the last second: a
// pause made through another replica is honoured within a second, one made
// through this replica at once.
func (s *Store) PausedCached(ctx context.Context, pool string) (bool, error) {
	s.mu.Lock()
	c, ok := s.paused[pool]
	s.mu.Unlock()
	if ok && s.now().Sub(c.at) < pausedTTL {
		return c.paused, nil
	}
	return s.Paused(ctx, pool)
}

func (s *Store) remember(pool string, paused bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.paused[pool] = cachedPause{paused: paused, at: s.now()}
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
			s.remember(pool, paused)
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
		s.remember(pool, paused)
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
