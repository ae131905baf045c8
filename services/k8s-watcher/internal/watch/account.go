// Package watch streams one account's cluster to its compacted watch
// subjects: dynamic informers (scrubbed before caching) feed a
// rate-limited workqueue of object keys, and workers publish each key's
// last state, or its tombstone, retrying until the broker takes it. A
// burst of changes to one object publishes its last state once, and a
// broker outage loses nothing: the key stays queued.
package watch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/queue"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/cluster"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/metrics"
)

// ErrNotSynced is returned by Start when the informer caches or the first
// publication of the inventory do not finish within the sync timeout.
var ErrNotSynced = errors.New("watch: not synced in time")

// publishTimeout bounds one publish attempt; a failed one is retried.
const publishTimeout = 10 * time.Second

// Retry delays of a key whose publish failed: doubling from the first to
// the last, so that the backlog drains soon after a broker outage ends.
const (
	retryFirst = 50 * time.Millisecond
	retryLast  = 30 * time.Second
)

// Broker is the part of the queue a watch uses.
type Broker interface {
	queue.Publisher
	queue.Reader
}

// Options describe one account's watch.
type Options struct {
	Tenant     string
	Account    string
	Generation uint64
	Subjects   queue.Subjects
	Broker     Broker
	// Workers publish changes in parallel (distinct keys only).
	Workers int
	// SyncTimeout bounds Start's wait for the caches and for the first
	// publication of the inventory.
	SyncTimeout time.Duration
	// ChecksumInterval is how often each kind's checksum is published.
	ChecksumInterval time.Duration
	Log              *slog.Logger
	Metrics          *metrics.Metrics
}

// objKey names one object of the account; kind is its kind token.
type objKey struct {
	kind, namespace, name string
}

func (k objKey) storeKey() string {
	if k.namespace == "" {
		return k.name
	}
	return k.namespace + "/" + k.name
}

// kindWatch is one kind's informers, by namespace ("" for all).
type kindWatch struct {
	kind      cluster.Kind
	informers map[string]cache.SharedIndexInformer
}

func (w *kindWatch) informer(namespace string) cache.SharedIndexInformer {
	if inf, ok := w.informers[""]; ok {
		return inf
	}
	return w.informers[namespace]
}

// Account is a running watch of one account.
type Account struct {
	opts  Options
	kinds map[string]*kindWatch
	queue workqueue.TypedRateLimitingInterface[objKey]

	mu sync.Mutex
	// published is the resourceVersion last published for each live
	// object: a relist that reports the same version publishes nothing.
	published map[objKey]string
	// gone holds the tombstone to publish for objects that are not in
	// the caches any more (deleted, or only in the stream).
	gone map[objKey]*watchv1.ObjectDelta

	inflight atomic.Int64
	ctx      context.Context
	cancel   context.CancelFunc
	stopCh   chan struct{}
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Start starts the informers of kinds, waits for their caches, brings the
// stream in line with them (publishing what changed, tombstoning what the
// cluster no longer has) and returns once that is published. The watch
// runs until Stop.
func Start(ctx context.Context, dyn dynamic.Interface, kinds []cluster.Kind, opts Options) (*Account, error) {
	a := &Account{
		opts:      opts,
		kinds:     make(map[string]*kindWatch, len(kinds)),
		queue:     workqueue.NewTypedRateLimitingQueue(workqueue.NewTypedItemExponentialFailureRateLimiter[objKey](retryFirst, retryLast)),
		published: map[objKey]string{},
		gone:      map[objKey]*watchv1.ObjectDelta{},
		stopCh:    make(chan struct{}),
	}
	a.ctx, a.cancel = context.WithCancel(context.WithoutCancel(ctx))
	factories := map[string]dynamicinformer.DynamicSharedInformerFactory{}
	var synced []cache.InformerSynced
	for _, k := range kinds {
		w := &kindWatch{kind: k, informers: map[string]cache.SharedIndexInformer{}}
		for _, ns := range k.Namespaces {
			f, ok := factories[ns]
			if !ok {
				f = dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, 0, ns, nil)
				factories[ns] = f
			}
			inf := f.ForResource(k.GVR).Informer()
			if err := inf.SetTransform(Scrubber(k.GVR)); err != nil {
				a.cancel()
				return nil, fmt.Errorf("watch %s: set transform: %w", k.Token, err)
			}
			if _, err := inf.AddEventHandler(a.handler(k)); err != nil {
				a.cancel()
				return nil, fmt.Errorf("watch %s: add handler: %w", k.Token, err)
			}
			w.informers[ns] = inf
			synced = append(synced, inf.HasSynced)
		}
		a.kinds[k.Token] = w
	}
	// The stream is read before the informers start, so that objects
	// whose stored version is current are not published again, and the
	// workers publish while the informers are still listing: the first
	// sync costs about the longer of the list and the publication, not
	// their sum.
	stored, err := a.readStored(ctx, "")
	if err != nil {
		a.cancel()
		return nil, err
	}
	a.mu.Lock()
	for key, m := range stored {
		a.published[key] = m.Header[inventory.HeaderResourceVersion]
	}
	a.mu.Unlock()
	for range max(1, a.opts.Workers) {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			for a.processNext() {
			}
		}()
	}
	for _, f := range factories {
		f.Start(a.stopCh)
	}
	if err := a.firstSync(ctx, synced, stored); err != nil {
		a.Stop()
		return nil, err
	}
	// The first list is the largest allocation a watch makes: every
	// object decoded at once, then only its compact form kept. Hand the
	// list's pages back to the OS now rather than over the next minutes,
	// so the watcher's resident memory is what it holds.
	debug.FreeOSMemory()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.checksumLoop()
	}()
	return a, nil
}

func (a *Account) firstSync(ctx context.Context, synced []cache.InformerSynced, stored map[objKey]queue.StreamMessage) error {
	sctx, cancel := context.WithTimeout(ctx, a.opts.SyncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(sctx.Done(), synced...) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: informer caches of %d kinds not synced within %s", ErrNotSynced, len(a.kinds), a.opts.SyncTimeout)
	}
	a.tombstoneMissing(stored)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !a.idle() {
		select {
		case <-sctx.Done():
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%w: %d objects still unpublished after %s (is the broker reachable?)", ErrNotSynced, a.queue.Len(), a.opts.SyncTimeout)
		case <-tick.C:
		}
	}
	return nil
}

// idle reports whether no change is waiting or being published.
func (a *Account) idle() bool { return a.queue.Len() == 0 && a.inflight.Load() == 0 }

// Stop stops the informers and workers. What was not published yet stays
// unpublished: the next holder's resync publishes it.
func (a *Account) Stop() {
	a.stopOnce.Do(func() {
		close(a.stopCh)
		a.cancel()
		a.queue.ShutDown()
		a.wg.Wait()
	})
}

func (a *Account) handler(k cluster.Kind) cache.ResourceEventHandler {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.enqueue(k, obj) },
		UpdateFunc: func(_, obj any) { a.enqueue(k, obj) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			c, ok := obj.(*cached)
			if !ok {
				return
			}
			key := objKey{kind: k.Token, namespace: c.meta.Namespace, name: c.meta.Name}
			d := a.delta(k, c, watchv1.ObjectDelta_TYPE_DELETED)
			a.mu.Lock()
			a.gone[key] = d
			a.mu.Unlock()
			a.queue.Add(key)
		},
	}
}

func (a *Account) enqueue(k cluster.Kind, obj any) {
	c, ok := obj.(*cached)
	if !ok {
		return
	}
	a.queue.Add(objKey{kind: k.Token, namespace: c.meta.Namespace, name: c.meta.Name})
}

func (a *Account) processNext() bool {
	key, shutdown := a.queue.Get()
	if shutdown {
		return false
	}
	a.inflight.Add(1)
	defer a.inflight.Add(-1)
	defer a.queue.Done(key)
	if err := a.publish(key); err != nil {
		if a.ctx.Err() != nil {
			return true
		}
		a.opts.Metrics.PublishErrors.Inc()
		a.opts.Log.Warn("publish failed, retrying", "kind", key.kind, "namespace", key.namespace, "name", key.name, "error", err)
		a.queue.AddRateLimited(key)
		return true
	}
	a.queue.Forget(key)
	return true
}

// lookup returns the cached object of key, or nil.
func (a *Account) lookup(key objKey) (*cached, *kindWatch) {
	w := a.kinds[key.kind]
	if w == nil {
		return nil, nil
	}
	inf := w.informer(key.namespace)
	if inf == nil {
		return nil, w
	}
	obj, ok, err := inf.GetStore().GetByKey(key.storeKey())
	if err != nil || !ok {
		return nil, w
	}
	c, _ := obj.(*cached)
	return c, w
}

// publish sends key's current state: the cached object, or its tombstone.
func (a *Account) publish(key objKey) error {
	c, w := a.lookup(key)
	a.mu.Lock()
	last, seen := a.published[key]
	tomb := a.gone[key]
	a.mu.Unlock()

	var d *watchv1.ObjectDelta
	switch {
	case c != nil:
		if seen && last == c.meta.ResourceVersion {
			return nil
		}
		typ := watchv1.ObjectDelta_TYPE_ADDED
		if seen {
			typ = watchv1.ObjectDelta_TYPE_UPDATED
		}
		d = a.delta(w.kind, c, typ)
	case tomb != nil:
		d = tomb
	default:
		return nil
	}
	if err := a.send(key, d); err != nil {
		return err
	}
	a.mu.Lock()
	if c != nil {
		a.published[key] = d.GetResourceVersion()
	} else {
		delete(a.published, key)
	}
	// A tombstone replaced since it was read (deleted again) stays.
	if a.gone[key] == tomb {
		delete(a.gone, key)
	}
	a.mu.Unlock()
	return nil
}

func (a *Account) send(key objKey, d *watchv1.ObjectDelta) error {
	subject := inventory.ObjectSubject(a.opts.Subjects, a.opts.Tenant, a.opts.Account, key.kind, key.namespace, key.name)
	d.Envelope = events.NewEnvelope(a.opts.Tenant, 0, "", "")
	msg, err := events.Encode(subject, d, "")
	if err != nil {
		return err
	}
	msg.Header[inventory.HeaderResourceVersion] = d.GetResourceVersion()
	if d.GetType() == watchv1.ObjectDelta_TYPE_DELETED {
		msg.Header[inventory.HeaderDeleted] = "true"
	}
	ctx, cancel := context.WithTimeout(a.ctx, publishTimeout)
	defer cancel()
	if err := a.opts.Broker.Publish(ctx, msg); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	a.opts.Metrics.DeltasPublished.WithLabelValues(deltaLabel(d.GetType())).Inc()
	return nil
}

func deltaLabel(t watchv1.ObjectDelta_Type) string {
	switch t {
	case watchv1.ObjectDelta_TYPE_ADDED:
		return "added"
	case watchv1.ObjectDelta_TYPE_DELETED:
		return "deleted"
	}
	return "updated"
}

// delta builds the ObjectDelta of a (scrubbed) cached object.
func (a *Account) delta(k cluster.Kind, c *cached, typ watchv1.ObjectDelta_Type) *watchv1.ObjectDelta {
	return &watchv1.ObjectDelta{
		Account:         a.opts.Account,
		Type:            typ,
		Group:           k.GVR.Group,
		Version:         k.GVR.Version,
		Kind:            k.Kind,
		Resource:        k.GVR.Resource,
		Namespace:       c.meta.Namespace,
		Name:            c.meta.Name,
		Uid:             string(c.meta.UID),
		ResourceVersion: c.meta.ResourceVersion,
		Object:          c.raw,
		Generation:      a.opts.Generation,
	}
}
