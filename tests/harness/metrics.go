package harness

import (
	"bufio"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Metric sums every sample of a Prometheus metric family at base/metrics.
func Metric(t testing.TB, base, name string) float64 {
	t.Helper()
	var sum float64
	for _, v := range MetricBy(t, base, name, "") {
		sum += v
	}
	return sum
}

// TryMetric is Metric returning its error instead of failing the test, for
// the conditions of require.Eventually.
func TryMetric(base, name string) (float64, error) {
	by, err := ScrapeBy(base, name, "")
	var sum float64
	for _, v := range by {
		sum += v
	}
	return sum, err
}

// MetricBy sums the samples of a Prometheus metric family at base/metrics
// by the value of one label ("" for samples without it), e.g. the requests
// of outpost_sqs_requests_total by "operation".
func MetricBy(t testing.TB, base, name, label string) map[string]float64 {
	t.Helper()
	out, err := ScrapeBy(base, name, label)
	require.NoError(t, err)
	return out
}

// ScrapeBy is MetricBy that returns its error instead of failing the test,
// for conditions that testify's Eventually and Never run on their own
// goroutine (which may outlive the test).
func ScrapeBy(base, name, label string) (map[string]float64, error) {
	resp, err := http.Get(base + "/metrics") //nolint:noctx // test scrape
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", base, err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		if rest != "" && rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		fields := strings.Fields(line)
		v, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			return nil, fmt.Errorf("scrape %s: %s: %w", base, line, err)
		}
		key := ""
		if label != "" {
			for _, sep := range []string{"{", ","} {
				if _, after, ok := strings.Cut(rest, sep+label+`="`); ok {
					key, _, _ = strings.Cut(after, `"`)
					break
				}
			}
		}
		out[key] += v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("scrape %s: %w", base, err)
	}
	return out, nil
}
