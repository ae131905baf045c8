package engine

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
)

// Create stores a new account from a POSTed entry (or one found by
// automatic migration, source "auto").
func (e *Engine) Create(ctx context.Context, tenant string, in accounts.Input, source string) (*accounts.Record, error) {
	r, err := accounts.New(in, e.opts.Sealer.ForTenant(tenant), source, e.now())
	if err != nil {
		return nil, err
	}
	raw, err := r.Encode()
	if err != nil {
		return nil, err
	}
	if _, err := e.store.Create(ctx, accounts.Key(tenant, r.Name), raw); err != nil {
		if errors.Is(err, kv.ErrExists) {
			return nil, fmt.Errorf("%w: %q (use PATCH to change it)", ErrExists, r.Name)
		}
		return nil, fmt.Errorf("store account %q: %w", r.Name, err)
	}
	e.opts.Metrics.Transition(tenant, "", string(r.State))
	e.log.Info("account created", "tenant", tenant, "account", r.Name, "state", string(r.State), "source", source)
	e.wake()
	return r, nil
}

// Patch applies a PATCH entry to an existing account.
func (e *Engine) Patch(ctx context.Context, tenant string, in accounts.Input) (*accounts.Record, error) {
	if err := accounts.ValidateName(in.Name); err != nil {
		return nil, err
	}
	r, _, err := e.apply(ctx, tenant, in.Name, func(cur *accounts.Record) (*accounts.Record, accounts.Effects, bool, error) {
		n := cur.Clone()
		if err := accounts.Patch(n, in, e.opts.Sealer.ForTenant(tenant), e.now()); err != nil {
			return cur, accounts.Effects{}, false, err
		}
		return n, accounts.Effects{}, true, nil
	})
	if err == nil {
		e.wake()
	}
	return r, err
}

// Delete removes an account at once when nothing holds it, otherwise marks
// it for deletion and deactivates it (the reconcile loop removes it once
// INACTIVE). It reports whether the record is gone.
func (e *Engine) Delete(ctx context.Context, tenant, name string) (*accounts.Record, bool, error) {
	if err := accounts.ValidateName(name); err != nil {
		return nil, false, err
	}
	key := accounts.Key(tenant, name)
	for range mutateAttempts {
		en, err := e.store.Get(ctx, key)
		if errors.Is(err, kv.ErrNotFound) {
			return nil, false, fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		if err != nil {
			return nil, false, err
		}
		r, err := accounts.Decode(en.Value)
		if err != nil {
			return nil, false, err
		}
		from := r.State
		if r.MarkDeleted(e.now()) {
			if err := e.purge(ctx, tenant, name); err != nil {
				return nil, false, fmt.Errorf("purge inventory of %q: %w", name, err)
			}
			err = e.store.Delete(ctx, key, en.Revision)
			if errors.Is(err, kv.ErrConflict) {
				continue
			}
			if err != nil && !errors.Is(err, kv.ErrNotFound) {
				return nil, false, fmt.Errorf("delete account %q: %w", name, err)
			}
			e.log.Info("account deleted", "tenant", tenant, "account", name)
			return r, true, nil
		}
		raw, err := r.Encode()
		if err != nil {
			return nil, false, err
		}
		if _, err := e.store.Update(ctx, key, raw, en.Revision); errors.Is(err, kv.ErrConflict) {
			continue
		} else if err != nil {
			return nil, false, fmt.Errorf("mark account %q deleted: %w", name, err)
		}
		e.opts.Metrics.Transition(tenant, string(from), string(r.State))
		e.wake()
		return r, false, nil
	}
	return nil, false, fmt.Errorf("delete account %q: %w", name, kv.ErrConflict)
}

// Get returns one account.
func (e *Engine) Get(ctx context.Context, tenant, name string) (*accounts.Record, error) {
	if accounts.ValidateName(name) != nil {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	en, err := e.store.Get(ctx, accounts.Key(tenant, name))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return nil, err
	}
	return accounts.Decode(en.Value)
}

// List returns the accounts of tenant sorted by name.
func (e *Engine) List(ctx context.Context, tenant string) ([]*accounts.Record, error) {
	var (
		out  []*accounts.Record
		derr error
	)
	prefix := tenant + "."
	err := e.store.List(ctx, func(en kv.Entry) bool {
		if !strings.HasPrefix(en.Key, prefix) {
			return true
		}
		r, err := accounts.Decode(en.Value)
		if err != nil {
			derr = err
			return false
		}
		out = append(out, r)
		return true
	})
	if err == nil {
		err = derr
	}
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	slices.SortFunc(out, func(a, b *accounts.Record) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}
