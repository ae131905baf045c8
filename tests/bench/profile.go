//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/service"
)

// profileDirEnv names a folder: when set (and OUTPOST_OPS_PPROF=true, which
// the harness hands to every process), the throughput run takes a CPU
// profile of the broker, the scheduler and each runner from their ops
// ports, written there as <prefix>broker.pprof, <prefix>scheduler.pprof and
// <prefix>runner-N.pprof.
const profileDirEnv = "OUTPOST_BENCH_PROFILE_DIR"

// profileSecondsEnv is how long each profile lasts (default 4 s: within a
// 5,000-job burst on a two-core machine).
const profileSecondsEnv = "OUTPOST_BENCH_PROFILE_SECONDS"

// startProfiles starts the CPU profiles when asked for, and returns a
// function that waits for them to be written.
func startProfiles(t *testing.T, r *pathRig, prefix string) (wait func()) {
	dir := os.Getenv(profileDirEnv)
	if dir == "" || os.Getenv(service.EnvPprof) != "true" {
		return func() {}
	}
	secs := 4
	if v := os.Getenv(profileSecondsEnv); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err)
		secs = n
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	targets := map[string]string{
		prefix + "scheduler": r.stack.Ops,
		prefix + "broker":    strings.TrimSuffix(r.stack.NATS.Readyz[0], "/readyz"),
	}
	for i, p := range r.runners {
		targets[fmt.Sprintf("%srunner-%d", prefix, i+1)] = p.Ops
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(targets))
	for name, ops := range targets {
		wg.Go(func() {
			errs <- fetchProfile(ops, secs, filepath.Join(dir, name+".pprof"))
		})
	}
	return func() {
		wg.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
	}
}

// fetchProfile writes a CPU profile of secs seconds from ops to path.
func fetchProfile(ops string, secs int, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(secs+30)*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", ops, secs), nil)
	if err != nil {
		return fmt.Errorf("profile request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("profile from %s: %w", ops, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("profile from %s: status %d", ops, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}
