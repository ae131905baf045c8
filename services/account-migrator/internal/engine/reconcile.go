package engine

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/outposthq/outpost/libs/inventory"
	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
)

// Reconcile runs the lifecycle loop over the accounts of tenants every
// ReconcileInterval, and at once after an API write, until ctx is done.
func (e *Engine) Reconcile(ctx context.Context, tenants []string) error {
	t := time.NewTicker(e.opts.ReconcileInterval)
	defer t.Stop()
	for {
		if err := e.ReconcileOnce(ctx, tenants); err != nil && ctx.Err() == nil {
			e.log.Warn("reconcile pass failed", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-e.kick:
		}
	}
}

// ReconcileOnce is one pass over every account of tenants whose presence
// view has caught up: a tenant whose heartbeats are still being read is
// skipped, so a restarted migrator never orphans accounts it has not
// seen the watchers of yet.
func (e *Engine) ReconcileOnce(ctx context.Context, tenants []string) error {
	byTenant := map[string][]kv.Entry{}
	for _, t := range tenants {
		byTenant[t] = nil
	}
	err := e.store.List(ctx, func(en kv.Entry) bool {
		tenant, _, ok := strings.Cut(en.Key, ".")
		if _, want := byTenant[tenant]; ok && want {
			byTenant[tenant] = append(byTenant[tenant], en)
		}
		return true
	})
	if err != nil {
		return err
	}
	for tenant, entries := range byTenant {
		tr := e.Presence(tenant)
		if tr == nil || !tr.Synced() {
			continue
		}
		now := e.now()
		view := tr.Snapshot(now)
		counts := map[accounts.State]int{}
		for _, en := range entries {
			r, err := accounts.Decode(en.Value)
			if err != nil {
				e.log.Error("undecodable account record skipped", "tenant", tenant, "key", en.Key, "error", err)
				continue
			}
			counts[r.State]++
			e.reconcileRecord(ctx, tenant, en, r, view, now)
		}
		for _, s := range accounts.AllStates {
			e.opts.Metrics.SetAccounts(tenant, string(s), counts[s])
		}
	}
	return nil
}

func (e *Engine) reconcileRecord(ctx context.Context, tenant string, en kv.Entry, r *accounts.Record, view accounts.View, now time.Time) {
	if r.State == accounts.Inactive {
		e.settleInactive(ctx, tenant, en, r)
		return
	}
	if _, _, changed := accounts.Tick(r, now, view, e.opts.Policy); !changed {
		return
	}
	next, eff, err := e.apply(ctx, tenant, r.Name, func(cur *accounts.Record) (*accounts.Record, accounts.Effects, bool, error) {
		n, eff, changed := accounts.Tick(cur, now, view, e.opts.Policy)
		return n, eff, changed, nil
	})
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			e.log.Warn("account transition failed", "tenant", tenant, "account", r.Name, "error", err)
		}
		return
	}
	if eff.Retry {
		e.opts.Metrics.Retry(tenant)
	}
	// A publish that fails leaves the account ACTIVATING or DEACTIVATING:
	// their timeouts bring it back, so nothing is undone here.
	if err := e.publishEffects(ctx, tenant, next, eff); err != nil {
		e.log.Warn("publish after transition failed", "tenant", tenant, "account", r.Name, "state", string(next.State), "error", err)
	}
}

// settleInactive purges the inventory of an account that became INACTIVE
// and removes a record marked for deletion.
func (e *Engine) settleInactive(ctx context.Context, tenant string, en kv.Entry, r *accounts.Record) {
	if !r.PurgePending && !r.Deleting {
		return
	}
	if err := e.purge(ctx, tenant, r.Name); err != nil {
		e.log.Warn("inventory purge failed", "tenant", tenant, "account", r.Name, "error", err)
		return
	}
	if r.Deleting {
		if err := e.store.Delete(ctx, en.Key, en.Revision); err != nil && !errors.Is(err, kv.ErrNotFound) {
			if !errors.Is(err, kv.ErrConflict) {
				e.log.Warn("account delete failed", "tenant", tenant, "account", r.Name, "error", err)
			}
			return
		}
		e.log.Info("account deleted", "tenant", tenant, "account", r.Name)
		return
	}
	_, _, err := e.apply(ctx, tenant, r.Name, func(cur *accounts.Record) (*accounts.Record, accounts.Effects, bool, error) {
		if cur.State != accounts.Inactive || !cur.PurgePending {
			return cur, accounts.Effects{}, false, nil
		}
		n := cur.Clone()
		n.PurgePending = false
		return n, accounts.Effects{}, true, nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		e.log.Warn("clear purge mark failed", "tenant", tenant, "account", r.Name, "error", err)
	}
}

// purge removes the account's whole inventory from the watch stream.
func (e *Engine) purge(ctx context.Context, tenant, account string) error {
	return e.conn.Purge(ctx, inventory.Filter(e.opts.Subjects, tenant, account, "", "", false))
}
