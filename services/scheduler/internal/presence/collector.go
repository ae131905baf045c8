package presence

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var runnersDesc = prometheus.NewDesc("outpost_runners",
	"Runners whose last heartbeat is within the presence window, by tenant and pool.",
	[]string{"tenant", "pool"}, nil)

// Collector reports outpost_runners{tenant,pool} at scrape time from the
// trackers that trackers returns (by tenant).
type Collector struct {
	trackers func() map[string]*Tracker
	now      func() time.Time
}

// NewCollector returns a collector over the trackers of every tenant.
func NewCollector(trackers func() map[string]*Tracker) *Collector {
	return &Collector{trackers: trackers, now: time.Now}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) { ch <- runnersDesc }

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	for tenant, t := range c.trackers() {
		for pool, n := range t.Counts(now) {
			ch <- prometheus.MustNewConstMetric(runnersDesc, prometheus.GaugeValue, float64(n), tenant, pool)
		}
	}
}
