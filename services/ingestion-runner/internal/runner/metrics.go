package runner

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Outcome labels of jobs_finished_total and job_duration_seconds.
const (
	outcomeSucceeded = "succeeded"
	outcomeFailed    = "failed"
	outcomeRetrying  = "retrying"
	outcomeTimedOut  = "timed_out"
	outcomeCancelled = "cancelled"
	// outcomeRequeued: handed back to the queue because this runner shut
	// down.
	outcomeRequeued = "requeued"
	// outcomeExhausted: arrived after its last attempt and was
	// dead-lettered without running.
	outcomeExhausted = "exhausted"
	// outcomeSuperseded: the attempt outlived its delivery's ack wait
	// (this runner was paused or cut off) and the job went to another
	// attempt; it was stopped and neither reported nor settled.
	outcomeSuperseded = "superseded"
)

// Metrics are the runner's Prometheus metrics.
type Metrics struct {
	JobsStarted  prometheus.Counter
	JobsFinished *prometheus.CounterVec
	JobDuration  *prometheus.HistogramVec
	JobsRunning  prometheus.Gauge
	Redeliveries prometheus.Counter
	// DuplicateDeliveries counts deliveries of a job this runner was
	// running already; they are held, not run twice.
	DuplicateDeliveries prometheus.Counter
	// FinishedRedeliveries counts deliveries of a dispatch this runner
	// had already run to a reported end; they are acked, not run again.
	FinishedRedeliveries prometheus.Counter
	MalformedMessages    *prometheus.CounterVec
	LogLinesSent         prometheus.Counter
	// RefusedJobs counts jobs dead-lettered unrun because their signature
	// did not verify, by reason (signing.Reason).
	RefusedJobs *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg when it is not
// nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		JobsStarted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_runner_jobs_started_total",
			Help: "Job attempts this runner started.",
		}),
		JobsFinished: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_runner_jobs_finished_total",
			Help: "Job attempts this runner settled, by outcome.",
		}, []string{"outcome"}),
		JobDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "outpost_runner_job_duration_seconds",
			Help:    "How long job attempts ran, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2.5, 14), // 50ms .. ~3h
		}, []string{"outcome"}),
		JobsRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "outpost_runner_jobs_running",
			Help: "Job attempts running now.",
		}),
		Redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_runner_redeliveries_total",
			Help: "Job deliveries seen with an attempt above 1 (retries and recoveries from lost runners).",
		}),
		DuplicateDeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_runner_duplicate_deliveries_total",
			Help: "Deliveries of a job this runner was already running; held until that attempt ended instead of run twice.",
		}),
		FinishedRedeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_runner_finished_redeliveries_total",
			Help: "Deliveries of a job dispatch this runner had already run and reported as ended (its settle was lost); acked without running again.",
		}),
		MalformedMessages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_malformed_messages_total",
			Help: "Messages that could not be decoded, by subject role; work items among them are dead-lettered.",
		}, []string{"role"}),
		LogLinesSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "outpost_runner_log_lines_sent_total",
			Help: "Job log lines published in LogChunk events.",
		}),
		RefusedJobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "outpost_runner_refused_jobs_total",
			Help: "Jobs dead-lettered without running because their signature did not verify, by reason (unsigned, bad_signature, expired, unknown_key, wrong_tenant, wrong_scope, invalid).",
		}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.JobsStarted, m.JobsFinished, m.JobDuration, m.JobsRunning,
			m.Redeliveries, m.DuplicateDeliveries, m.FinishedRedeliveries, m.MalformedMessages, m.LogLinesSent, m.RefusedJobs)
	}
	return m
}
