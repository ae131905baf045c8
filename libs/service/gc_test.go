package service

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/stretchr/testify/require"
)

// unsetenv unsets key for the test and sets it back after.
func unsetenv(t *testing.T, key string) {
	t.Helper()
	if v, ok := os.LookupEnv(key); ok {
		t.Cleanup(func() { _ = os.Setenv(key, v) })
	}
	require.NoError(t, os.Unsetenv(key))
}

func TestTuneRuntime(t *testing.T) {
	const gib = 1 << 30
	noCgroup := func() (uint64, error) { return 0, memlimit.ErrNoCgroup }
	unreadable := func() (uint64, error) { return 0, fmt.Errorf("read memory.max: %w", os.ErrPermission) }
	tests := []struct {
		name      string
		env       map[string]string
		gcPercent int
		limit     memlimit.Provider
		want      Tuning
		wantLog   string
		wantWarn  bool
	}{
		{name: "the service's target and 90% of the container's limit", gcPercent: 400, limit: memlimit.Limit(gib),
			want: Tuning{GCPercent: 400, MemoryLimit: gib * 9 / 10}, wantLog: `"gc_percent":400,"memory_limit_bytes":966367641`},
		{name: "zero keeps Go's target", limit: memlimit.Limit(gib),
			want: Tuning{GCPercent: 100, MemoryLimit: gib * 9 / 10}},
		{name: "GOGC is kept", env: map[string]string{"GOGC": "50"}, gcPercent: 400, limit: memlimit.Limit(gib),
			want: Tuning{GCPercent: 100, MemoryLimit: gib * 9 / 10}},
		{name: "GOMEMLIMIT is kept", env: map[string]string{"GOMEMLIMIT": "123MiB"}, gcPercent: 400, limit: memlimit.Limit(gib),
			want: Tuning{GCPercent: 400, MemoryLimit: math.MaxInt64}},
		{name: "AUTOMEMLIMIT sets the ratio", env: map[string]string{"AUTOMEMLIMIT": "0.5"}, gcPercent: 400, limit: memlimit.Limit(gib),
			want: Tuning{GCPercent: 400, MemoryLimit: gib / 2}},
		{name: "AUTOMEMLIMIT off", env: map[string]string{"AUTOMEMLIMIT": "off"}, gcPercent: 400, limit: memlimit.Limit(gib),
			want: Tuning{GCPercent: 400, MemoryLimit: math.MaxInt64}},
		{name: "a cgroup without a limit", gcPercent: 400, limit: func() (uint64, error) { return 0, memlimit.ErrNoLimit },
			want: Tuning{GCPercent: 400, MemoryLimit: math.MaxInt64}, wantLog: `"gc_percent":400}`},
		{name: "no cgroup", gcPercent: 400, limit: noCgroup,
			want: Tuning{GCPercent: 400, MemoryLimit: math.MaxInt64}},
		{name: "a limit that cannot be read is reported", gcPercent: 400, limit: unreadable,
			want: Tuning{GCPercent: 400, MemoryLimit: math.MaxInt64}, wantWarn: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The process's own settings, as the runtime read them at
			// start, are put back after each case.
			prevGC := debug.SetGCPercent(100)
			prevLimit := debug.SetMemoryLimit(math.MaxInt64)
			t.Cleanup(func() {
				debug.SetGCPercent(prevGC)
				debug.SetMemoryLimit(prevLimit)
			})
			for _, k := range []string{"GOGC", "GOMEMLIMIT", "AUTOMEMLIMIT"} {
				unsetenv(t, k)
			}
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var buf bytes.Buffer
			got := tuneRuntime(slog.New(slog.NewJSONHandler(&buf, nil)), tt.gcPercent, tt.limit)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.want.GCPercent, debug.SetGCPercent(tt.want.GCPercent), "the collector's target in effect")
			require.Equal(t, tt.want.MemoryLimit, debug.SetMemoryLimit(-1), "the memory limit in effect")
			require.Contains(t, buf.String(), `"msg":"garbage collector tuned"`)
			require.Contains(t, buf.String(), tt.wantLog)
			if tt.wantWarn {
				require.Contains(t, buf.String(), `"msg":"memory limit not set"`)
			} else {
				require.NotContains(t, buf.String(), `"level":"WARN"`)
			}
		})
	}
}
