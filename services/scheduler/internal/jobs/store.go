package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/outposthq/outpost/libs/kv"
)

// mutateAttempts bounds the compare-and-set retries of one update.
const mutateAttempts = 20

// recentJobs is how many records a Store remembers its last write of. A
// job's statuses arrive shortly after its record is created, on the same
// replica unless several share the work; remembering the recent ones lets
// their updates skip the read before the compare-and-set and the decode.
const recentJobs = 4096

// recordCodec is how the store keeps records: JSON, and Clone for the
// copies kv.Cache hands out.
var recordCodec = kv.Codec[*Record]{
	Encode: (*Record).Marshal,
	Decode: Unmarshal,
	Clone:  (*Record).Clone,
}

// Store keeps the job records of one tenant in a KV bucket, keyed by id.
type Store struct {
	kv     kv.Store
	recent *kv.Cache[*Record]
}

// NewStore returns a Store over the tenant's bucket.
func NewStore(s kv.Store) *Store {
	return &Store{kv: s, recent: kv.NewCache(recentJobs, recordCodec)}
}

// Get returns the record of id, or ErrNotFound.
func (s *Store) Get(ctx context.Context, id string) (*Record, error) {
	r, err := s.recent.Get(ctx, s.kv, id)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil && !errors.Is(err, ErrCorrupt) {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return r, err
}

// Create stores a new record, or returns ErrExists.
func (s *Store) Create(ctx context.Context, r *Record) error {
	err := s.recent.Create(ctx, s.kv, r.ID, r)
	if errors.Is(err, kv.ErrExists) {
		return fmt.Errorf("%w: %s", ErrExists, r.ID)
	}
	if err != nil {
		return fmt.Errorf("create job %s: %w", r.ID, err)
	}
	return nil
}

// Update reads the record of id, lets fn change it and writes it back with
// compare-and-set, calling fn again on a conflict. fn returns false to leave
// the record as it is (nothing is written). Update returns the record as
// stored afterwards and whether it wrote.
func (s *Store) Update(ctx context.Context, id string, fn func(*Record) (bool, error)) (*Record, bool, error) {
	r, changed, err := s.recent.Mutate(ctx, s.kv, id, mutateAttempts, fn)
	if errors.Is(err, kv.ErrNotFound) {
		return nil, false, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return nil, false, fmt.Errorf("update job %s: %w", id, err)
	}
	return r, changed, nil
}

// Delete removes the record of id, or returns ErrNotFound.
func (s *Store) Delete(ctx context.Context, id string) error {
	err := s.kv.Delete(ctx, id, 0)
	if errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	return nil
}

// List calls fn for every record until it returns false. Records that do
// not decode are skipped.
func (s *Store) List(ctx context.Context, fn func(*Record) bool) error {
	err := s.kv.List(ctx, func(e kv.Entry) bool {
		r, err := s.recent.Decode(e)
		if err != nil {
			return true
		}
		return fn(r)
	})
	if err != nil {
		return fmt.Errorf("list jobs: %w", err)
	}
	return nil
}

// ListFrom is List, and returns the highest revision listed: Changes from
// it reads what was written after what the listing saw.
func (s *Store) ListFrom(ctx context.Context, fn func(*Record) bool) (uint64, error) {
	var rev uint64
	err := s.kv.List(ctx, func(e kv.Entry) bool {
		rev = max(rev, e.Revision)
		r, err := s.recent.Decode(e)
		if err != nil {
			return true
		}
		return fn(r)
	})
	if err != nil {
		return 0, fmt.Errorf("list jobs: %w", err)
	}
	return rev, nil
}

// Changes calls fn with the id and record of each job written after
// revision rev, in order, until fn returns false, and returns the revision
// read up to (kv.Store.Changes): a job written several times may come
// several times, the last one with its current record; a record deleted
// at a revision comes as nil. Records that do not decode are skipped.
func (s *Store) Changes(ctx context.Context, rev uint64, fn func(id string, r *Record) bool) (uint64, error) {
	last, err := s.kv.Changes(ctx, rev, func(e kv.Entry) bool {
		if e.Value == nil {
			return fn(e.Key, nil)
		}
		r, err := s.recent.Decode(e)
		if err != nil {
			return true
		}
		return fn(e.Key, r)
	})
	if err != nil {
		return last, fmt.Errorf("jobs changed since %d: %w", rev, err)
	}
	return last, nil
}
