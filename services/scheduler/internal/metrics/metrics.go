// Package metrics defines the scheduler's Prometheus metrics.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/libs/queue"
)

// Metrics are the scheduler's own metrics. The zero value is not usable;
// use New.
type Metrics struct {
	// Jobs counts transitions into each state (creation counts as QUEUED).
	Jobs *prometheus.CounterVec
	// DispatchLatency observes the time from submission to the first
	// RUNNING.
	DispatchLatency prometheus.Histogram
	// Redeliveries counts jobs reaching RUNNING with attempt > 1.
	Redeliveries prometheus.Counter
	// DeadLetters counts dead-lettered messages the scheduler consumed, by
	// the role they came from and the class of their reason
	// (queue.DeadLetterClass): both bounded sets.
	DeadLetters *prometheus.CounterVec
	// DeadLetterReplays counts dead letters replayed through the API, by
	// role.
	DeadLetterReplays *prometheus.CounterVec
	// Malformed counts messages that did not decode, by subject role.
	Malformed *prometheus.CounterVec
	// Fenced counts status events refused by fencing, by reason.
	Fenced *prometheus.CounterVec
	// StatusEvents counts status events received and StatusWrites the
	// record writes they caused (several events of a job share a write).
	StatusEvents prometheus.Counter
	StatusWrites prometheus.Counter
	// Bridged counts the events copied from SQS into JetStream, by role
	// (job-events for logs, runners for heartbeats); only with the SQS
	// backend.
	Bridged *prometheus.CounterVec
	// ResultsWaits counts terminal statuses that found their attempt's
	// results not all stored, by outcome: retried (the status waits for
	// them) or incomplete (the wait's bound passed: the job ended anyway).
	ResultsWaits *prometheus.CounterVec
	// SubmitsThrottled counts submissions held back by their tenant's
	// limits.max_submits_per_second, by where: api (answered 429) or
	// queue (the SubmitJob waited).
	SubmitsThrottled *prometheus.CounterVec
	// JobsExpired counts the records of finished jobs deleted past their
	// retention (jobs.retention).
	JobsExpired prometheus.Counter
}

// New creates the metrics and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_jobs_total",
			Help: "Job state transitions, by the state entered (job creation counts as QUEUED).",
		}, []string{"state"}),
		DispatchLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "outpost_dispatch_latency_seconds",
			Help:    "Time from job submission to its first RUNNING report.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
		}),
		Redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_redeliveries_total",
			Help: "Jobs that reached RUNNING with an attempt above 1 (retried or redelivered).",
		}),
		DeadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_dead_letters_total",
			Help: "Dead-lettered messages consumed by the scheduler, by the role they were taken from and reason class (max_deliveries, malformed, rejected, redrive, direct).",
		}, []string{"role", "reason"}),
		DeadLetterReplays: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_dead_letter_replays_total",
			Help: "Dead letters republished to their original subject through the API, by role.",
		}, []string{"role"}),
		Malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_malformed_messages_total",
			Help: "Messages that did not decode, by subject role; consumed ones are dead-lettered, heartbeats are skipped.",
		}, []string{"role"}),
		Fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_fenced_events_total",
			Help: "Job status events ignored by fencing, by reason (stale_attempt, terminal, unknown_job, attempt_token: the event did not carry the attempt token of the job's current dispatch and was dead-lettered).",
		}, []string{"reason"}),
		StatusEvents: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_status_events_total",
			Help: "Job status events received.",
		}),
		StatusWrites: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_status_writes_total",
			Help: "Job record writes caused by status events.",
		}),
		Bridged: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_bridged_messages_total",
			Help: "Events copied from SQS into JetStream for their history (logs, heartbeats), by subject role.",
		}, []string{"role"}),
		ResultsWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_terminal_status_results_waits_total",
			Help: "Terminal job statuses that arrived before all their attempt's results were stored, by outcome (retried: the status is applied later; incomplete: the bound passed and the job ended with results missing).",
		}, []string{"outcome"}),
	}
	// The dead letters of the roles a tenant's work comes from start at
	// zero, so that an alert on their increase sees the first one.
	for _, role := range []queue.Role{queue.RoleSubmit, queue.RoleJobs, queue.RoleJobEvents} {
		for _, class := range []string{queue.ClassMaxDeliveries, queue.ClassRedrive, queue.ClassMalformed, queue.ClassDirect, queue.ClassRejected} {
			m.DeadLetters.WithLabelValues(string(role), class)
		}
	}
	m.SubmitsThrottled = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "outpost_submits_throttled_total",
		Help: "Submissions held back by their tenant's limits.max_submits_per_second, by where: api (answered 429) or queue (the SubmitJob waited).",
	}, []string{"via"})
	m.JobsExpired = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "outpost_jobs_expired_total",
		Help: "Records of finished jobs deleted past their retention (jobs.retention).",
	})
	reg.MustRegister(m.Jobs, m.DispatchLatency, m.Redeliveries, m.DeadLetters, m.DeadLetterReplays, m.Malformed, m.Fenced, m.StatusEvents, m.StatusWrites, m.Bridged, m.ResultsWaits, m.SubmitsThrottled, m.JobsExpired)
	return m
}

// DeadLetter counts one dead letter consumed.
func (m *Metrics) DeadLetter(d queue.DeadLetter) {
	m.DeadLetters.WithLabelValues(string(d.Role), d.Class).Inc()
}

// MalformedMessage counts one undecodable message on a subject of role.
func (m *Metrics) MalformedMessage(role queue.Role) { m.Malformed.WithLabelValues(string(role)).Inc() }
