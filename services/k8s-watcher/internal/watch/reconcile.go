package watch

import (
	"context"
	"fmt"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

// Resync publishes every cached object of the kind (every kind when
// kindToken is empty) again and tombstones what the stream holds and the
// cluster does not: the answer to a checksum mismatch.
func (a *Account) Resync(ctx context.Context, kindToken string) error {
	return a.reconcile(ctx, kindToken, true)
}

// reconcile reads the account's stream (one kind, or all) and queues a
// tombstone for each live subject the caches do not hold. With force,
// every cached object is queued to be published again; without, an
// object whose stored resourceVersion is current is left as it is.
func (a *Account) reconcile(ctx context.Context, kindToken string, force bool) error {
	stored, err := a.readStored(ctx, kindToken)
	if err != nil {
		return err
	}
	if !force {
		a.mu.Lock()
		for key, m := range stored {
			if _, ok := a.published[key]; !ok {
				a.published[key] = m.Header[inventory.HeaderResourceVersion]
			}
		}
		a.mu.Unlock()
	}
	tombs := a.tombstoneMissing(stored)
	var live []objKey
	if force {
		for token, w := range a.kinds {
			if kindToken != "" && token != kindToken {
				continue
			}
			for _, inf := range w.informers {
				for _, obj := range inf.GetStore().List() {
					if c, ok := obj.(*cached); ok {
						live = append(live, objKey{kind: token, namespace: c.meta.Namespace, name: c.meta.Name})
					}
				}
			}
		}
		a.mu.Lock()
		for _, key := range live {
			delete(a.published, key)
		}
		a.mu.Unlock()
		for _, key := range live {
			a.queue.Add(key)
		}
	}
	a.opts.Log.Info("inventory reconciled", "kind", kindToken, "stored", len(stored), "tombstones", tombs, "republished", len(live))
	return nil
}

// readStored reads the live objects the account's stream holds (one kind,
// or all), by key.
func (a *Account) readStored(ctx context.Context, kindToken string) (map[objKey]queue.StreamMessage, error) {
	filter := inventory.Filter(a.opts.Subjects, a.opts.Tenant, a.opts.Account, kindToken, "", false)
	stored := map[objKey]queue.StreamMessage{}
	err := a.opts.Broker.Read(ctx, filter, queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		k, err := inventory.ParseSubject(m.Subject)
		if err != nil || m.Header[inventory.HeaderDeleted] == "true" {
			return true
		}
		stored[objKey{kind: k.KindToken, namespace: k.Namespace, name: k.Name}] = m
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("read the inventory stream of account %s: %w", a.opts.Account, err)
	}
	return stored, nil
}

// tombstoneMissing queues a tombstone for every stored object the caches
// do not hold and returns how many.
func (a *Account) tombstoneMissing(stored map[objKey]queue.StreamMessage) int {
	n := 0
	for key, m := range stored {
		if c, _ := a.lookup(key); c != nil {
			continue
		}
		d := a.storedTombstone(key, m)
		a.mu.Lock()
		if _, ok := a.gone[key]; !ok {
			a.gone[key] = d
		}
		a.mu.Unlock()
		a.queue.Add(key)
		n++
	}
	return n
}

// storedTombstone turns the last delta stored for key into its tombstone,
// keeping the last known state.
func (a *Account) storedTombstone(key objKey, m queue.StreamMessage) *watchv1.ObjectDelta {
	d, err := events.DecodeAs[*watchv1.ObjectDelta](m.Header, m.Data)
	if err != nil {
		d = &watchv1.ObjectDelta{Account: a.opts.Account, Namespace: key.namespace, Name: key.name,
			ResourceVersion: m.Header[inventory.HeaderResourceVersion]}
	}
	d.Type = watchv1.ObjectDelta_TYPE_DELETED
	d.Generation = a.opts.Generation
	return d
}

// Checksums summarises each kind's cached objects, or returns nil while
// changes are waiting to be published (the stream is behind by design
// then, and a mismatch would be noise).
func (a *Account) Checksums() []*accountsv1.InventoryChecksum {
	if !a.idle() {
		return nil
	}
	out := make([]*accountsv1.InventoryChecksum, 0, len(a.kinds))
	for token, w := range a.kinds {
		var lines []inventory.Line
		for _, inf := range w.informers {
			for _, obj := range inf.GetStore().List() {
				if c, ok := obj.(*cached); ok {
					lines = append(lines, inventory.Line{Namespace: c.meta.Namespace, Name: c.meta.Name, ResourceVersion: c.meta.ResourceVersion})
				}
			}
		}
		out = append(out, &accountsv1.InventoryChecksum{
			Account: a.opts.Account, Generation: a.opts.Generation, KindToken: token,
			Count: uint64(len(lines)), Checksum: inventory.Checksum(lines),
		})
	}
	return out
}

func (a *Account) checksumLoop() {
	if a.opts.ChecksumInterval <= 0 {
		return
	}
	tick := time.NewTicker(a.opts.ChecksumInterval)
	defer tick.Stop()
	subject := a.opts.Subjects.InventoryChecksums(a.opts.Tenant, a.opts.Account)
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-tick.C:
		}
		for _, c := range a.Checksums() {
			c.Envelope = events.NewEnvelope(a.opts.Tenant, 0, "", "")
			msg, err := events.Encode(subject, c, "")
			if err == nil {
				ctx, cancel := context.WithTimeout(a.ctx, publishTimeout)
				err = a.opts.Broker.Publish(ctx, msg)
				cancel()
			}
			if err != nil {
				a.opts.Log.Warn("checksum not published", "kind", c.GetKindToken(), "error", err)
				break
			}
		}
	}
}
