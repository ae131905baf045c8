//go:build bench

// Package bench measures Outpost against its raw substrate in one run:
// raw JetStream publish and consume+ack beside the whole job path, and the
// broker's cost per tenant. It is not part of `make test`; run it with
// `make bench`, which writes the figures to bench/results/latest.json.
package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"
)

// Results are all figures of one run, written as JSON.
type Results struct {
	When    time.Time          `json:"when"`
	Machine string             `json:"machine"`
	Figures map[string]float64 `json:"figures"`
	Notes   map[string]string  `json:"notes,omitempty"`
}

var (
	resultsMu sync.Mutex
	results   = Results{Figures: map[string]float64{}, Notes: map[string]string{}}
)

func record(name string, v float64) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results.Figures[name] = v
	fmt.Printf("%-48s %14.3f\n", name, v)
}

func note(name, text string) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results.Notes[name] = text
}

// recordRatios derives the figures that compare two measurements, once
// every test has run (tests run in file order, not in the order of the
// comparison).
func recordRatios() {
	resultsMu.Lock()
	f := results.Figures
	resultsMu.Unlock()
	ratios := []struct{ name, num, den string }{
		{"path_jobs_per_s_ratio_to_raw_consume_ack", "path_jobs_per_s", "raw_consume_ack_msgs_per_s"},
		{"watch_sync_ratio_to_raw_list_watch", "watch_sync_s", "raw_list_watch_sync_s"},
	}
	for _, r := range ratios {
		if n, d := f[r.num], f[r.den]; n > 0 && d > 0 {
			record(r.name, n/d)
		}
	}
}

func writeResults(path string) error {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results.When = time.Now().UTC()
	results.Machine = fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(results, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
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
