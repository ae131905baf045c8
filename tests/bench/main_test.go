//go:build bench

package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/outposthq/outpost/libs/kubetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := kubetest.StopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "stop shared kube-apiserver:", err)
	}
	recordRatios()
	out := os.Getenv("OUTPOST_BENCH_OUT")
	if out == "" {
		out = "../../bench/results/latest.json" // the repository's bench/results
	}
	if err := results.Write(out); err != nil {
		fmt.Fprintln(os.Stderr, "write results:", err)
		code = 1
	}
	os.Exit(code)
}
