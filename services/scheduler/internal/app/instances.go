package app

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/outposthq/outpost/libs/instances"
	"github.com/outposthq/outpost/libs/kv"
	"github.com/outposthq/outpost/libs/queue"
)

// serviceName is the scheduler's role in instance heartbeats.
const serviceName = "scheduler"

// withHeartbeat makes the replica's heartbeater: on the default tenant's
// instances subject of JetStream (the record store's connection, whatever
// the queue backend), so that the account-migrator lists this replica.
// Without a JetStream publisher (tests over another store) there is none.
func (s *Scheduler) withHeartbeat(opener kv.Opener) *Scheduler {
	pub, ok := opener.(instances.Publisher)
	if !ok {
		return s
	}
	cfg := s.cfg.Instance.Resolve(s.cfg.Listen)
	s.beat = instances.NewHeartbeater(cfg, queue.NewSubjects(s.cfg.Broker.Stack), s.cfg.Tenants.Default, serviceName, pub, s.Ready, s.log.With("component", "instances"))
	return s
}

// runBeating runs run and the heartbeater together; the heartbeater
// stops (with a last heartbeat saying so) once run returns.
func (s *Scheduler) runBeating(ctx context.Context, run func(context.Context) error) error {
	if s.beat == nil {
		return run(ctx)
	}
	bctx, stop := context.WithCancel(ctx)
	var g errgroup.Group
	g.Go(func() error { return s.beat.Run(bctx) })
	err := run(ctx)
	stop()
	_ = g.Wait()
	return err
}
