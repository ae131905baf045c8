//go:build bench

package bench

import (
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	code := m.Run()
	recordRatios()
	out := os.Getenv("OUTPOST_BENCH_OUT")
	if out == "" {
		out = "../../bench/results/latest.json" // the repository's bench/results
	}
	if err := writeResults(out); err != nil {
		fmt.Fprintln(os.Stderr, "write results:", err)
		code = 1
	}
	os.Exit(code)
}
