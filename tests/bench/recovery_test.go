//go:build bench

package bench

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/natsjs"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/tests/harness"
)

// TestRedispatch kills the runner of a running job with SIGKILL and measures
// how long until another runner reports RUNNING for the next attempt.
func TestRedispatch(t *testing.T) {
	const ackWait = 3 * time.Second
	stack := harness.StartStack(t, harness.StackOptions{Tenant: benchTenant})
	env := map[string]string{"OUTPOST_ACK_WAIT": ackWait.String()}
	runners := map[string]*harness.Process{
		"runner-a": stack.StartRunner("runner-a", env),
		"runner-b": stack.StartRunner("runner-b", env),
	}
	// The statuses are read from their stream with the control plane's
	// credentials, which subscribe to their own inbox only.
	js, err := jetstream.New(stack.NATS.Observer().Conn)
	require.NoError(t, err)
	ctx := context.Background()
	statuses := queue.NewSubjects("").AllJobStatus(benchTenant)
	stream, err := js.StreamNameBySubject(ctx, statuses)
	require.NoError(t, err)
	follow, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{statuses}})
	require.NoError(t, err)

	type claim struct {
		runner  string
		attempt uint32
		at      time.Time
	}
	claims := make(chan claim, 4)
	cc, err := follow.Consume(func(m jetstream.Msg) {
		st := &jobsv1.JobStatus{}
		if proto.Unmarshal(m.Data(), st) == nil && st.GetState() == jobsv1.JobState_JOB_STATE_RUNNING {
			claims <- claim{st.GetRunnerId(), st.GetEnvelope().GetAttempt(), time.Now()}
		}
	})
	require.NoError(t, err)
	defer cc.Stop()

	c := stack.Client()
	c.Submit(map[string]any{"pool": "default", "task": map[string]any{"noop": map[string]any{"sleep": "60s"}}})
	first := <-claims
	require.EqualValues(t, 1, first.attempt)
	killed := time.Now()
	runners[first.runner].Kill()

	select {
	case second := <-claims:
		require.EqualValues(t, 2, second.attempt)
		require.NotEqual(t, first.runner, second.runner)
		redispatch := second.at.Sub(killed)
		record("redispatch_after_kill_s", redispatch.Seconds())
		record("redispatch_ack_wait_s", ackWait.Seconds())
		record("redispatch_minus_ack_wait_ms", ms(redispatch-ackWait))
	case <-time.After(4 * ackWait):
		t.Fatal("the killed runner's job was never re-dispatched")
	}
}

// TestTenants measures one embedded broker holding 5,000 tenants: the
// memory of the broker process and how long it takes to restart, in the
// per-tenant layout (a stream set per tenant) and the shared layout.
func TestTenants(t *testing.T) {
	n := 5000
	if v := os.Getenv("OUTPOST_BENCH_TENANTS"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	for _, layout := range []natsjs.Layout{natsjs.LayoutShared, natsjs.LayoutPerTenant} {
		t.Run(string(layout), func(t *testing.T) {
			broker, url := startBroker(t)
			ctx := context.Background()
			conn, err := natsjs.Connect(ctx, natsjs.Config{URL: url, Layout: layout, Name: "bench", Credentials: broker.creds})
			require.NoError(t, err)
			defer conn.Close()

			// A byte limit reserves that much of the server's storage per
			// stream up front, so 5,000 tenants are given a message limit.
			limits := queue.TenantLimits{MaxMessages: 100_000}
			start := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			errs := make(chan error, 8)
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1); i <= int64(n); i = next.Add(1) {
						if err := conn.EnsureTenant(ctx, fmt.Sprintf("t%05d", i), limits); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			require.NoError(t, <-errs)
			prefix := "tenants_" + string(layout) + "_"
			record(prefix+"provision_s", time.Since(start).Seconds())
			record(prefix+"broker_rss_mib", rssMiB(t, broker.Pid()))
			conn.Close()

			broker.Stop(time.Minute)
			start = time.Now()
			broker.Restart()
			harness.WaitReady(t, broker.HealthURL(), 5*time.Minute)
			record(prefix+"broker_restart_s", time.Since(start).Seconds())
			record(prefix+"broker_rss_after_restart_mib", rssMiB(t, broker.Pid()))
		})
	}
}

// cpuTime is the user + system CPU time of a process, from /proc (in clock
// ticks of 10ms).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	// Fields after the command name, which is in parentheses.
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+2:]))
	utime, err := strconv.Atoi(fields[11])
	require.NoError(t, err)
	stime, err := strconv.Atoi(fields[12])
	require.NoError(t, err)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func rssMiB(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, err := strconv.Atoi(strings.Fields(line)[1])
			require.NoError(t, err)
			return float64(kb) / 1024
		}
	}
	t.Fatal("no VmRSS")
	return 0
}
