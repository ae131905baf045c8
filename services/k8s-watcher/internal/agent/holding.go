package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/watch"
)

// releaseReason is why a held account is let go; it decides how the
// lease is settled.
type releaseReason int

const (
	// releaseShutdown: Nak without delay, another replica takes it.
	releaseShutdown releaseReason = iota + 1
	// releaseDeactivate: Ack and report RELEASED.
	releaseDeactivate
	// releaseSuperseded: a newer generation's lease arrived; Ack the old.
	releaseSuperseded
)

// holding is one account this replica holds the lease of.
type holding struct {
	account    string
	generation uint64

	mu       sync.Mutex
	delivery queue.Delivery
	acct     *watch.Account

	once     sync.Once
	reason   releaseReason
	released chan struct{}
	done     chan struct{}
}

func newHolding(account string, gen uint64, d queue.Delivery) *holding {
	return &holding{account: account, generation: gen, delivery: d, released: make(chan struct{}), done: make(chan struct{})}
}

func (h *holding) setDelivery(d queue.Delivery) {
	h.mu.Lock()
	h.delivery = d
	h.mu.Unlock()
}

func (h *holding) current() queue.Delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.delivery
}

func (h *holding) watch() *watch.Account {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.acct
}

// release asks the holder to let go; the first reason wins.
func (h *holding) release(r releaseReason) {
	h.once.Do(func() {
		h.reason = r
		close(h.released)
	})
}

// hold activates the account, then keeps its lease in progress until it
// is released, and settles it according to why.
func (a *Agent) hold(ctx context.Context, h *holding, lease *accountsv1.AccountLease, log *slog.Logger) {
	defer func() {
		a.mu.Lock()
		if a.held[h.account] == h {
			delete(a.held, h.account)
		}
		a.metrics.AccountsHeld.Set(float64(len(a.held)))
		a.mu.Unlock()
		close(h.done)
	}()
	keepCtx, stopKeep := context.WithCancel(ctx)
	defer stopKeep()
	go a.keepAlive(keepCtx, h, log)

	// Activation is abandoned as soon as the account is released.
	actx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-h.released:
			cancel()
		case <-actx.Done():
		}
	}()
	active, err := a.activate(actx, ctx, lease, log)
	if err != nil {
		cancel()
		select {
		case <-h.released:
			a.settleRelease(ctx, h, lease, log)
		default:
			a.reportFailure(ctx, lease, err)
			a.settle(ctx, h.current(), "ack", h.current().Ack)
		}
		return
	}
	h.mu.Lock()
	h.acct = active.acct
	h.mu.Unlock()
	a.metrics.Activations.WithLabelValues("activated").Inc()
	log.Info("account activated", "kinds", len(active.status.GetKinds()), "skipped", len(active.status.GetSkipped()))
	a.publishStatus(actx, active.status)

	lost := a.watchCluster(ctx, h, active, log)
	cancel()
	active.stop(ctx, log)
	if lost != nil {
		a.reportFailure(ctx, lease, lost)
		a.settle(ctx, h.current(), "ack", h.current().Ack)
		return
	}
	a.settleRelease(ctx, h, lease, log)
}

// ErrLostCluster is reported (FAILED) for an active account whose cluster
// stopped answering, or rejected its credentials, for longer than the sync
// timeout: the lease is acked so that the migrator retries the account.
var ErrLostCluster = errors.New("lost the cluster")

// watchCluster waits until the account is released (nil) or its cluster
// is lost (the cause), pinging the API server every third of the ack wait.
func (a *Agent) watchCluster(ctx context.Context, h *holding, x *active, log *slog.Logger) error {
	tick := time.NewTicker(a.cfg.LeaseAckWait / 3)
	defer tick.Stop()
	var since time.Time
	for {
		select {
		case <-h.released:
			return nil
		case <-ctx.Done():
			h.release(releaseShutdown)
			return nil
		case <-tick.C:
		}
		// A ping to a cluster that does not answer takes up to the cluster
		// timeout: a release does not wait for it.
		pinged := make(chan error, 1)
		go func() { pinged <- x.ping() }()
		var err error
		select {
		case <-h.released:
			return nil
		case <-ctx.Done():
			h.release(releaseShutdown)
			return nil
		case err = <-pinged:
		}
		switch {
		case err == nil:
			if !since.IsZero() {
				log.Info("cluster answering again")
			}
			since = time.Time{}
		case since.IsZero():
			since = time.Now()
			log.Warn("cluster not answering", "error", err)
		case time.Since(since) >= a.cfg.SyncTimeout:
			return fmt.Errorf("%w for %s: %w", ErrLostCluster, time.Since(since).Round(time.Second), err)
		}
	}
}

func (a *Agent) settleRelease(ctx context.Context, h *holding, lease *accountsv1.AccountLease, log *slog.Logger) {
	d := h.current()
	switch h.reason {
	case releaseDeactivate:
		a.settle(ctx, d, "ack", d.Ack)
		a.publishStatus(ctx, a.status(lease, accountsv1.AccountStatus_TYPE_RELEASED))
		log.Info("account released")
	case releaseSuperseded:
		a.settle(ctx, d, "ack", d.Ack)
		log.Info("account handed to its newer lease")
	default:
		a.settle(ctx, d, "nak", func(c context.Context) error { return d.Nak(c, 0) })
		log.Info("account lease given back")
	}
}

// keepAlive renews the lease every third of its ack wait, so that one
// lost renewal does not hand the account to another replica.
func (a *Agent) keepAlive(ctx context.Context, h *holding, log *slog.Logger) {
	tick := time.NewTicker(a.cfg.LeaseAckWait / 3)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.released:
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, a.cfg.LeaseAckWait/3)
		err := h.current().InProgress(rctx)
		cancel()
		if err != nil && !errors.Is(err, queue.ErrAlreadyAcked) {
			log.Warn("lease not renewed", "error", err)
		}
	}
}
