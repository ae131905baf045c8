package engine

import (
	"context"
	"errors"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	"github.com/outposthq/outpost/services/account-migrator/internal/accounts"
)

// nakDelay is how long a delivery that failed for a transient reason (the
// store or the broker) waits before it is handed out again.
const nakDelay = time.Second

// handleStatus applies the watchers' ACTIVATED, FAILED and RELEASED reports.
func (e *Engine) handleStatus(tenant string) queue.Handler {
	return func(ctx context.Context, d queue.Delivery) {
		ev, err := events.DecodeAs[*accountsv1.AccountStatus](d.Header(), d.Data())
		if err == nil {
			err = validStatus(ev)
		}
		if err != nil {
			e.terminate(ctx, tenant, "status", d, err)
			return
		}
		st := toStatus(ev)
		rec, eff, err := e.apply(ctx, tenant, ev.GetAccount(), func(r *accounts.Record) (*accounts.Record, accounts.Effects, bool, error) {
			n, eff, changed := accounts.ApplyStatus(r, st, e.now())
			return n, eff, changed, nil
		})
		if errors.Is(err, ErrNotFound) {
			// A deleted account: whoever activated it must stop.
			rec = &accounts.Record{Name: ev.GetAccount()}
			eff, err = accounts.Effects{}, nil
			if st.Type == accounts.StatusActivated {
				eff = accounts.Effects{Deactivate: []accounts.Holder{{Zone: st.Zone, Generation: st.Generation}}, Reason: "account deleted"}
			}
		}
		if err == nil {
			err = e.publishEffects(ctx, tenant, rec, eff)
		}
		if err != nil {
			e.log.Warn("account status not applied; retrying", "tenant", tenant, "account", ev.GetAccount(), "error", err)
			_ = d.Nak(ctx, nakDelay)
			return
		}
		e.log.Debug("account status applied", "tenant", tenant, "account", ev.GetAccount(), "type", ev.GetType().String(), "zone", ev.GetZone(), "generation", ev.GetGeneration())
		_ = d.Ack(ctx)
	}
}

// terminate dead-letters a malformed event: it can never be applied, so it
// is not retried.
func (e *Engine) terminate(ctx context.Context, tenant, consumer string, d queue.Delivery, cause error) {
	e.opts.Metrics.Poison(tenant, consumer)
	e.log.Warn("malformed event terminated", "tenant", tenant, "consumer", consumer, "subject", d.Subject(), "error", cause)
	_ = d.Term(ctx, cause.Error())
}

// errBadStatus is the cause of a terminated AccountStatus.
var errBadStatus = errors.New("malformed account status")

func validStatus(ev *accountsv1.AccountStatus) error {
	switch {
	case accounts.ValidateName(ev.GetAccount()) != nil:
		return errors.Join(errBadStatus, errors.New("account is not a valid name"))
	case !queue.ValidToken(ev.GetZone()):
		return errors.Join(errBadStatus, errors.New("zone is not a valid token"))
	case ev.GetGeneration() == 0:
		return errors.Join(errBadStatus, errors.New("generation is 0"))
	case ev.GetType() == accountsv1.AccountStatus_TYPE_UNSPECIFIED:
		return errors.Join(errBadStatus, errors.New("type is unspecified"))
	}
	return nil
}

func toStatus(ev *accountsv1.AccountStatus) accounts.Status {
	st := accounts.Status{
		Generation: ev.GetGeneration(),
		Zone:       ev.GetZone(),
		Watcher:    ev.GetWatcherId(),
		Error:      ev.GetErrorMessage(),
	}
	switch ev.GetType() {
	case accountsv1.AccountStatus_TYPE_ACTIVATED:
		st.Type = accounts.StatusActivated
	case accountsv1.AccountStatus_TYPE_FAILED:
		st.Type = accounts.StatusFailed
	case accountsv1.AccountStatus_TYPE_RELEASED:
		st.Type = accounts.StatusReleased
	}
	if c := ev.GetCluster(); c != nil {
		st.Cluster = &accounts.Cluster{Host: c.GetHost(), CAFingerprintSHA256: c.GetCaFingerprintSha256(), ServerVersion: c.GetServerVersion()}
	}
	for _, k := range ev.GetKinds() {
		st.Kinds = append(st.Kinds, accounts.Kind{
			Group: k.GetGroup(), Version: k.GetVersion(), Kind: k.GetKind(),
			Resource: k.GetResource(), Namespaced: k.GetNamespaced(), Token: k.GetToken(),
		})
	}
	for _, s := range ev.GetSkipped() {
		st.Skipped = append(st.Skipped, accounts.Skipped{Kind: s.GetKind(), Reason: s.GetReason()})
	}
	return st
}
