package agent

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v4"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/version"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
)

// heartbeats announces this replica and what it holds every interval.
func (a *Agent) heartbeats(ctx context.Context) {
	tick := time.NewTicker(a.cfg.HeartbeatInterval)
	defer tick.Stop()
	for ctx.Err() == nil {
		a.sendHeartbeat(ctx, false)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (a *Agent) sendHeartbeat(ctx context.Context, stopping bool) {
	hb := &accountsv1.WatcherHeartbeat{
		Envelope:   events.NewEnvelope(a.cfg.Tenant, 0, "", ""),
		Zone:       a.cfg.Zone,
		WatcherId:  a.cfg.WatcherID,
		IntervalMs: uint32(a.cfg.HeartbeatInterval / time.Millisecond),
		StartedAt:  timestamppb.New(a.started),
		Version:    version.Get(),
		Stopping:   stopping,
	}
	for _, h := range a.holdings() {
		hb.Accounts = append(hb.Accounts, &accountsv1.HeldAccount{Account: h.account, Generation: h.generation})
	}
	msg, err := events.Encode(a.cfg.Subjects.WatcherPresence(a.cfg.Tenant, a.cfg.Zone, a.cfg.WatcherID), hb, "")
	if err != nil {
		a.log.Error("cannot encode a heartbeat", "error", err)
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(a.cfg.HeartbeatInterval, settleTimeout))
	defer cancel()
	if err := a.broker.Publish(pctx, msg); err != nil && ctx.Err() == nil {
		a.log.Warn("heartbeat not published", "error", err)
	}
}

// followControl reads the zone's control subject from now on, reopening
// the read when it fails, until ctx is done.
func (a *Agent) followControl(ctx context.Context) {
	subject := a.cfg.Subjects.ZoneControl(a.cfg.Tenant, a.cfg.Zone)
	b := backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(0), backoff.WithMaxInterval(10*time.Second))
	for ctx.Err() == nil {
		err := a.broker.Read(ctx, subject, queue.ReadOptions{Follow: true, OnlyNew: true}, func(m queue.StreamMessage) bool {
			b.Reset()
			a.control(ctx, m)
			return true
		})
		if ctx.Err() != nil {
			return
		}
		a.log.Warn("control subject read ended, reopening", "subject", subject, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(b.NextBackOff()):
		}
	}
}

// control acts on a command for an account this replica holds, of the
// generation it holds (or any generation when the command names none).
func (a *Agent) control(ctx context.Context, m queue.StreamMessage) {
	c, err := events.DecodeAs[*accountsv1.AccountControl](m.Header, m.Data)
	if err != nil {
		a.metrics.Malformed.Inc()
		a.log.Error("malformed control command", "subject", m.Subject, "error", err)
		return
	}
	h := a.holding(c.GetAccount())
	if h == nil || (c.GetGeneration() != 0 && c.GetGeneration() != h.generation) {
		return
	}
	log := a.log.With("account", h.account, "generation", h.generation)
	switch cmd := c.GetCommand().(type) {
	case *accountsv1.AccountControl_Deactivate:
		log.Info("deactivating account", "reason", cmd.Deactivate.GetReason())
		h.release(releaseDeactivate)
	case *accountsv1.AccountControl_Resync:
		w := h.watch()
		if w == nil {
			return
		}
		log.Info("resyncing account", "kind", cmd.Resync.GetKindToken(), "reason", cmd.Resync.GetReason())
		go func() {
			if err := w.Resync(ctx, cmd.Resync.GetKindToken()); err != nil {
				log.Warn("resync failed", "error", err)
			}
		}()
	}
}
