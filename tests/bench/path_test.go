//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/tests/harness"
)

const benchTenant = "bench"

// pathRig is a running stack plus a NATS connection that submits jobs and
// observes what the services write, without going through them.
type pathRig struct {
	t       *testing.T
	stack   *harness.Stack
	runners []*harness.Process
	nc      *nats.Conn
	js      jetstream.JetStream
	subs    queue.Subjects
	seq     int

	mu        sync.Mutex
	submitted map[string]time.Time
	running   map[string]chan time.Time // job → RUNNING seen (envelope time)
	done      map[string]chan time.Time // job → SUCCEEDED recorded in KV (observed time)
}

func newPathRig(t *testing.T, runnerEnv map[string]string, runners int) *pathRig {
	t.Helper()
	// Info logs per job would be part of the figures; keep them out.
	stack := harness.StartStack(t, harness.StackOptions{
		Tenant: benchTenant, RunnerEnv: runnerEnv,
		SchedulerEnv: map[string]string{"OUTPOST_LOG_LEVEL": "warn"},
	})
	var procs []*harness.Process
	for i := range runners {
		procs = append(procs, stack.StartRunner(fmt.Sprintf("runner-%d", i+1), nil))
	}
	nc, err := nats.Connect(stack.BrokerURL)
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2048))
	require.NoError(t, err)
	r := &pathRig{
		t: t, stack: stack, runners: procs, nc: nc, js: js, subs: queue.NewSubjects(""),
		submitted: map[string]time.Time{}, running: map[string]chan time.Time{}, done: map[string]chan time.Time{},
	}
	r.observe()
	return r
}

// observe follows RUNNING statuses on the broker and SUCCEEDED records in
// the scheduler's KV bucket.
func (r *pathRig) observe() {
	t := r.t
	_, err := r.nc.Subscribe(r.subs.AllJobStatus(benchTenant), func(m *nats.Msg) {
		st := &jobsv1.JobStatus{}
		if proto.Unmarshal(m.Data, st) != nil || st.GetState() != jobsv1.JobState_JOB_STATE_RUNNING {
			return
		}
		if ch := r.chanFor(r.running, st.GetJobId()); ch != nil {
			select {
			case ch <- st.GetEnvelope().GetOccurredAt().AsTime():
			default:
			}
		}
	})
	require.NoError(t, err)

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var kv jetstream.KeyValue
	require.Eventually(t, func() bool {
		kv, err = r.js.KeyValue(ctx, "OUTPOST_jobs_"+benchTenant)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "jobs bucket never appeared")
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	require.NoError(t, err)
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var rec struct {
				State string `json:"state"`
			}
			if json.Unmarshal(e.Value(), &rec) != nil || rec.State != "SUCCEEDED" {
				continue
			}
			if ch := r.chanFor(r.done, e.Key()); ch != nil {
				select {
				case ch <- time.Now():
				default:
				}
			}
		}
	}()
}

func (r *pathRig) chanFor(m map[string]chan time.Time, id string) chan time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return m[id]
}

// submit publishes a SubmitJob for a no-op job (queue-driven submission)
// and returns its id.
func (r *pathRig) submit(noop *jobsv1.NoopTask) string {
	r.mu.Lock()
	r.seq++
	id := fmt.Sprintf("b%07d", r.seq)
	r.running[id] = make(chan time.Time, 1)
	r.done[id] = make(chan time.Time, 1)
	r.mu.Unlock()

	msg, err := events.Encode(r.subs.Submit(benchTenant), &jobsv1.SubmitJob{
		Envelope: events.NewEnvelope(benchTenant, 0, id, ""),
		JobId:    id,
		Spec:     &jobsv1.JobSpec{Pool: "default", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: noop}}},
	}, "")
	require.NoError(r.t, err)
	nm := &nats.Msg{Subject: msg.Subject, Data: msg.Data, Header: nats.Header{}}
	for k, v := range msg.Header {
		nm.Header.Set(k, v)
	}
	r.mu.Lock()
	r.submitted[id] = time.Now()
	r.mu.Unlock()
	_, err = r.js.PublishMsgAsync(nm)
	require.NoError(r.t, err)
	return id
}

func (r *pathRig) submittedAt(id string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.submitted[id]
}

// latencies waits for every job and returns submit→RUNNING (claimed) and
// submit→SUCCEEDED-recorded durations.
func (r *pathRig) latencies(ids []string, timeout time.Duration) (claimed, succeeded []time.Duration) {
	deadline := time.After(timeout)
	for _, id := range ids {
		at := r.submittedAt(id)
		select {
		case ts := <-r.chanFor(r.running, id):
			claimed = append(claimed, ts.Sub(at))
		case <-deadline:
			r.t.Fatalf("job %s never claimed", id)
		}
		select {
		case ts := <-r.chanFor(r.done, id):
			succeeded = append(succeeded, ts.Sub(at))
		case <-deadline:
			r.t.Fatalf("job %s never recorded SUCCEEDED", id)
		}
	}
	return claimed, succeeded
}

// cpu returns the CPU time (user + system) each process of the stack has
// used so far.
func (r *pathRig) cpu() map[string]time.Duration {
	out := map[string]time.Duration{"broker": cpuTime(r.t, r.stack.Broker.Pid()), "scheduler": cpuTime(r.t, r.stack.Scheduler.Pid())}
	for _, p := range r.runners {
		out["runner"] += cpuTime(r.t, p.Pid())
	}
	return out
}

// storedMessages sums the last sequence of every stream (KV buckets
// included): the broker's writes.
func (r *pathRig) storedMessages() uint64 {
	var total uint64
	lister := r.js.ListStreams(context.Background())
	for info := range lister.Info() {
		total += info.State.LastSeq
	}
	require.NoError(r.t, lister.Err())
	return total
}

// TestJobPath runs no-op jobs through the whole path: queue-driven submit,
// scheduler record and dispatch, runner, RUNNING and SUCCEEDED recorded.
func TestJobPath(t *testing.T) {
	r := newPathRig(t, map[string]string{"OUTPOST_CONCURRENCY": "64"}, 1)

	// Warm-up: streams, consumers and connections exist before measuring.
	r.latencies([]string{r.submit(&jobsv1.NoopTask{})}, time.Minute)

	t.Run("throughput", func(t *testing.T) {
		const n = 5000
		before := r.storedMessages()
		cpuBefore := r.cpu()
		ids := make([]string, 0, n)
		start := time.Now()
		for range n {
			ids = append(ids, r.submit(&jobsv1.NoopTask{}))
		}
		r.latencies(ids, 5*time.Minute)
		elapsed := time.Since(start)
		record("path_jobs_per_s", n/elapsed.Seconds())
		record("path_broker_writes_per_job", float64(r.storedMessages()-before)/n)
		for name, after := range r.cpu() {
			record("path_cpu_us_per_job_"+name, float64(after-cpuBefore[name])/float64(time.Microsecond)/n)
		}
		if raw := results.Figures["raw_consume_ack_msgs_per_s"]; raw > 0 {
			record("path_jobs_per_s_ratio_to_raw_consume_ack", results.Figures["path_jobs_per_s"]/raw)
		}
	})

	t.Run("one in flight", func(t *testing.T) {
		var claimed, succeeded []time.Duration
		for range 300 {
			c, s := r.latencies([]string{r.submit(&jobsv1.NoopTask{})}, time.Minute)
			claimed, succeeded = append(claimed, c...), append(succeeded, s...)
		}
		record("latency_1_inflight_submit_to_claimed_p50_ms", ms(percentile(claimed, 50)))
		record("latency_1_inflight_submit_to_claimed_p99_ms", ms(percentile(claimed, 99)))
		record("latency_1_inflight_submit_to_succeeded_p50_ms", ms(percentile(succeeded, 50)))
		record("latency_1_inflight_submit_to_succeeded_p99_ms", ms(percentile(succeeded, 99)))
	})

	t.Run("at 1000 jobs per second", func(t *testing.T) {
		const rate, seconds = 1000, 5
		ids := make([]string, 0, rate*seconds)
		tick := time.NewTicker(time.Second / rate)
		defer tick.Stop()
		for range rate * seconds {
			<-tick.C
			ids = append(ids, r.submit(&jobsv1.NoopTask{}))
		}
		claimed, succeeded := r.latencies(ids, 2*time.Minute)
		record("latency_1000ps_submit_to_claimed_p50_ms", ms(percentile(claimed, 50)))
		record("latency_1000ps_submit_to_claimed_p99_ms", ms(percentile(claimed, 99)))
		record("latency_1000ps_submit_to_succeeded_p50_ms", ms(percentile(succeeded, 50)))
		record("latency_1000ps_submit_to_succeeded_p99_ms", ms(percentile(succeeded, 99)))
	})
}
