package dispatch

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"
)

// A pass after the first reads the last pass's records over about half the
// time between passes, never slower than minListRate, the first listBurst
// at once.
func TestListPace(t *testing.T) {
	tests := []struct {
		name   string
		listed int
		every  time.Duration
		want   rate.Limit
	}{
		{name: "empty bucket", listed: 0, every: 5 * time.Second, want: minListRate},
		{name: "a few thousand", listed: 4_000, every: 5 * time.Second, want: minListRate},
		{name: "seven thousand", listed: 7_000, every: 5 * time.Second, want: 2_800},
		{name: "ten thousand", listed: 10_000, every: 5 * time.Second, want: 4_000},
		{name: "a million", listed: 1_000_000, every: 5 * time.Second, want: 400_000},
		{name: "short interval", listed: 1_000, every: 100 * time.Millisecond, want: 20_000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := listPace(tc.listed, tc.every)
			require.InDelta(t, float64(tc.want), float64(p.Limit()), 1e-6)
			require.Equal(t, listBurst, p.Burst())
		})
	}
}
