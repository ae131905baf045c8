package directory

import (
	"context"
	"sync"
	"time"
)

// snapshotTTL is how long GateCached uses a snapshot of the directory it
// read: a change made through another replica applies to the jobs this
// replica admits within that time, one made through this replica at once.
// A pool's pause is honoured within the same second (pools.PausedCached).
const snapshotTTL = time.Second

// snapshotCache keeps the directory as this replica read it last.
type snapshotCache struct {
	// refresh is held while the bucket is read: one read at a time, the
	// others wait for it and share it.
	refresh sync.Mutex

	mu   sync.Mutex
	snap *Snapshot
	at   time.Time
	// gen counts this replica's writes: a read that began before a write
	// is not kept once it ends.
	gen uint64
}

func (c *snapshotCache) fresh(now time.Time) (*Snapshot, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.snap != nil && now.Sub(c.at) < snapshotTTL {
		return c.snap, c.gen
	}
	return nil, c.gen
}

// forget drops the snapshot after a write through this replica.
func (c *snapshotCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.snap = nil
	c.gen++
}

// cachedSnapshot returns the directory as read within snapshotTTL, reading
// it again when older. The snapshot is shared: callers only read it.
func (s *Store) cachedSnapshot(ctx context.Context) (*Snapshot, error) {
	c := &s.cache
	if snap, _ := c.fresh(time.Now()); snap != nil {
		return snap, nil
	}
	c.refresh.Lock()
	defer c.refresh.Unlock()
	started := time.Now()
	snap, gen := c.fresh(started)
	if snap != nil {
		return snap, nil // read by the caller we waited for
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		c.snap, c.at = snap, started
	}
	return snap, nil
}

// GateCached is Gate on the directory as this replica read it within the
// last second (snapshotTTL), so that admitting a job costs no read of the
// bucket: a deployment registered, changed or removed through another
// replica applies within that second, one through this replica at once.
// Explanations and the re-check of gated jobs read the bucket itself.
func (s *Store) GateCached(ctx context.Context, pool, user, project string) (*Check, error) {
	if err := CheckName(pool, "pool"); err != nil {
		return nil, err
	}
	snap, err := s.cachedSnapshot(ctx)
	if err != nil {
		return nil, err
	}
	d := snap.deployment(pool)
	if d == nil {
		return nil, nil
	}
	c := snap.Evaluate(d, user, project)
	return &c, nil
}
