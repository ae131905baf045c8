// Package metrics holds the account-migrator's Prometheus metrics.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the migrator's collectors. The zero value is not usable; a
// nil *Metrics is (every method is a no-op), for tests that do not look.
type Metrics struct {
	accounts    *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	retries     *prometheus.CounterVec
	orphans     *prometheus.CounterVec
	drift       *prometheus.CounterVec
	resyncs     *prometheus.CounterVec
	operations  *prometheus.CounterVec
	poison      *prometheus.CounterVec
	malformed   *prometheus.CounterVec
}

// New registers the metrics on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		accounts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "outpost_accounts", Help: "Kubernetes accounts by tenant and lifecycle state, as of the last reconcile pass.",
		}, []string{"tenant", "state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_account_transitions_total", Help: "Account state transitions stored, by tenant and states.",
		}, []string{"tenant", "from", "to"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_account_retries_total", Help: "Automatic retries of FAILED accounts.",
		}, []string{"tenant"}),
		orphans: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_account_orphans_total", Help: "Accounts that became ORPHANED: no live watcher left in their zone.",
		}, []string{"tenant"}),
		drift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_inventory_drift_total", Help: "Inventory checksums that disagreed with the watch stream.",
		}, []string{"tenant"}),
		resyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_inventory_resyncs_total", Help: "Resync commands sent after repeated checksum mismatches.",
		}, []string{"tenant"}),
		operations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_account_operations_total", Help: "Operations by tenant, type and outcome (submitted, succeeded, failed).",
		}, []string{"tenant", "type", "outcome"}),
		poison: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_account_events_terminated_total", Help: "Malformed watcher events terminated (dead-lettered) without retry.",
		}, []string{"tenant", "consumer"}),
		malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_malformed_messages_total", Help: "Messages that did not decode, by subject role; read ones (watcher heartbeats) are skipped, consumed ones terminated.",
		}, []string{"role"}),
	}
	reg.MustRegister(m.accounts, m.transitions, m.retries, m.orphans, m.drift, m.resyncs, m.operations, m.poison, m.malformed)
	return m
}

// SetAccounts sets the gauge of accounts in state.
func (m *Metrics) SetAccounts(tenant, state string, n int) {
	if m != nil {
		m.accounts.WithLabelValues(tenant, state).Set(float64(n))
	}
}

// Transition counts a stored state change.
func (m *Metrics) Transition(tenant, from, to string) {
	if m == nil || from == to {
		return
	}
	m.transitions.WithLabelValues(tenant, from, to).Inc()
	if to == "ORPHANED" {
		m.orphans.WithLabelValues(tenant).Inc()
	}
}

// Retry counts an automatic retry.
func (m *Metrics) Retry(tenant string) {
	if m != nil {
		m.retries.WithLabelValues(tenant).Inc()
	}
}

// Drift counts a checksum mismatch.
func (m *Metrics) Drift(tenant string) {
	if m != nil {
		m.drift.WithLabelValues(tenant).Inc()
	}
}

// Resync counts a Resync sent.
func (m *Metrics) Resync(tenant string) {
	if m != nil {
		m.resyncs.WithLabelValues(tenant).Inc()
	}
}

// Operation counts an operation event.
func (m *Metrics) Operation(tenant, typ, outcome string) {
	if m != nil {
		m.operations.WithLabelValues(tenant, typ, outcome).Inc()
	}
}

// Poison counts a terminated event.
func (m *Metrics) Poison(tenant, consumer string) {
	if m != nil {
		m.poison.WithLabelValues(tenant, consumer).Inc()
	}
}

// Malformed counts a message of role that did not decode.
func (m *Metrics) Malformed(role string) {
	if m != nil {
		m.malformed.WithLabelValues(role).Inc()
	}
}
