package presence

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// SeriesBound is how long after its last heartbeat a watcher keeps its
// outpost_watcher_last_seen_timestamp_seconds series, so that replaced
// replicas do not pile up series for the day the tracker remembers them.
const SeriesBound = time.Hour

var (
	watchersDesc = prometheus.NewDesc("outpost_watchers",
		"Watcher replicas heard from in the last day, by tenant, zone and state: live (a heartbeat within 3 of its intervals), stopped (its last heartbeat said it was stopping) or lost (silent for longer).",
		[]string{"tenant", "zone", "state"}, nil)
	watcherSeenDesc = prometheus.NewDesc("outpost_watcher_last_seen_timestamp_seconds",
		"Unix time of the watcher's last heartbeat; the series goes away an hour after it.",
		[]string{"tenant", "zone", "watcher"}, nil)
)

// Collector reports outpost_watchers and
// outpost_watcher_last_seen_timestamp_seconds at scrape time from the
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
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- watchersDesc
	ch <- watcherSeenDesc
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	now := c.now()
	for tenant, t := range c.trackers() {
		for zone, ws := range t.Watchers(now) {
			counts := map[string]int{StateLive: 0, StateStopped: 0, StateLost: 0}
			for _, w := range ws {
				counts[w.State]++
				if now.Sub(w.LastSeen) <= SeriesBound {
					ch <- prometheus.MustNewConstMetric(watcherSeenDesc, prometheus.GaugeValue,
						float64(w.LastSeen.UnixMilli())/1e3, tenant, zone, w.ID)
				}
			}
			for state, n := range counts {
				ch <- prometheus.MustNewConstMetric(watchersDesc, prometheus.GaugeValue, float64(n), tenant, zone, state)
			}
		}
	}
}
