package directory

import (
	"context"
	"errors"
	"sync"
	"time"
)

// snapshotTTL is how long GateCached uses what it read of the directory: a
// change made through another replica applies to the jobs this replica
// admits within that time, one made through this replica at once. A pool's
// pause is honoured within the same second (pools.PausedCached).
const snapshotTTL = time.Second

// maxCachedPools bounds the pools whose deployment is remembered; past it,
// the entries gone stale are dropped.
const maxCachedPools = 1024

// snapshotCache keeps what GateCached read last: each pool's deployment
// (or that it has none) and, for the rules, the whole directory.
type snapshotCache struct {
	// refresh is held while the bucket is read: one read at a time, the
	// others wait for it and share it.
	refresh sync.Mutex

	mu     sync.Mutex
	pools  map[string]cachedDeployment
	snap   *Snapshot
	snapAt time.Time
	// gen counts this replica's writes: a read that began before a write
	// is not kept once it ends.
	gen uint64
}

type cachedDeployment struct {
	d  *Deployment // nil: the pool has no deployment
	at time.Time
}

// forget drops what was read, after a write through this replica.
func (c *snapshotCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.pools)
	c.snap = nil
	c.gen++
}

// through returns what lookup finds fresh in the cache (called under its
// lock), or reads it with read, one read at a time, and keeps it with keep
// (under the lock) unless this replica wrote the directory meanwhile.
func through[T any](c *snapshotCache, lookup func(now time.Time) (T, bool), read func() (T, error), keep func(v T, at time.Time)) (T, error) {
	c.mu.Lock()
	v, ok := lookup(time.Now())
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	c.refresh.Lock()
	defer c.refresh.Unlock()
	started := time.Now()
	c.mu.Lock()
	v, ok = lookup(started)
	gen := c.gen
	c.mu.Unlock()
	if ok {
		return v, nil // read by the caller this one waited for
	}
	v, err := read()
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen == gen {
		keep(v, started)
	}
	return v, nil
}

// cachedDeployment returns pool's deployment (nil when it has none) as read
// within snapshotTTL.
func (s *Store) cachedDeployment(ctx context.Context, pool string) (*Deployment, error) {
	c := &s.cache
	return through(c,
		func(now time.Time) (*Deployment, bool) {
			e, ok := c.pools[pool]
			return e.d, ok && now.Sub(e.at) < snapshotTTL
		},
		func() (*Deployment, error) {
			d, err := s.GetDeployment(ctx, pool)
			if errors.Is(err, ErrNotFound) {
				return nil, nil
			}
			return d, err
		},
		func(d *Deployment, at time.Time) {
			if c.pools == nil {
				c.pools = map[string]cachedDeployment{}
			}
			if len(c.pools) >= maxCachedPools {
				for p, e := range c.pools {
					if at.Sub(e.at) >= snapshotTTL {
						delete(c.pools, p)
					}
				}
			}
			c.pools[pool] = cachedDeployment{d: d, at: at}
		})
}

// cachedSnapshot returns the directory as read within snapshotTTL. The
// snapshot is shared: callers only read it.
func (s *Store) cachedSnapshot(ctx context.Context) (*Snapshot, error) {
	c := &s.cache
	return through(c,
		func(now time.Time) (*Snapshot, bool) {
			return c.snap, c.snap != nil && now.Sub(c.snapAt) < snapshotTTL
		},
		func() (*Snapshot, error) { return s.Snapshot(ctx) },
		func(snap *Snapshot, at time.Time) { c.snap, c.snapAt = snap, at })
}

// GateCached is Gate on the directory as this replica read it within the
// last second (snapshotTTL), so that admitting a job costs no read of the
// bucket: a deployment registered, changed or removed through another
// replica applies within that second, one through this replica at once.
// Explanations and the re-check of gated jobs read the bucket itself.
func (s *Store) GateCached(ctx context.Context, pool, user, project string) (*Check, error) {
	// A pool name is checked by the read that misses: only valid ones
	// are cached.
	d, err := s.cachedDeployment(ctx, pool)
	if err != nil {
		return nil, err
	}
	return gate(d, user, project, func() (*Snapshot, error) { return s.cachedSnapshot(ctx) })
}
