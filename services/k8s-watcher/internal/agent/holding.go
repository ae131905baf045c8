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
	// releaseLost: the delivery's lease lapsed (this replica was paused,
	// starved or cut off from the broker past the ack wait) and the broker
	// may have handed the account to another replica: stop watching,
	// settle nothing and report nothing; the current holder does.
	releaseLost
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

// adopt makes d, a new delivery of the held lease, the one renewed and
// settled from now on. It refuses (false) once the holding gave the
// account up for a superseded delivery: that holder settles nothing, so d
// must be taken anew.
func (h *holding) adopt(d queue.Delivery) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.released:
		if h.reason == releaseLost {
			return false
		}
	default:
	}
	h.delivery = d
	return true
}

// lose gives the account up because d was superseded, unless a newer
// delivery was adopted meanwhile (d is no longer current). Under h.mu, so
// that adopt sees either the newer delivery kept or the holding lost.
func (h *holding) lose(d queue.Delivery) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.delivery != d {
		return false
	}
	h.release(releaseLost)
	return true
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
			a.fail(ctx, h, lease, err, log)
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
		a.fail(ctx, h, lease, lost, log)
		return
	}
	a.settleRelease(ctx, h, lease, log)
}

// fail reports FAILED and acks the lease, so that the migrator retries the
// account, unless the delivery was superseded: then the account's current
// holder reports its own outcome, and a FAILED from here would contradict
// it. The renewal that checks it also keeps the lease until the ack. A
// delivery adopted meanwhile (the lease came back to this replica) is the
// one reported and acked.
func (a *Agent) fail(ctx context.Context, h *holding, lease *accountsv1.AccountLease, cause error, log *slog.Logger) {
	for {
		d := h.current()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		err := d.InProgress(rctx)
		cancel()
		if errors.Is(err, queue.ErrSuperseded) {
			if !h.lose(d) {
				continue
			}
			a.metrics.LeasesSuperseded.Inc()
			log.Warn("lease superseded: failure not reported", "error", cause)
			return
		}
		a.reportFailure(ctx, lease, cause)
		a.settle(ctx, d, "ack", d.Ack)
		return
	}
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
	case releaseLost:
		a.metrics.LeasesSuperseded.Inc()
		log.Warn("lease superseded: account given up to its current holder")
	default:
		a.settle(ctx, d, "nak", func(c context.Context) error { return d.Nak(c, 0) })
		log.Info("account lease given back")
	}
}

// renewInterval is how often a held lease is renewed: a third of the time
// a fenced delivery stays this replica's without a renewal (the ack wait
// less its fence margin), so that one lost renewal does not lose it.
func renewInterval(ackWait time.Duration) time.Duration {
	return (ackWait - queue.FenceMargin(ackWait)) / 3
}

// keepAlive renews the lease every renewInterval. Once its delivery is
// superseded (no renewal got through within the ack wait less its margin:
// this replica was paused or cut off, and the broker may have handed the
// lease to another replica), the account is given up.
func (a *Agent) keepAlive(ctx context.Context, h *holding, log *slog.Logger) {
	every := renewInterval(a.cfg.LeaseAckWait)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.released:
			return
		case <-tick.C:
		}
		d := h.current()
		rctx, cancel := context.WithTimeout(ctx, every)
		err := d.InProgress(rctx)
		cancel()
		switch {
		case err == nil, errors.Is(err, queue.ErrAlreadyAcked):
		case errors.Is(err, queue.ErrSuperseded):
			if h.lose(d) {
				return
			}
		default:
			log.Warn("lease not renewed", "error", err)
		}
	}
}
