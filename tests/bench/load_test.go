//go:build bench

package bench

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/tests/harness"
)

// loadRates are the paced points of TestTailsAtLoad, jobs per second.
var loadRates = []int{1000, 2000, 5000}

// loadSeconds is how long each point submits.
const loadSeconds = 5

// loadWarmUp is how many jobs run, all at once, before the first point.
const loadWarmUp = 5000

// TestTailsAtLoad paces no-op jobs at each of loadRates for loadSeconds on
// JetStream and records, per point, submit → claimed and submit →
// SUCCEEDED p50/p99, the rate the stack kept up with, and the CPU
// utilisation of each process (CPU time from /proc over the point's wall
// time, from the first submit to the last SUCCEEDED, in cores: 1.0 is one
// core busy the whole time), so that a p99 can be read against the
// saturation of each process. The load generator (this process), the
// stack's sum and the whole machine's busy cores are recorded too: on a
// shared machine the difference went to other work.
func TestTailsAtLoad(t *testing.T) {
	r := newPathRig(t, harness.QueueNATS, nil, map[string]string{"OUTPOST_CONCURRENCY": "64"}, 1)
	// Warm-up, as TestJobPath's paced run has before it: a fresh stack's
	// first thousands of jobs pay for growing heaps, caches and stream
	// blocks, which the first point would otherwise count as load.
	r.burst(loadWarmUp)
	for _, rate := range loadRates {
		t.Run(fmt.Sprintf("at %d jobs per second", rate), func(t *testing.T) {
			name := fmt.Sprintf("load_%dps_", rate)
			n := rate * loadSeconds
			cpuBefore := r.cpu()
			cpuBefore["loadgen"] = cpuTime(t, os.Getpid())
			busyBefore, totalBefore := machineCPU(t)
			start := time.Now()
			ids := pace(rate, n, func() string { return r.submit(&jobsv1.NoopTask{}) })
			submitted := time.Since(start)
			claimed, succeeded := r.latencies(ids, 5*time.Minute)
			elapsed := time.Since(start)
			cpuAfter := r.cpu()
			cpuAfter["loadgen"] = cpuTime(t, os.Getpid())
			busyAfter, totalAfter := machineCPU(t)
			record(name+"submitted_per_s", float64(n)/submitted.Seconds())
			record(name+"completed_per_s", float64(n)/elapsed.Seconds())
			record(name+"submit_to_claimed_p50_ms", ms(percentile(claimed, 50)))
			record(name+"submit_to_claimed_p99_ms", ms(percentile(claimed, 99)))
			record(name+"submit_to_succeeded_p50_ms", ms(percentile(succeeded, 50)))
			record(name+"submit_to_succeeded_p99_ms", ms(percentile(succeeded, 99)))
			var stack float64
			for proc, after := range cpuAfter {
				u := float64(after-cpuBefore[proc]) / float64(elapsed)
				record(name+"cpu_util_"+proc, u)
				if proc != "loadgen" {
					stack += u
				}
			}
			record(name+"cpu_util_stack", stack)
			// The whole machine, in cores: what the stack's processes
			// and the load generator do not use went to others.
			record(name+"cpu_util_machine", float64(runtime.NumCPU())*float64(busyAfter-busyBefore)/float64(totalAfter-totalBefore))
		})
	}
}

// pace calls submit n times at rate per second, catching up on a late
// tick (the ticker's resolution is a millisecond), and returns the ids.
func pace(rate, n int, submit func() string) []string {
	ids := make([]string, 0, n)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for len(ids) < n {
		<-tick.C
		due := min(n, int(time.Since(start).Seconds()*float64(rate))+1)
		for len(ids) < due {
			ids = append(ids, submit())
		}
	}
	return ids
}

// machineCPU returns the busy and total jiffies of all cores, from the
// first line of /proc/stat (busy: all but idle and iowait).
func machineCPU(t *testing.T) (busy, total int64) {
	t.Helper()
	data, err := os.ReadFile("/proc/stat")
	require.NoError(t, err)
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line)[1:]
	for i, f := range fields {
		v, err := strconv.ParseInt(f, 10, 64)
		require.NoError(t, err)
		if i >= 8 { // guest times are counted in user already
			break
		}
		total += v
		if i != 3 && i != 4 {
			busy += v
		}
	}
	return busy, total
}
