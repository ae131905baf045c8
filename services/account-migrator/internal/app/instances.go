package app

import (
	"context"
	"net/http"

	"github.com/outposthq/outpost/libs/auth"
	"github.com/outposthq/outpost/libs/instances"
	"github.com/outposthq/outpost/libs/queue"
)

// serviceName is the account-migrator's role in instance heartbeats.
const serviceName = "account-migrator"

// instancePaths list the live control-plane replicas: Armory's path and
// Outpost's own.
var instancePaths = []string{"/armory/clouddrivers", "/api/v1/instances"}

// newInstances makes the replica's heartbeater and the tracker of every
// replica's heartbeats, on the default tenant's instances subjects.
func (m *Migrator) newInstances() {
	cfg := m.cfg.Instance.Resolve(m.cfg.Listen)
	subjects := queue.NewSubjects(m.cfg.Broker.Stack)
	m.beat = instances.NewHeartbeater(cfg, subjects, m.cfg.DefaultTenant, serviceName, m.conn, m.Ready, m.log.With("component", "instances"))
	m.peers = instances.NewTracker()
}

// registerInstances serves the live replicas to viewers: addresses of the
// control plane, no tenant's data.
func (m *Migrator) registerInstances(r *auth.Router) {
	for _, p := range instancePaths {
		r.Handle("GET "+p, auth.RoleViewer, http.Handler(m.peers))
	}
}

// runInstances publishes this replica's heartbeats and follows every
// replica's (within the last LiveIntervals of this replica's interval at
// start) until ctx is done.
func (m *Migrator) runInstances(ctx context.Context) []func() error {
	cfg := m.beat.Config()
	subject := queue.NewSubjects(m.cfg.Broker.Stack).All(m.cfg.DefaultTenant, queue.RoleInstances)
	window := instances.LiveIntervals * cfg.HeartbeatInterval
	log := m.log.With("component", "instances")
	return []func() error{
		func() error { return m.beat.Run(ctx) },
		func() error { return m.peers.Follow(ctx, m.conn, subject, window, log) },
	}
}
