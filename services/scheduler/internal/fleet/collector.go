package fleet

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// RunnerSeriesBound is how long after its last heartbeat a runner keeps
// its outpost_runner_last_seen_timestamp_seconds series: runners replaced
// by others (a rollout, an autoscaler) do not pile up series for the day
// the presence tracker remembers them.
const RunnerSeriesBound = time.Hour

// scrapeTimeout bounds the reads of one scrape.
const scrapeTimeout = 10 * time.Second

// minInterval is how long a computed view is reused: several Prometheus
// servers (or a refreshing dashboard) may scrape at once.
const minInterval = 5 * time.Second

var (
	backlogDesc = prometheus.NewDesc("outpost_pool_backlog",
		"QUEUED jobs of the pool (waiting for a runner, held, gated or waiting for a retry).",
		[]string{"tenant", "pool"}, nil)
	oldestDesc = prometheus.NewDesc("outpost_pool_oldest_queued_seconds",
		"Age of the pool's longest-waiting QUEUED job since it last entered QUEUED (0 without a backlog).",
		[]string{"tenant", "pool"}, nil)
	poolRunnersDesc = prometheus.NewDesc("outpost_pool_runners",
		"Runners of the pool by state: live (a heartbeat within runners.presence_window) or lost (heard from in the last day, silent for longer than the window).",
		[]string{"tenant", "pool", "state"}, nil)
	pausedDesc = prometheus.NewDesc("outpost_pool_paused",
		"1 while the pool is paused (its new jobs are held), else 0.",
		[]string{"tenant", "pool"}, nil)
	lastSeenDesc = prometheus.NewDesc("outpost_runner_last_seen_timestamp_seconds",
		"Unix time of the runner's last heartbeat; the series goes away an hour after it.",
		[]string{"tenant", "pool", "runner"}, nil)
	scrapeErrorsDesc = prometheus.NewDesc("outpost_pool_scrape_errors",
		"Tenants whose pools could not be read for the last computed view.",
		nil, nil)
)

// Collector reports the pool and runner gauges at scrape time from the
// tenants tenants returns.
type Collector struct {
	tenants func() []*tenants.Tenant
	tracker *Tracker
	now     func() time.Time
	log     *slog.Logger

	mu       sync.Mutex
	at       time.Time
	pools    []Pool
	failures int
}

// NewCollector returns a collector over the tenants that reads their
// records through tracker.
func NewCollector(ts func() []*tenants.Tenant, tracker *Tracker, log *slog.Logger) *Collector {
	return &Collector{tenants: ts, tracker: tracker, now: time.Now, log: log}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{backlogDesc, oldestDesc, poolRunnersDesc, pausedDesc, lastSeenDesc, scrapeErrorsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	pools, failures := c.view(now)
	// The job records are read at most every minInterval; runners and ages
	// are current at every scrape, so a silent runner is lost as soon as
	// the presence window has passed.
	ts := c.tenants()
	fresh := make(map[string]map[string]Counts, len(ts))
	for _, t := range ts {
		fresh[t.Name] = RunnerCounts(t, now)
	}
	seen := map[[2]string]bool{}
	for _, p := range pools {
		seen[[2]string{p.Tenant, p.Pool}] = true
		n := fresh[p.Tenant][p.Pool]
		p.Runners, p.RunnersLost = n.Live, n.Lost
		if p.OldestQueuedAt != nil {
			p.OldestQueuedSeconds = max(now.Sub(*p.OldestQueuedAt).Seconds(), 0)
		}
		c.pool(ch, p)
	}
	for tenant, counts := range fresh {
		for pool, n := range counts {
			if !seen[[2]string{tenant, pool}] {
				c.pool(ch, Pool{Tenant: tenant, Pool: pool, Runners: n.Live, RunnersLost: n.Lost})
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorsDesc, prometheus.GaugeValue, float64(failures))
	// Runners' heartbeats are read at every scrape: they are in memory.
	for _, t := range ts {
		for pool := range t.Presence.Counts(now) {
			for _, r := range t.Presence.Pool(pool, now) {
				if now.Sub(r.LastSeen) > RunnerSeriesBound {
					continue
				}
				ch <- prometheus.MustNewConstMetric(lastSeenDesc, prometheus.GaugeValue,
					float64(r.LastSeen.UnixMilli())/1e3, t.Name, pool, r.ID)
			}
		}
	}
}

func (c *Collector) pool(ch chan<- prometheus.Metric, p Pool) {
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(p.Backlog), p.Tenant, p.Pool)
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, p.OldestQueuedSeconds, p.Tenant, p.Pool)
	ch <- prometheus.MustNewConstMetric(poolRunnersDesc, prometheus.GaugeValue, float64(p.Runners), p.Tenant, p.Pool, "live")
	ch <- prometheus.MustNewConstMetric(poolRunnersDesc, prometheus.GaugeValue, float64(p.RunnersLost), p.Tenant, p.Pool, "lost")
	ch <- prometheus.MustNewConstMetric(pausedDesc, prometheus.GaugeValue, b2f(p.Paused), p.Tenant, p.Pool)
}

// view returns the pools of every tenant, computed again when the last
// view is older than minInterval. A tenant that cannot be read is left out
// and counted.
func (c *Collector) view(now time.Time) ([]Pool, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && now.Sub(c.at) < minInterval && now.After(c.at) {
		return c.pools, c.failures
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	var (
		all      []Pool
		failures int
	)
	for _, t := range c.tenants() {
		ps, err := c.tracker.Pools(ctx, t, now)
		if err != nil {
			failures++
			c.log.Warn("pool metrics not computed", "tenant", t.Name, "error", err)
			continue
		}
		all = append(all, ps...)
	}
	c.at, c.pools, c.failures = now, all, failures
	return all, failures
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
