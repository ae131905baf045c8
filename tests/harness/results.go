package harness

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"
)

// Results are the figures of one benchmark or chaos run, written as JSON to
// bench/results.
type Results struct {
	When    time.Time          `json:"when"`
	Machine string             `json:"machine"`
	Figures map[string]float64 `json:"figures"`
	Notes   map[string]string  `json:"notes,omitempty"`

	mu sync.Mutex
}

// NewResults returns empty results.
func NewResults() *Results {
	return &Results{Figures: map[string]float64{}, Notes: map[string]string{}}
}

// Record keeps a figure and prints it as the benchmarks do ("name value").
func (r *Results) Record(name string, v float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Figures[name] = v
	fmt.Printf("%-48s %14.3f\n", name, v)
}

// Figure returns the figure recorded as name.
func (r *Results) Figure(name string) (float64, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.Figures[name]
	return v, ok
}

// Note keeps a text beside the figures (e.g. the seed's schedule).
func (r *Results) Note(name, text string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Notes[name] = text
}

// Write writes the results as JSON to path, over the figures of the same
// names already there.
func (r *Results) Write(path string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	// A run of one case keeps the figures of the other cases in the file.
	if data, err := os.ReadFile(path); err == nil {
		var old Results
		if json.Unmarshal(data, &old) == nil {
			for k, v := range old.Figures {
				if _, ok := r.Figures[k]; !ok {
					r.Figures[k] = v
				}
			}
			for k, v := range old.Notes {
				if _, ok := r.Notes[k]; !ok {
					r.Notes[k] = v
				}
			}
		}
	}
	r.When = time.Now().UTC()
	r.Machine = fmt.Sprintf("%s/%s, %d CPUs", runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
