package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/signing"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/cluster"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/ops"
	"github.com/outposthq/outpost/services/k8s-watcher/internal/watch"
)

// ErrNothingToWatch is an account whose selection and permissions leave
// no kind to watch.
var ErrNothingToWatch = errors.New("no kind left to watch")

// active is a watched account: its watch, its operations consumer and the
// ACTIVATED status that announced it.
type active struct {
	acct   *watch.Account
	ops    queue.Consumer
	status *accountsv1.AccountStatus
	// ping asks the API server its version: is the cluster still there,
	// and does it still accept the credentials?
	ping func() error
}

func (x *active) stop(ctx context.Context, log *slog.Logger) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if err := x.ops.Stop(sctx); err != nil {
		log.Warn("operations consumer did not stop in time", "error", err)
	}
	x.acct.Stop()
}

// activate connects to the account's cluster and starts watching it. ctx
// ends the activation early; consumeCtx is the one the operations consumer
// lives in (until stop).
func (a *Agent) activate(ctx, consumeCtx context.Context, lease *accountsv1.AccountLease, log *slog.Logger) (*active, error) {
	spec := lease.GetSpec()
	rc, err := a.cfg.Resolver.RESTConfig(ctx, spec)
	if err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", cluster.ErrBadKubeconfig, err)
	}
	ver, err := disco.ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("read the server version: %w", cluster.Classify(rc.Host, err))
	}
	fp, err := cluster.CAFingerprint(rc)
	if err != nil {
		return nil, err
	}
	kinds, err := cluster.Discover(disco, cluster.Selection{Kinds: spec.GetKinds(), OmitKinds: spec.GetOmitKinds(), Namespaces: spec.GetNamespaces()})
	if err != nil {
		return nil, cluster.Classify(rc.Host, err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", cluster.ErrBadKubeconfig, err)
	}
	kinds, skipped, err := cluster.Probe(ctx, rc.Host, dyn, kinds)
	if err != nil {
		return nil, fmt.Errorf("probe kinds: %w", err)
	}
	if len(kinds) == 0 {
		return nil, fmt.Errorf("%w: %d kinds skipped", ErrNothingToWatch, len(skipped))
	}
	// Watches are long requests: the per-request timeout would cut them.
	watchRC := rest.CopyConfig(rc)
	watchRC.Timeout = 0
	watchDyn, err := dynamic.NewForConfig(watchRC)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", cluster.ErrBadKubeconfig, err)
	}
	acct, err := watch.Start(ctx, watchDyn, kinds, watch.Options{
		Tenant: a.cfg.Tenant, Account: spec.GetName(), Generation: lease.GetGeneration(),
		Subjects: a.cfg.Subjects, Broker: a.broker, Workers: a.cfg.PublishWorkers,
		SyncTimeout: a.cfg.SyncTimeout, ChecksumInterval: a.cfg.ChecksumInterval,
		Log: log, Metrics: a.metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("start watching: %w", err)
	}
	exec := ops.NewExecutor(dyn, disco)
	// The library's default max deliveries (5): an operation whose result
	// cannot be published is run again at most that often, then
	// dead-lettered with the reason. Fenced: a replica paused past the ack
	// wait while it ran an operation must not ack (remove) or nak (run
	// again) the delivery of the replica that holds the account now, and a
	// stopping replica gives back what reaches its last pull (see the
	// lease consumer in Run).
	cons, err := a.broker.Consume(consumeCtx, queue.ConsumerConfig{
		Name: ConsumerName, Subject: a.cfg.Subjects.Ops(a.cfg.Tenant, spec.GetName()), Concurrency: 1,
		AckWait: opsAckWait, Fenced: true,
	}, a.operations(spec.GetName(), exec, log))
	if err != nil {
		acct.Stop()
		return nil, fmt.Errorf("consume operations: %w", err)
	}
	st := a.status(lease, accountsv1.AccountStatus_TYPE_ACTIVATED)
	st.Cluster = &accountsv1.ClusterInfo{Host: rc.Host, CaFingerprintSha256: fp, ServerVersion: ver.GitVersion}
	for _, k := range kinds {
		st.Kinds = append(st.Kinds, k.Proto())
	}
	st.Skipped = skipped
	ping := func() error {
		_, err := disco.ServerVersion()
		return cluster.Classify(rc.Host, err)
	}
	return &active{acct: acct, ops: cons, status: st, ping: ping}, nil
}

// opsAckWait is the ack wait of an account's operations consumer: how long
// an operation taken by a replica that died waits before it is run again.
// The handler renews it while the operation runs.
const opsAckWait = queue.DefaultAckWait

// renewWhile keeps d in progress until ctx is done. Once d is superseded
// it calls abandon, to stop the work, and returns.
func renewWhile(ctx context.Context, d queue.Delivery, ackWait time.Duration, abandon func(), log *slog.Logger) {
	every := renewInterval(ackWait)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rctx, cancel := context.WithTimeout(ctx, every)
		err := d.InProgress(rctx)
		cancel()
		if errors.Is(err, queue.ErrSuperseded) {
			abandon()
			return
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("operation not renewed", "subject", d.Subject(), "error", err)
		}
	}
}

// operations runs an account's operations one at a time and reports each.
func (a *Agent) operations(account string, exec *ops.Executor, log *slog.Logger) queue.Handler {
	subject := a.cfg.Subjects.OperationResults(a.cfg.Tenant)
	return func(ctx context.Context, d queue.Delivery) {
		op, err := events.DecodeAs[*watchv1.Operation](d.Header(), d.Data())
		if err != nil {
			a.metrics.Malformed.Inc()
			log.Error("malformed operation", "subject", d.Subject(), "error", err)
			a.settle(ctx, d, "term", func(c context.Context) error { return d.Term(c, err.Error()) })
			return
		}
		if err := a.verify(op, d.Data(), op.GetEnvelope().GetTenant(), signing.AccountScope(account), op.GetId()); err != nil {
			a.refuse(ctx, d, "operation", err)
			return
		}
		xctx, abandon := context.WithCancel(ctx)
		renewed := make(chan struct{})
		go func() {
			defer close(renewed)
			renewWhile(xctx, d, opsAckWait, abandon, log)
		}()
		res := exec.Do(xctx, op)
		abandon()
		<-renewed
		// A delivery superseded while the operation ran (this replica was
		// paused past the ack wait) belongs to the replica that holds the
		// message now: it runs the operation and reports it. The renewal
		// checks it and keeps the delivery for the publish and the ack.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
		err = d.InProgress(rctx)
		cancel()
		if errors.Is(err, queue.ErrSuperseded) {
			log.Warn("operation delivery superseded: result not reported", "operation", op.GetId())
			return
		}
		outcome := "ok"
		if !res.GetOk() {
			outcome = "error"
		}
		a.metrics.Operations.WithLabelValues(ops.Kind(op), outcome).Inc()
		log.Info("operation done", "operation", op.GetId(), "kind", ops.Kind(op), "ok", res.GetOk(), "reason", res.GetReason())
		res.WatcherId = a.cfg.WatcherID
		res.Envelope = events.NewEnvelope(a.cfg.Tenant, uint32(d.Attempt()), op.GetId(), "")
		msg, err := events.Encode(subject, res, "")
		if err == nil {
			err = a.broker.Publish(ctx, msg)
		}
		if err != nil {
			log.Warn("operation result not published, retrying the operation", "operation", op.GetId(), "error", err)
			a.settle(ctx, d, "nak", func(c context.Context) error { return d.Nak(c, settleTimeout) })
			return
		}
		a.settle(ctx, d, "ack", d.Ack)
	}
}
