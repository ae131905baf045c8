package tenants

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

type memOpener struct {
	mu      sync.Mutex
	buckets map[string]*kv.Memory
}

func (o *memOpener) OpenStore(_ context.Context, bucket string) (kv.Store, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.buckets[bucket] == nil {
		o.buckets[bucket] = kv.NewMemory()
	}
	return o.buckets[bucket], nil
}

type fakeProvisioner struct {
	mu     sync.Mutex
	limits map[string]queue.TenantLimits
}

func (p *fakeProvisioner) EnsureTenant(_ context.Context, tenant string, l queue.TenantLimits) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.limits[tenant] = l
	return nil
}

func TestRegistry(t *testing.T) {
	opener := &memOpener{buckets: map[string]*kv.Memory{}}
	prov := &fakeProvisioner{limits: map[string]queue.TenantLimits{}}
	var mu sync.Mutex
	started := map[string]int{}
	start := func(_ context.Context, tn *Tenant) (func(context.Context) error, error) {
		mu.Lock()
		defer mu.Unlock()
		started[tn.Name]++
		return func(context.Context) error { return nil }, nil
	}
	newRegistry := func() *Registry {
		return NewRegistry(Options{
			Configured: []string{"default"}, Limits: config.Limits{MaxBytes: 100},
			RefreshInterval: 10 * time.Millisecond, PresenceWindow: time.Second, Logger: slog.New(slog.DiscardHandler),
		}, prov, opener, start)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := newRegistry()
	require.ErrorIs(t, r.Ready(), ErrNotReady)
	_, err := r.Lookup(ctx, "default")
	require.ErrorIs(t, err, ErrNotReady)
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx, time.Second) }()
	require.Eventually(t, func() bool { return r.Ready() == nil }, 5*time.Second, 5*time.Millisecond)

	tn, err := r.Lookup(ctx, "default")
	require.NoError(t, err)
	require.Equal(t, "default", tn.Name)
	require.Equal(t, queue.TenantLimits{MaxBytes: 100}, prov.limits["default"])
	_, err = r.Lookup(ctx, "nobody")
	require.ErrorIs(t, err, ErrUnknown)
	_, err = r.Lookup(ctx, "a.b")
	require.ErrorIs(t, err, ErrInvalidName)

	info, created, err := r.Add(ctx, "acme", &config.Limits{MaxMessages: 5}, time.Now())
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, config.Limits{MaxMessages: 5}, info.Limits)
	_, created, err = r.Add(ctx, "acme", nil, time.Now())
	require.NoError(t, err)
	require.False(t, created)
	_, created, err = r.Add(ctx, "default", nil, time.Now())
	require.NoError(t, err)
	require.False(t, created, "configured tenants exist already")

	// A second replica finds the added tenant in the bucket.
	ctx2, cancel2 := context.WithCancel(ctx)
	r2 := newRegistry()
	done2 := make(chan error, 1)
	go func() { done2 <- r2.Run(ctx2, time.Second) }()
	require.Eventually(t, func() bool { return len(r2.Names()) == 2 }, 5*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{"acme", "default"}, r2.Names())
	cancel2()
	require.NoError(t, <-done2)

	mu.Lock()
	require.Equal(t, map[string]int{"default": 2, "acme": 2}, started, "once per replica")
	mu.Unlock()
	require.Len(t, r.List(), 2)
	require.Len(t, r.Trackers(), 2)
	cancel()
	require.NoError(t, <-done)
	require.ErrorIs(t, r.Ready(), ErrNotReady)
}

func TestSubmissionRate(t *testing.T) {
	tn := &Tenant{Name: "acme"}
	delay, _ := tn.ReserveSubmit()
	require.Zero(t, delay, "no limit: every submission now")

	tn.SetMaxSubmitsPerSecond(2)
	for range 2 { // a burst of one second's worth
		delay, _ = tn.ReserveSubmit()
		require.Zero(t, delay)
	}
	delay, cancel := tn.ReserveSubmit()
	require.Greater(t, delay, time.Duration(0))
	require.LessOrEqual(t, delay, 500*time.Millisecond)
	cancel()
	again, _ := tn.ReserveSubmit()
	require.InDelta(t, delay.Seconds(), again.Seconds(), 0.05, "a cancelled slot is given back")

	tn.SetMaxSubmitsPerSecond(0)
	delay, _ = tn.ReserveSubmit()
	require.Zero(t, delay, "0 lifts the limit")
}
