package instances

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/version"
	instancesv1 "github.com/outposthq/outpost/proto/outpost/instances/v1"
)

// stopTimeout bounds the last heartbeat (stopping) at shutdown.
const stopTimeout = 2 * time.Second

// Publisher publishes a message (queue.Broker has this method).
type Publisher interface {
	Publish(ctx context.Context, msg queue.Message) error
}

// Heartbeater publishes one replica's heartbeats.
type Heartbeater struct {
	cfg      Config
	service  string
	tenant   string
	subject  string
	pub      Publisher
	ready    func() error
	log      *slog.Logger
	started  time.Time
	failures int
}

// NewHeartbeater returns the heartbeater of a replica of service with cfg
// (resolved: ID and BaseURL set), publishing with pub on tenant's
// instances subject; ready is the replica's /readyz check.
func NewHeartbeater(cfg Config, subjects queue.Subjects, tenant, service string, pub Publisher, ready func() error, log *slog.Logger) *Heartbeater {
	if log == nil {
		log = slog.Default()
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = DefaultInterval
	}
	return &Heartbeater{
		cfg: cfg, service: service, tenant: tenant, pub: pub, ready: ready, log: log, started: time.Now(),
		subject: subjects.Instance(tenant, service, Token(cfg.ID)),
	}
}

// Config is the replica's resolved configuration.
func (h *Heartbeater) Config() Config { return h.cfg }

// Run publishes a heartbeat at once and then every interval until ctx is
// done, then a last one saying the replica is stopping. A heartbeat that
// cannot be published is logged and the next one tried on time: a replica
// the broker does not hear from simply drops out of the lists.
func (h *Heartbeater) Run(ctx context.Context) error {
	t := time.NewTicker(h.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		h.beat(ctx, false)
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), stopTimeout)
			defer cancel()
			h.beat(sctx, true)
			return nil
		case <-t.C:
		}
	}
}

func (h *Heartbeater) beat(ctx context.Context, stopping bool) {
	pctx, cancel := context.WithTimeout(ctx, h.cfg.HeartbeatInterval)
	defer cancel()
	err := h.publish(pctx, stopping)
	switch {
	case err == nil:
		if h.failures > 0 {
			h.log.Info("instance heartbeat published again", "failures", h.failures)
		}
		h.failures = 0
	case ctx.Err() != nil && !stopping:
		// Shutting down: the stopping heartbeat follows.
	default:
		h.failures++
		// The first failure and then one in ten: a broker outage would
		// otherwise log on every interval.
		if h.failures%10 == 1 {
			h.log.Warn("instance heartbeat not published", "subject", h.subject, "failures", h.failures, "error", err)
		}
	}
}

func (h *Heartbeater) publish(ctx context.Context, stopping bool) error {
	hb := &instancesv1.InstanceHeartbeat{
		Envelope:   events.NewEnvelope(h.tenant, 0, "", ""),
		Id:         h.cfg.ID,
		Service:    h.service,
		BaseUrl:    h.cfg.BaseURL,
		Ready:      true,
		Version:    version.Get(),
		IntervalMs: h.cfg.HeartbeatInterval.Milliseconds(),
		StartedAt:  timestamppb.New(h.started),
		Stopping:   stopping,
	}
	if h.ready != nil {
		if err := h.ready(); err != nil {
			hb.Ready, hb.NotReadyReason = false, err.Error()
		}
	}
	msg, err := events.Encode(h.subject, hb, "")
	if err != nil {
		return err
	}
	if err := h.pub.Publish(ctx, msg); err != nil {
		return fmt.Errorf("publish instance heartbeat: %w", err)
	}
	return nil
}
