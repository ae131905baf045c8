package chaos

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/tests/harness"
)

// results collects the figures of every case; TestMain writes them to
// OUTPOST_CHAOS_OUT when it is set (make chaos, make bench).
var results = harness.NewResults()

func TestMain(m *testing.M) {
	code := m.Run()
	if out := os.Getenv("OUTPOST_CHAOS_OUT"); out != "" {
		if err := results.Write(out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

const (
	tenant = "default"
	// maxDeliveries bounds a job's attempts: the runners' max deliveries.
	maxDeliveries = 10
	readyTimeout  = 90 * time.Second
)

// runnerEnv makes a killed runner's jobs come back quickly.
var runnerEnv = map[string]string{
	"OUTPOST_ACK_WAIT":           "2s",
	"OUTPOST_HEARTBEAT_INTERVAL": "1s",
	"OUTPOST_CONCURRENCY":        "4",
	"OUTPOST_MAX_DELIVERIES":     strconv.Itoa(maxDeliveries),
}

// size is the run's size: OUTPOST_CHAOS_JOBS jobs (200 by default, the
// case `make test` runs; `make chaos` runs 1,000), submitted over span
// while kills processes are killed, and the seed of the kill schedule
// (OUTPOST_CHAOS_SEED, or drawn from the clock and logged).
type size struct {
	jobs  int
	kills int
	span  time.Duration
	seed  uint64
}

func sizeFromEnv(t *testing.T) size {
	t.Helper()
	// A seed below 1e9 prints exactly among the figures.
	s := size{jobs: 200, seed: uint64(time.Now().UnixNano() % 1_000_000_000)}
	if v := os.Getenv("OUTPOST_CHAOS_JOBS"); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, "OUTPOST_CHAOS_JOBS")
		require.Positive(t, n, "OUTPOST_CHAOS_JOBS")
		s.jobs = n
	}
	if v := os.Getenv("OUTPOST_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, "OUTPOST_CHAOS_SEED")
		s.seed = n
	}
	// Two kills of each of the three kinds per 250 jobs, at least two.
	s.kills = 3 * max(2, s.jobs/250)
	s.span = min(max(time.Duration(s.jobs)*100*time.Millisecond, 30*time.Second), 100*time.Second)
	return s
}

// system is a running Outpost under chaos: its API, the broker to read the
// status stream from, what the driver may kill, and the readiness
// endpoints that must answer 200 at the end.
type system struct {
	client  *harness.Client
	broker  *harness.NATS
	targets []Target
	readyz  []string
	// brokers are the broker processes and their /readyz, in a cluster.
	brokers      []*harness.Process
	brokerReadyz []string
}

// processTarget kills one of procs (rng picks) and restarts it, waiting
// for the readiness URL of the one killed.
func processTarget(t *testing.T, kind string, procs []*harness.Process, readyz []string) Target {
	byName := map[string]int{}
	for i, p := range procs {
		byName[p.Name] = i
	}
	return Target{
		Kind: kind,
		Kill: func(rng *rand.Rand) string {
			p := procs[rng.IntN(len(procs))]
			p.Kill()
			return p.Name
		},
		Restart: func(name string) {
			i := byName[name]
			procs[i].Restart()
			harness.WaitReady(t, readyz[i], readyTimeout)
		},
	}
}

// The broker is one outpost-broker process with its data on disk.
func singleBroker(t *testing.T) system {
	s := harness.StartStack(t, harness.StackOptions{Tenant: tenant, RunnerEnv: runnerEnv})
	r1 := s.StartRunner("runner-1", nil)
	r2 := s.StartRunner("runner-2", nil)
	return system{
		client: s.Client(),
		broker: s.NATS,
		targets: []Target{
			processTarget(t, "scheduler", []*harness.Process{s.Scheduler}, []string{s.API + "/readyz"}),
			processTarget(t, "runner", []*harness.Process{r1, r2}, []string{r1.Ops + "/readyz", r2.Ops + "/readyz"}),
			{
				Kind: "broker",
				Kill: func(*rand.Rand) string { s.Broker.Kill(); return s.Broker.Name },
				// RestartBroker kills (the broker is already dead), starts
				// it again on its port and data, and waits for its /readyz.
				Restart: func(string) { s.RestartBroker() },
			},
		},
		// The scheduler is ready only with the broker up.
		readyz: []string{s.API + "/readyz", r1.Ops + "/readyz", r2.Ops + "/readyz"},
	}
}

// The broker is a 3-node JetStream cluster of outpost-broker processes and
// the services keep 3 replicas of every stream.
func cluster(t *testing.T) system {
	s := harness.StartStack(t, harness.StackOptions{Tenant: tenant, RunnerEnv: runnerEnv, Nodes: 3})
	runners := []*harness.Process{s.StartRunner("runner-1", nil), s.StartRunner("runner-2", nil)}
	return system{
		client: s.Client(),
		broker: s.NATS,
		targets: []Target{
			processTarget(t, "scheduler", []*harness.Process{s.Scheduler}, []string{s.API + "/readyz"}),
			processTarget(t, "runner", runners, []string{runners[0].Ops + "/readyz", runners[1].Ops + "/readyz"}),
			processTarget(t, "broker", s.NATS.Nodes, s.NATS.Readyz),
		},
		readyz:       append([]string{s.API + "/readyz", runners[0].Ops + "/readyz", runners[1].Ops + "/readyz"}, s.NATS.Readyz...),
		brokers:      s.NATS.Nodes,
		brokerReadyz: s.NATS.Readyz,
	}
}

func TestChaosSingleBroker(t *testing.T) { runChaos(t, "chaos_single", singleBroker(t)) }

func TestChaosCluster(t *testing.T) { runChaos(t, "chaos_cluster", cluster(t)) }

// runChaos submits the jobs while the driver kills and restarts, waits for
// them to drain, records the figures under prefix and checks that every
// job ended once.
func runChaos(t *testing.T, prefix string, sys system) {
	sz := sizeFromEnv(t)
	d := NewDriver(sz.seed, sz.kills, sz.span, sys.targets)
	t.Logf("chaos %s: %d jobs over %s, %d kills, %s (OUTPOST_CHAOS_SEED=%d repeats it)", prefix, sz.jobs, sz.span, sz.kills, d.Plan(), sz.seed)
	results.Note(prefix+"_schedule", d.Plan())

	ctx, cancel := context.WithTimeout(context.Background(), sz.span+5*time.Minute)
	defer cancel()
	sub := &Submitter{Client: sys.client, Prefix: fmt.Sprintf("chaos-%d", sz.seed%1_000_000)}
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { sub.Run(ctx, sz.jobs, sz.span) })
	d.Run(start)
	wg.Wait()
	for _, e := range d.Events {
		t.Log(e)
	}
	submitted := time.Since(start)

	drain, pending := Drain(sys.client, 3*time.Minute)
	t.Logf("submitted %d jobs in %s (%d refused, %d retried submissions); drained in %s, %d pending",
		len(sub.Accepted), submitted.Round(time.Millisecond), len(sub.Refused), sub.Retries.Load(), drain.Round(time.Millisecond), pending)
	for _, u := range sys.readyz {
		harness.WaitReady(t, u, readyTimeout)
	}

	records, err := Records(sys.client, sub.Accepted)
	require.NoError(t, err)
	reports, err := ReadStatusStream(ctx, sys.broker.URL, tenant, sys.broker.ObserverCreds())
	require.NoError(t, err)
	o := Check(sub.Accepted, records, reports, maxDeliveries)

	results.Record(prefix+"_seed", float64(sz.seed))
	results.Record(prefix+"_jobs", float64(o.Submitted))
	results.Record(prefix+"_lost", float64(len(o.Lost)))
	results.Record(prefix+"_double", float64(len(o.Double)))
	results.Record(prefix+"_double_reported", float64(len(o.DoubleReported)))
	results.Record(prefix+"_inconsistent", float64(len(o.Inconsistent)))
	results.Record(prefix+"_succeeded", float64(o.States["SUCCEEDED"]))
	results.Record(prefix+"_redeliveries", float64(o.Redeliveries))
	results.Record(prefix+"_jobs_run_twice", float64(len(o.RanTwice)))
	results.Record(prefix+"_max_runs_per_job", float64(o.MaxRuns))
	results.Record(prefix+"_submit_retries", float64(sub.Retries.Load()))
	for _, kind := range d.Kinds() {
		results.Record(prefix+"_kills_"+kind, float64(d.Kills[kind]))
	}
	results.Record(prefix+"_drain_s", drain.Seconds())
	results.Record(prefix+"_total_s", time.Since(start).Seconds())

	for name, bad := range map[string]map[string]string{
		"ran more than one attempt": o.RanTwice, "lost": o.Lost, "recorded twice": o.Double,
		"reported two ends for one attempt": o.DoubleReported, "inconsistent attempts": o.Inconsistent,
	} {
		for _, id := range slices.Sorted(maps.Keys(bad)) {
			t.Logf("%s: %s: %s", name, id, bad[id])
		}
	}
	require.Empty(t, sub.Refused, "submissions refused for good")
	require.Equal(t, sz.jobs, o.Submitted, "every job is accepted in the end")
	require.Empty(t, o.Lost, "lost jobs (seed %d)", sz.seed)
	require.Empty(t, o.Double, "jobs recorded twice (seed %d)", sz.seed)
	require.Empty(t, o.DoubleReported, "attempts that reported two ends (seed %d)", sz.seed)
	require.Empty(t, o.Inconsistent, "jobs with inconsistent attempts (seed %d)", sz.seed)
	for _, kind := range d.Kinds() {
		require.Positive(t, d.Kills[kind], "%s never killed", kind)
	}
}
