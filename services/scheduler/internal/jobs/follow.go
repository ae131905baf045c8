package jobs

import (
	"context"
	"time"
)

// Follower keeps what a caller needs of the records of a Store, as of its
// last read: a listing of the whole store (List), then the writes since
// (Update), read from the highest revision seen, so that a read costs what
// was written since the last one rather than the store's whole history.
// What a read has not seen (written while it ran) comes with the next
// one; a record purged without trace stays until the next listing.
//
// keep decides, for each record read, whether it is kept and what of it:
// the record itself (Keep), or a projection of the few fields a caller
// reads, which holds a busy tenant's recent jobs in far less memory. Not
// safe for concurrent use.
type Follower[T any] struct {
	// Records are what is kept of the records, by id.
	Records map[string]T
	// ListedAt is when the last listing began; zero before the first.
	ListedAt time.Time
	rev      uint64
}

// Keep is a Follower's keep that keeps the records sel selects, whole.
func Keep(sel func(*Record) bool) func(*Record) (*Record, bool) {
	return func(r *Record) (*Record, bool) { return r, sel(r) }
}

// List lists the whole store at now and keeps what keep selects. each,
// when not nil, sees every record first; false stops the listing. A
// listing cut short (each said stop, or ctx ended) keeps nothing of it.
func (f *Follower[T]) List(ctx context.Context, s *Store, now time.Time, keep func(*Record) (T, bool), each func(*Record) bool) error {
	records := map[string]T{}
	stopped := false
	rev, err := s.ListFrom(ctx, func(r *Record) bool {
		if each != nil && !each(r) {
			stopped = true
			return false
		}
		if v, ok := keep(r); ok {
			records[r.ID] = v
		}
		return true
	})
	if err == nil && stopped {
		err = ctx.Err()
	}
	if err != nil || stopped {
		return err
	}
	f.Records, f.rev, f.ListedAt = records, rev, now
	return nil
}

// Update reads the records written since the last read and keeps what
// keep selects, dropping the others. each, when not nil, is called before
// each record; false stops the read, which the next Update goes on from.
func (f *Follower[T]) Update(ctx context.Context, s *Store, keep func(*Record) (T, bool), each func() bool) error {
	if f.Records == nil {
		f.Records = map[string]T{}
	}
	rev, err := s.Changes(ctx, f.rev, func(id string, r *Record) bool {
		if each != nil && !each() {
			return false
		}
		if r == nil {
			delete(f.Records, id)
			return true
		}
		if v, ok := keep(r); ok {
			f.Records[id] = v
		} else {
			delete(f.Records, id)
		}
		return true
	})
	if err != nil {
		return err
	}
	f.rev = rev
	return nil
}
