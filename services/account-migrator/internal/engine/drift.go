package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
)

// errBadChecksum is the cause of a terminated InventoryChecksum.
var errBadChecksum = errors.New("malformed inventory checksum")

// handleChecksum compares a watcher's checksum of one kind with the watch
// stream and, after ChecksumMismatches disagreements in a row, tells the
// holder to resync the kind. The count lives in the account record so
// that it survives replicas taking turns on the consumer.
func (e *Engine) handleChecksum(tenant string) queue.Handler {
	return func(ctx context.Context, d queue.Delivery) {
		ev, err := events.DecodeAs[*accountsv1.InventoryChecksum](d.Header(), d.Data())
		if err == nil && (accounts.ValidateName(ev.GetAccount()) != nil || ev.GetKindToken() == "" || ev.GetGeneration() == 0) {
			err = fmt.Errorf("%w: account, kind_token and generation are required", errBadChecksum)
		}
		if err != nil {
			e.terminate(ctx, tenant, "checksums", d, err)
			return
		}
		if err := e.checkDrift(ctx, tenant, ev); err != nil {
			e.log.Warn("checksum not compared; retrying", "tenant", tenant, "account", ev.GetAccount(), "kind", ev.GetKindToken(), "error", err)
			_ = d.Nak(ctx, nakDelay)
			return
		}
		_ = d.Ack(ctx)
	}
}

func (e *Engine) checkDrift(ctx context.Context, tenant string, ev *accountsv1.InventoryChecksum) error {
	en, err := e.store.Get(ctx, accounts.Key(tenant, ev.GetAccount()))
	if errors.Is(err, kv.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	r, err := accounts.Decode(en.Value)
	if err != nil {
		return err
	}
	if r.State != accounts.Active || r.Generation != ev.GetGeneration() {
		return nil // not (or no longer) watched under this lease
	}
	sum, _, err := e.StreamChecksum(ctx, tenant, ev.GetAccount(), ev.GetKindToken())
	if err != nil {
		return err
	}
	kind := ev.GetKindToken()
	match := sum == ev.GetChecksum()
	if match && r.Drift[kind] == 0 {
		return nil
	}
	if !match {
		e.opts.Metrics.Drift(tenant)
	}
	resync := false
	rec, _, err := e.apply(ctx, tenant, r.Name, func(cur *accounts.Record) (*accounts.Record, accounts.Effects, bool, error) {
		resync = false
		if cur.Generation != ev.GetGeneration() {
			return cur, accounts.Effects{}, false, nil
		}
		n := cur.Clone()
		if n.Drift == nil {
			n.Drift = map[string]int{}
		}
		switch {
		case match:
			delete(n.Drift, kind)
		case n.Drift[kind]+1 >= e.opts.ChecksumMismatches:
			delete(n.Drift, kind)
			resync = true
		default:
			n.Drift[kind]++
		}
		return n, accounts.Effects{}, true, nil
	})
	if err != nil || !resync {
		return err
	}
	e.log.Info("inventory drift: resync requested", "tenant", tenant, "account", r.Name, "kind", kind, "zone", rec.ZoneID)
	e.opts.Metrics.Resync(tenant)
	return e.sendControl(ctx, tenant, rec.ZoneID, &accountsv1.AccountControl{
		Account: r.Name, Generation: rec.Generation,
		Command: &accountsv1.AccountControl_Resync{Resync: &accountsv1.Resync{
			KindToken: kind,
			Reason:    fmt.Sprintf("checksum differs from the watch stream %d times in a row", e.opts.ChecksumMismatches),
		}},
	})
}

// StreamChecksum computes inventory.Checksum over the live objects of one
// kind of an account in the watch stream, from the headers alone.
func (e *Engine) StreamChecksum(ctx context.Context, tenant, account, kindToken string) (string, int, error) {
	var lines []inventory.Line
	err := e.conn.Read(ctx, inventory.Filter(e.opts.Subjects, tenant, account, kindToken, "", false), queue.ReadOptions{}, func(m queue.StreamMessage) bool {
		if m.Header[inventory.HeaderDeleted] == "true" {
			return true
		}
		k, err := inventory.ParseSubject(m.Subject)
		if err != nil {
			return true
		}
		lines = append(lines, inventory.Line{Namespace: k.Namespace, Name: k.Name, ResourceVersion: m.Header[inventory.HeaderResourceVersion]})
		return true
	})
	if err != nil {
		return "", 0, fmt.Errorf("read inventory of %q kind %q: %w", account, kindToken, err)
	}
	return inventory.Checksum(lines), len(lines), nil
}
