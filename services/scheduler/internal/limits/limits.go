// Package limits keeps, per tenant, the jobs that hold one of the tenant's
// running-job slots and the jobs that wait for one, in the tenant's limits
// bucket, so that every replica and every restart sees the same count.
//
// A job takes a slot when it is dispatched and gives it back when it ends
// (any terminal state): a retry or a re-dispatch keeps its slot. The slots
// are one key ("running", the ids of the jobs that hold one) written with
// compare-and-set, so two replicas cannot both take the last slot. A job
// refused a slot is written under "wait.<created>.<id>": the keys sort in
// submission order, oldest first.
package limits

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/kv"
)

// Bucket is the prefix of the tenants' limits buckets ("limits_<tenant>").
const Bucket = "limits_"

const (
	keyRunning = "running"
	waitPrefix = "wait."
)

// ErrCorrupt is returned when the slots key does not decode.
var ErrCorrupt = errors.New("corrupt running-job slots")

// Waiter is a job waiting for a slot.
type Waiter struct {
	Job string
	// Key is the job's wait key, to give to Unwait.
	Key string
}

// Store is one tenant's slots and waiters. It is safe for concurrent use.
type Store struct {
	kv kv.Store
}

// NewStore returns the store over a tenant's limits bucket.
func NewStore(s kv.Store) *Store { return &Store{kv: s} }

type slots struct {
	Jobs []string `json:"jobs"`
}

// Take gives job a slot if it holds one already or fewer than limit jobs
// hold one; inUse is the number of slots held afterwards (or when
// refused).
func (s *Store) Take(ctx context.Context, job string, limit int) (ok bool, inUse int, err error) {
	err = s.mutate(ctx, func(cur []byte) ([]byte, bool, error) {
		sl, err := decode(cur)
		if err != nil {
			return nil, false, err
		}
		inUse = len(sl.Jobs)
		if slices.Contains(sl.Jobs, job) {
			ok = true
			return nil, false, nil
		}
		if len(sl.Jobs) >= limit {
			ok = false
			return nil, false, nil
		}
		ok = true
		sl.Jobs = append(sl.Jobs, job)
		inUse = len(sl.Jobs)
		b, err := json.Marshal(sl)
		return b, true, err
	})
	if err != nil {
		return false, 0, fmt.Errorf("take a running-job slot for %s: %w", job, err)
	}
	return ok, inUse, nil
}

// Release gives back the slots of jobs (those that hold none are
// ignored).
func (s *Store) Release(ctx context.Context, jobs ...string) error {
	if len(jobs) == 0 {
		return nil
	}
	err := s.mutate(ctx, func(cur []byte) ([]byte, bool, error) {
		sl, err := decode(cur)
		if err != nil {
			return nil, false, err
		}
		n := len(sl.Jobs)
		sl.Jobs = slices.DeleteFunc(sl.Jobs, func(j string) bool { return slices.Contains(jobs, j) })
		if len(sl.Jobs) == n {
			return nil, false, nil
		}
		b, err := json.Marshal(sl)
		return b, true, err
	})
	if err != nil {
		return fmt.Errorf("release running-job slots: %w", err)
	}
	return nil
}

// Running returns the jobs that hold a slot.
func (s *Store) Running(ctx context.Context) ([]string, error) {
	e, err := s.kv.Get(ctx, keyRunning)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read running-job slots: %w", err)
	}
	sl, err := decode(e.Value)
	if err != nil {
		return nil, err
	}
	return sl.Jobs, nil
}

// Wait records that job, created at created, waits for a slot. Recording
// it again is not an error.
func (s *Store) Wait(ctx context.Context, job string, created time.Time) error {
	key := WaitKey(job, created)
	if _, err := s.kv.Create(ctx, key, []byte(job)); err != nil && !errors.Is(err, kv.ErrExists) {
		return fmt.Errorf("record job %s waiting for a slot: %w", job, err)
	}
	return nil
}

// WaitKey is the key of job's wait entry: its creation time first, so
// that the keys sort oldest first.
func WaitKey(job string, created time.Time) string {
	return fmt.Sprintf("%s%020d.%s", waitPrefix, created.UnixNano(), job)
}

// Unwait drops a wait entry (one that is gone already is not an error).
func (s *Store) Unwait(ctx context.Context, key string) error {
	if err := s.kv.Delete(ctx, key, 0); err != nil && !errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("drop wait entry %s: %w", key, err)
	}
	return nil
}

// Waiting returns the jobs waiting for a slot, oldest first.
func (s *Store) Waiting(ctx context.Context) ([]Waiter, error) {
	var out []Waiter
	err := s.kv.List(ctx, func(e kv.Entry) bool {
		if rest, ok := strings.CutPrefix(e.Key, waitPrefix); ok {
			if _, job, ok := strings.Cut(rest, "."); ok {
				out = append(out, Waiter{Job: job, Key: e.Key})
			}
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs waiting for a slot: %w", err)
	}
	slices.SortFunc(out, func(a, b Waiter) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

// mutate applies fn to the slots key with compare-and-set (creating the
// key on first use), retrying on conflict a bounded number of times.
func (s *Store) mutate(ctx context.Context, fn func(cur []byte) ([]byte, bool, error)) error {
	var err error
	for range 20 {
		e, gerr := s.kv.Get(ctx, keyRunning)
		if gerr != nil && !errors.Is(gerr, kv.ErrNotFound) {
			return gerr
		}
		next, ok, ferr := fn(e.Value)
		if ferr != nil || !ok {
			return ferr
		}
		if errors.Is(gerr, kv.ErrNotFound) {
			_, err = s.kv.Create(ctx, keyRunning, next)
		} else {
			_, err = s.kv.Update(ctx, keyRunning, next, e.Revision)
		}
		if !errors.Is(err, kv.ErrConflict) && !errors.Is(err, kv.ErrExists) {
			return err
		}
	}
	return err
}

func decode(b []byte) (slots, error) {
	var sl slots
	if len(b) == 0 {
		return sl, nil
	}
	if err := json.Unmarshal(b, &sl); err != nil {
		return slots{}, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return sl, nil
}
