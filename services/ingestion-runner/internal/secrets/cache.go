package secrets

import (
	"context"
	"sync"
	"time"
)

// DefaultCacheTTL is how long a remote provider's answer is reused.
const DefaultCacheTTL = 30 * time.Second

// Cached remembers a provider's answers (found or not) for TTL, so jobs do
// not call a remote store for every reference, while a rotated secret is
// picked up within TTL without a restart. Errors are not remembered: the
// next lookup asks again.
type Cached struct {
	Provider Provider
	TTL      time.Duration
	// Now is time.Now when nil; tests move it to expire entries.
	Now func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	value   string
	ok      bool
	expires time.Time
}

// NewCached caches p's answers for ttl; p itself when ttl is not positive.
func NewCached(p Provider, ttl time.Duration) Provider {
	if ttl <= 0 {
		return p
	}
	return &Cached{Provider: p, TTL: ttl}
}

// Name implements Provider.
func (c *Cached) Name() string { return c.Provider.Name() }

func (c *Cached) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Lookup implements Provider.
func (c *Cached) Lookup(ctx context.Context, name string) (string, bool, error) {
	now := c.now()
	c.mu.Lock()
	e, hit := c.entries[name]
	c.mu.Unlock()
	if hit && now.Before(e.expires) {
		return e.value, e.ok, nil
	}
	v, ok, err := c.Provider.Lookup(ctx, name)
	if err != nil {
		return "", false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]cacheEntry{}
	}
	// Drop what expired, so names no job asks for any more do not pile up.
	for k, old := range c.entries {
		if !now.Before(old.expires) {
			delete(c.entries, k)
		}
	}
	c.entries[name] = cacheEntry{value: v, ok: ok, expires: now.Add(c.TTL)}
	return v, ok, nil
}
