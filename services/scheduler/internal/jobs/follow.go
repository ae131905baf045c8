package jobs

import (
	"context"
	"time"
)

// Follower keeps the records of a Store that a caller selects, as of its
// last read: a listing of the whole store (List), then the writes since
// (Update), read from the highest revision seen, so that a read costs what
// was written since the last one rather than the store's whole history.
// What a read has not seen (written while it ran) comes with the next
// one; a record purged
// without trace stays until the next listing. Not safe for concurrent
// use.
type Follower struct {
	// Records are the records kept, by id.
	Records map[string]*Record
	// ListedAt is when the last listing began; zero before the first.
	ListedAt time.Time
	rev      uint64
}

// List lists the whole store at now and keeps the records keep selects.
// each, when not nil, sees every record first; false stops the listing.
// A listing cut short (each said stop, or ctx ended) keeps nothing of it.
func (f *Follower) List(ctx context.Context, s *Store, now time.Time, keep, each func(*Record) bool) error {
	records := map[string]*Record{}
	stopped := false
	rev, err := s.ListFrom(ctx, func(r *Record) bool {
		if each != nil && !each(r) {
			stopped = true
			return false
		}
		if keep(r) {
			records[r.ID] = r
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

// Update reads the records written since the last read and keeps those
// keep selects, dropping the others. each, when not nil, is called before
// each record; false stops the read, which the next Update goes on from.
func (f *Follower) Update(ctx context.Context, s *Store, keep func(*Record) bool, each func() bool) error {
	if f.Records == nil {
		f.Records = map[string]*Record{}
	}
	rev, err := s.Changes(ctx, f.rev, func(id string, r *Record) bool {
		if each != nil && !each() {
			return false
		}
		if r != nil && keep(r) {
			f.Records[id] = r
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
