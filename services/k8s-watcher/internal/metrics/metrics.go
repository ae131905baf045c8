// Package metrics holds the k8s-watcher's Prometheus metrics, registered
// once and shared by the lease handler, the account watches and the
// operations.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the watcher's instruments.
type Metrics struct {
	// AccountsHeld is the number of account leases this replica holds.
	AccountsHeld prometheus.Gauge
	// Activations counts activations by outcome ("activated", "failed").
	Activations *prometheus.CounterVec
	// DeltasPublished counts ObjectDeltas by type ("added", "updated",
	// "deleted").
	DeltasPublished *prometheus.CounterVec
	// PublishErrors counts failed publishes of deltas (each is retried).
	PublishErrors prometheus.Counter
	// Operations counts operations by kind ("apply", "delete", "scale")
	// and outcome ("ok", "error").
	Operations *prometheus.CounterVec
	// Malformed counts messages that could not be decoded.
	Malformed prometheus.Counter
	// Refused counts leases and operations dead-lettered unused because
	// their signature did not verify, by type ("lease", "operation") and
	// reason (signing.Reason).
	Refused *prometheus.CounterVec
	// LeasesSuperseded counts accounts given up because their lease's
	// delivery was superseded (the replica was paused or cut off from the
	// broker past the ack wait).
	LeasesSuperseded prometheus.Counter
}

// New creates the metrics and registers them with reg (nil: not registered,
// for tests).
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		AccountsHeld: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_watcher_accounts_held", Help: "Account leases this watcher holds.",
		}),
		Activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_watcher_activations_total", Help: "Account activations by outcome.",
		}, []string{"outcome"}),
		DeltasPublished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_watcher_deltas_published_total", Help: "Object deltas published, by type.",
		}, []string{"type"}),
		PublishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_watcher_publish_errors_total", Help: "Object delta publishes that failed and were retried.",
		}),
		Operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_watcher_operations_total", Help: "Operations handled, by kind and outcome.",
		}, []string{"kind", "outcome"}),
		Malformed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_malformed_messages_total", Help: "Messages that could not be decoded.",
		}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_watcher_refused_messages_total",
			Help: "Leases and operations dead-lettered unused because their signature did not verify, by type and reason (unsigned, bad_signature, expired, unknown_key, wrong_tenant, wrong_scope, invalid).",
		}, []string{"type", "reason"}),
		LeasesSuperseded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_watcher_leases_superseded_total",
			Help: "Accounts given up because their lease lapsed while this watcher was paused or cut off from the broker.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.AccountsHeld, m.Activations, m.DeltasPublished, m.PublishErrors, m.Operations, m.Malformed, m.Refused, m.LeasesSuperseded)
	}
	return m
}
