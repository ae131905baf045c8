//go:build bench

// Package bench measures Outpost against its raw substrate in one run:
// raw JetStream publish and consume+ack beside the whole job path, and the
// broker's cost per tenant. It is not part of `make test`; run it with
// `make bench`, which writes the figures to bench/results/latest.json.
package bench

import (
	"sort"
	"time"

	"github.com/outposthq/outpost/tests/harness"
)

// results collects the figures of every benchmark; TestMain writes them.
var results = harness.NewResults()

func record(name string, v float64) { results.Record(name, v) }

func note(name, text string) { results.Note(name, text) }

// recordRatios derives the figures that compare two measurements, once
// every test has run (tests run in file order, not in the order of the
// comparison).
func recordRatios() {
	ratios := []struct{ name, num, den string }{
		{"path_jobs_per_s_ratio_to_raw_consume_ack", "path_jobs_per_s", "raw_consume_ack_msgs_per_s"},
		{"watch_sync_ratio_to_raw_list_watch", "watch_sync_s", "raw_list_watch_sync_s"},
	}
	for _, r := range ratios {
		n, _ := results.Figure(r.num)
		if d, _ := results.Figure(r.den); n > 0 && d > 0 {
			record(r.name, n/d)
		}
	}
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
