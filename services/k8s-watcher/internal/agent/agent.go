// Package agent is the watcher's side of the account protocol: it takes
// account leases from its zone's queue and holds each one (in progress)
// for as long as it watches the account, announces itself with
// heartbeats, obeys the zone's control commands and runs the account's
// operations. See "Kubernetes accounts" in docs/architecture.md.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/cluster"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/metrics"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/watch"
)

// ConsumerName is the durable consumer of leases and of operations.
const ConsumerName = "k8s-watcher"

// settleTimeout bounds an ack, nak or status publish that must happen
// even while the watcher shuts down.
const settleTimeout = 5 * time.Second

// Broker is the part of the queue the agent uses.
type Broker interface {
	watch.Broker
	queue.Subscriber
}

// Config is what the agent needs of the watcher's configuration.
type Config struct {
	Tenant, Zone, WatcherID string
	Subjects                queue.Subjects
	LeaseAckWait            time.Duration
	HeartbeatInterval       time.Duration
	ChecksumInterval        time.Duration
	SyncTimeout             time.Duration
	ShutdownGrace           time.Duration
	MaxAccounts             int
	PublishWorkers          int
	Resolver                *cluster.Resolver
	// Verifier checks the control plane's signature of every lease and
	// operation before it is used; nil takes unsigned ones (development
	// only, configured explicitly).
	Verifier *signing.Verifier
}

// Agent holds this replica's accounts.
type Agent struct {
	cfg     Config
	broker  Broker
	log     *slog.Logger
	metrics *metrics.Metrics
	started time.Time

	mu       sync.Mutex
	held     map[string]*holding
	stopping bool
}

// New returns an agent; Run starts it.
func New(cfg Config, b Broker, log *slog.Logger, m *metrics.Metrics) *Agent {
	return &Agent{cfg: cfg, broker: b, log: log, metrics: m, started: time.Now(), held: map[string]*holding{}}
}

// Run consumes the zone's leases, sends heartbeats and follows the zone's
// control subject until ctx is done; then it says it is stopping and gives
// every lease back at once (Nak without delay) so that another replica
// takes the accounts over without waiting for the ack wait.
func (a *Agent) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	wg.Go(func() { a.heartbeats(ctx) })
	wg.Go(func() { a.followControl(ctx) })
	defer wg.Wait()

	// Handlers must outlive ctx: they settle their leases after it ends.
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	// Unlimited deliveries, on purpose: a lease is the account's one work
	// item for as long as it is watched, and every watcher that stops (a
	// rolling upgrade Naks it) or dies (its ack wait lapses) adds a
	// delivery. A bound would in time dead-letter the lease of a healthy
	// account and nothing would watch it again. No outcome of handleLease
	// loops: a malformed lease is terminated, a failed activation reports
	// FAILED and acks, a held one stays in progress.
	//
	// Fenced, for two reasons. A watcher paused (or cut off from the
	// broker) past the ack wait has lost the lease to another replica,
	// and JetStream settles whichever delivery of the message is current:
	// its late renewal, Nak or Ack would keep, hand out again or remove
	// the new holder's lease. And a fenced consumer's pulls are ended by
	// the broker, never abandoned by the client: a lease given back at
	// shutdown that the broker routes to this replica's last pull is
	// received and given back again, where an abandoned pull drops it and
	// the lease waits out the whole ack wait before any replica gets it.
	cfg := queue.ConsumerConfig{
		Name:          ConsumerName,
		Subject:       a.cfg.Subjects.Leases(a.cfg.Tenant, a.cfg.Zone),
		AckWait:       a.cfg.LeaseAckWait,
		MaxDeliveries: -1,
		Concurrency:   a.cfg.MaxAccounts,
		Fenced:        true,
	}
	var cons queue.Consumer
	err := backoff.Retry(func() error {
		var err error
		if cons, err = a.broker.Consume(cctx, cfg, a.handleLease); err != nil {
			a.log.Warn("lease consumer not started, retrying", "subject", cfg.Subject, "error", err)
		}
		return err
	}, backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(0), backoff.WithMaxInterval(10*time.Second)), ctx))
	if err != nil {
		return nil //nolint:nilerr // ctx ended before the consumer started: nothing is held
	}
	a.log.Info("taking account leases", "subject", cfg.Subject, "max_accounts", cfg.Concurrency)
	<-ctx.Done()
	// The last heartbeat must be the stopping one.
	wg.Wait()
	a.shutdown(cons)
	return nil
}

func (a *Agent) shutdown(cons queue.Consumer) {
	a.mu.Lock()
	a.stopping = true
	a.mu.Unlock()
	a.log.Info("stopping: giving the leases back")
	a.sendHeartbeat(context.Background(), true)

	grace, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- cons.Stop(grace) }()
	for _, h := range a.holdings() {
		h.release(releaseShutdown)
	}
	if err := <-stopped; err != nil {
		a.log.Warn("lease consumer did not stop in time", "error", err)
	}
}

func (a *Agent) holdings() []*holding {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*holding, 0, len(a.held))
	for _, h := range a.held {
		out = append(out, h)
	}
	return out
}

func (a *Agent) holding(account string) *holding {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.held[account]
}

// verify checks the control plane's signature of m (a lease or an
// operation) against this watcher's tenant and scope.
func (a *Agent) verify(m proto.Message, raw []byte, tenant, scope, subject string) error {
	if a.cfg.Verifier == nil {
		return nil
	}
	return a.cfg.Verifier.Verify(m, raw, tenant, signing.Binding{Tenant: a.cfg.Tenant, Scope: scope, Subject: subject, Attempt: 1})
}

// refuse dead-letters a message whose signature did not verify, with the
// reason, and counts it.
func (a *Agent) refuse(ctx context.Context, d queue.Delivery, typ string, err error) {
	reason := signing.Reason(err)
	a.metrics.Refused.WithLabelValues(typ, reason).Inc()
	a.log.Warn("unverified message dead-lettered", "type", typ, "subject", d.Subject(), "reason", reason, "error", err)
	a.settle(ctx, d, "term", func(c context.Context) error { return d.Term(c, "refused: "+err.Error()) })
}

// handleLease takes one lease. It returns once the account is released,
// which holds one of max_accounts handler slots per watched account.
func (a *Agent) handleLease(ctx context.Context, d queue.Delivery) {
	lease, err := events.DecodeAs[*accountsv1.AccountLease](d.Header(), d.Data())
	if err != nil {
		a.metrics.Malformed.Inc()
		a.log.Error("malformed lease", "subject", d.Subject(), "error", err)
		a.settle(ctx, d, "term", func(c context.Context) error { return d.Term(c, err.Error()) })
		return
	}
	name, gen := lease.GetSpec().GetName(), lease.GetGeneration()
	if err := a.verify(lease, d.Data(), lease.GetEnvelope().GetTenant(), signing.ZoneScope(a.cfg.Zone), name); err != nil {
		// Nothing is reported for the account: the lease may not come
		// from the control plane at all.
		a.refuse(ctx, d, "lease", err)
		return
	}
	log := a.log.With("account", name, "generation", gen)
	if !queue.ValidToken(name) {
		a.reportFailure(ctx, lease, fmt.Errorf("account name %q is not a valid subject token", name))
		a.settle(ctx, d, "ack", d.Ack)
		return
	}
	for {
		a.mu.Lock()
		if a.stopping {
			a.mu.Unlock()
			a.settle(ctx, d, "nak", func(c context.Context) error { return d.Nak(c, 0) })
			return
		}
		h := a.held[name]
		if h == nil {
			h = newHolding(name, gen, d)
			a.held[name] = h
			a.metrics.AccountsHeld.Set(float64(len(a.held)))
			a.mu.Unlock()
			a.hold(ctx, h, lease, log)
			return
		}
		a.mu.Unlock()
		switch {
		case gen < h.generation:
			log.Info("stale lease dropped", "held_generation", h.generation)
			a.settle(ctx, d, "ack", d.Ack)
			return
		case gen == h.generation:
			// Our own lease again (its ack wait lapsed): the running
			// holder renews and settles this delivery from now on,
			// unless it already gave the account up for a superseded
			// delivery; then this one is taken anew once it is gone.
			if h.adopt(d) {
				return
			}
			<-h.done
			continue
		}
		log.Info("newer lease: restarting the watch", "held_generation", h.generation)
		h.release(releaseSuperseded)
		<-h.done
	}
}

// settle runs an ack, nak or term that must happen whatever ctx says.
func (a *Agent) settle(ctx context.Context, d queue.Delivery, op string, fn func(context.Context) error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	err := fn(sctx)
	switch {
	case errors.Is(err, queue.ErrSuperseded):
		// Another replica holds the message now; it settles it.
		a.log.Info("superseded delivery not settled", "op", op, "subject", d.Subject())
	case err != nil:
		a.log.Warn("lease not settled", "op", op, "subject", d.Subject(), "error", err)
	}
}

func (a *Agent) reportFailure(ctx context.Context, lease *accountsv1.AccountLease, err error) {
	a.metrics.Activations.WithLabelValues("failed").Inc()
	a.log.Warn("account activation failed", "account", lease.GetSpec().GetName(), "generation", lease.GetGeneration(), "error", err)
	st := a.status(lease, accountsv1.AccountStatus_TYPE_FAILED)
	st.ErrorMessage = err.Error()
	a.publishStatus(ctx, st)
}

func (a *Agent) status(lease *accountsv1.AccountLease, typ accountsv1.AccountStatus_Type) *accountsv1.AccountStatus {
	return &accountsv1.AccountStatus{
		Account:    lease.GetSpec().GetName(),
		Generation: lease.GetGeneration(),
		Type:       typ,
		Zone:       a.cfg.Zone,
		WatcherId:  a.cfg.WatcherID,
	}
}

// publishStatus retries until the status is stored or settleTimeout has
// passed since ctx ended.
func (a *Agent) publishStatus(ctx context.Context, st *accountsv1.AccountStatus) {
	st.Envelope = events.NewEnvelope(a.cfg.Tenant, 0, "", "")
	msg, err := events.Encode(a.cfg.Subjects.AccountStatus(a.cfg.Tenant), st, st.GetEnvelope().GetEventId())
	if err != nil {
		a.log.Error("cannot encode an account status", "error", err)
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.LeaseAckWait)
	defer cancel()
	err = backoff.Retry(func() error {
		return a.broker.Publish(pctx, msg)
	}, backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(0)), pctx))
	if err != nil {
		a.log.Error("account status not published", "account", st.GetAccount(), "type", st.GetType().String(), "error", err)
	}
}
