//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/queue/sqs"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/tests/harness"
)

const benchTenant = "bench"

// sqsSubmitters bounds the SubmitJob publishes in flight on SQS (each
// waits for its batch to be sent).
const sqsSubmitters = 256

// pathRig is a running stack plus a NATS connection that observes what the
// scheduler records, and a publisher that submits jobs on the stack's
// queue (JetStream or SQS) without going through the services.
type pathRig struct {
	t       *testing.T
	queue   string
	stack   *harness.Stack
	runners []*harness.Process
	nc      *nats.Conn
	js      jetstream.JetStream
	sqs     *sqs.Broker   // SQS stacks: submits
	sqsSem  chan struct{} // SQS stacks: bounds submits in flight
	subs    queue.Subjects
	seq     int

	mu        sync.Mutex
	submitted map[string]time.Time
	// answered holds how long the API took to answer each REST submit.
	answered map[string]time.Duration
	running  map[string]chan time.Time // job → started_at of the record (RUNNING's envelope time)
	done     map[string]chan time.Time // job → SUCCEEDED recorded in KV (observed time)
}

// newPathRig starts a stack on queueKind (harness.QueueNATS or
// harness.QueueSQS) with runners runners; env goes to every service.
func newPathRig(t *testing.T, queueKind string, env, runnerEnv map[string]string, runners int) *pathRig {
	t.Helper()
	// Info logs per job would be part of the figures; keep them out.
	schedulerEnv := map[string]string{"OUTPOST_LOG_LEVEL": "warn"}
	maps.Copy(schedulerEnv, env)
	renv := maps.Clone(env)
	if renv == nil {
		renv = map[string]string{}
	}
	maps.Copy(renv, runnerEnv)
	stack := harness.StartStack(t, harness.StackOptions{
		Tenant: benchTenant, Queue: queueKind, RunnerEnv: renv, SchedulerEnv: schedulerEnv,
	})
	var procs []*harness.Process
	for i := range runners {
		procs = append(procs, stack.StartRunner(fmt.Sprintf("runner-%d", i+1), nil))
	}
	// The control plane's credentials: they may submit and read the
	// scheduler's records.
	nc := stack.NATS.Observer().Conn
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(2048))
	require.NoError(t, err)
	r := &pathRig{
		t: t, queue: queueKind, stack: stack, runners: procs, nc: nc, js: js, subs: queue.NewSubjects(""),
		submitted: map[string]time.Time{}, answered: map[string]time.Duration{}, running: map[string]chan time.Time{}, done: map[string]chan time.Time{},
	}
	if queueKind == harness.QueueSQS {
		// The submitter batches like the services do.
		var linger time.Duration
		if v, ok := env["OUTPOST_SQS_BATCH_LINGER"]; ok {
			linger, err = time.ParseDuration(v)
			require.NoError(t, err)
		}
		r.sqs = stack.SQSBroker(sqs.Config{BatchLinger: linger})
		r.sqsSem = make(chan struct{}, sqsSubmitters)
	}
	r.observe()
	return r
}

// watchJobs follows the updates of tenant's job records in the scheduler's
// KV bucket, from now on, until the test ends.
func (r *pathRig) watchJobs(tenant string) jetstream.KeyWatcher {
	t := r.t
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var kv jetstream.KeyValue
	var err error
	require.Eventually(t, func() bool {
		kv, err = r.js.KeyValue(ctx, "OUTPOST_jobs_"+tenant)
		return err == nil
	}, 30*time.Second, 50*time.Millisecond, "jobs bucket never appeared")
	w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
	require.NoError(t, err)
	return w
}

// observe follows the scheduler's KV bucket: the started_at of a record
// (the RUNNING status's envelope time) and when it is recorded SUCCEEDED.
// Both backends keep the records in JetStream.
func (r *pathRig) observe() {
	w := r.watchJobs(benchTenant)
	go func() {
		for e := range w.Updates() {
			if e == nil {
				continue
			}
			var rec struct {
				State     string     `json:"state"`
				StartedAt *time.Time `json:"started_at"`
			}
			if json.Unmarshal(e.Value(), &rec) != nil {
				continue
			}
			if rec.StartedAt != nil {
				if ch := r.chanFor(r.running, e.Key()); ch != nil {
					select {
					case ch <- *rec.StartedAt:
					default:
					}
				}
			}
			if rec.State != "SUCCEEDED" {
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
	if r.sqs != nil {
		r.sqsSem <- struct{}{}
		go func() {
			defer func() { <-r.sqsSem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := r.sqs.Publish(ctx, msg); err != nil {
				r.t.Errorf("submit %s on SQS: %v", id, err)
			}
		}()
		return id
	}
	_, err = r.js.PublishMsgAsync(nm)
	require.NoError(r.t, err)
	return id
}

// burst submits n no-op jobs at once and waits until every one is
// recorded SUCCEEDED.
func (r *pathRig) burst(n int) {
	ids := make([]string, 0, n)
	for range n {
		ids = append(ids, r.submit(&jobsv1.NoopTask{}))
	}
	r.latencies(ids, 5*time.Minute)
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

// TestJobPath runs no-op jobs through the whole path on JetStream:
// queue-driven submit, scheduler record and dispatch, runner, RUNNING and
// SUCCEEDED recorded.
func TestJobPath(t *testing.T) {
	r := newPathRig(t, harness.QueueNATS, nil, map[string]string{"OUTPOST_CONCURRENCY": "64"}, 1)
	runJobPath(t, r, jetStreamPlan)
}

// pathPlan is what runJobPath measures, and the names it records under.
type pathPlan struct {
	// prefix starts every figure's name: "" for JetStream (the names
	// the figures have always had), "sqs_" for SQS.
	prefix string
	// burst is how many jobs the throughput run submits at once.
	burst int
	// inflight is how many jobs the one-in-flight run submits one by one.
	inflight int
	// rate and seconds pace the last run.
	rate, seconds int
	// pacedOnly skips the burst and one-in-flight runs.
	pacedOnly bool
	// env is given to every service of the stack.
	env map[string]string
}

var jetStreamPlan = pathPlan{burst: 5000, inflight: 300, rate: 1000, seconds: 5}

// runJobPath measures throughput (a burst of jobs), latency with one job in
// flight and latency at a steady rate on a rig.
func runJobPath(t *testing.T, r *pathRig, p pathPlan) {
	// Warm-up: streams, queues, consumers and connections exist before
	// measuring.
	r.latencies([]string{r.submit(&jobsv1.NoopTask{})}, time.Minute)

	if !p.pacedOnly {
		runBurstAndOne(t, r, p)
	}
	t.Run(fmt.Sprintf("at %d jobs per second", p.rate), func(t *testing.T) {
		n := p.rate * p.seconds
		ids := make([]string, 0, n)
		reqBefore := r.sqsRequests()
		tick := time.NewTicker(time.Second / time.Duration(p.rate))
		defer tick.Stop()
		for range n {
			<-tick.C
			ids = append(ids, r.submit(&jobsv1.NoopTask{}))
		}
		claimed, succeeded := r.latencies(ids, 2*time.Minute)
		name := fmt.Sprintf("%slatency_%dps_", p.prefix, p.rate)
		record(name+"submit_to_claimed_p50_ms", ms(percentile(claimed, 50)))
		record(name+"submit_to_claimed_p99_ms", ms(percentile(claimed, 99)))
		record(name+"submit_to_succeeded_p50_ms", ms(percentile(succeeded, 50)))
		record(name+"submit_to_succeeded_p99_ms", ms(percentile(succeeded, 99)))
		r.recordRequests(name, reqBefore, n)
	})
}

// runBurstAndOne measures throughput (a burst of jobs) and latency with
// one job in flight.
func runBurstAndOne(t *testing.T, r *pathRig, p pathPlan) {
	t.Run("throughput", func(t *testing.T) {
		n := p.burst
		before := r.storedMessages()
		cpuBefore := r.cpu()
		reqBefore := r.sqsRequests()
		ids := make([]string, 0, n)
		waitProfiles := startProfiles(t, r, p.prefix)
		start := time.Now()
		for range n {
			ids = append(ids, r.submit(&jobsv1.NoopTask{}))
		}
		r.latencies(ids, 5*time.Minute)
		elapsed := time.Since(start)
		waitProfiles()
		record(p.prefix+"path_jobs_per_s", float64(n)/elapsed.Seconds())
		record(p.prefix+"path_broker_writes_per_job", float64(r.storedMessages()-before)/float64(n))
		for name, after := range r.cpu() {
			record(p.prefix+"path_cpu_us_per_job_"+name, float64(after-cpuBefore[name])/float64(time.Microsecond)/float64(n))
		}
		r.recordRequests(p.prefix+"path_", reqBefore, n)
	})

	t.Run("one in flight", func(t *testing.T) {
		var claimed, succeeded []time.Duration
		reqBefore := r.sqsRequests()
		for range p.inflight {
			c, s := r.latencies([]string{r.submit(&jobsv1.NoopTask{})}, time.Minute)
			claimed, succeeded = append(claimed, c...), append(succeeded, s...)
		}
		name := p.prefix + "latency_1_inflight_"
		record(name+"submit_to_claimed_p50_ms", ms(percentile(claimed, 50)))
		record(name+"submit_to_claimed_p99_ms", ms(percentile(claimed, 99)))
		record(name+"submit_to_succeeded_p50_ms", ms(percentile(succeeded, 50)))
		record(name+"submit_to_succeeded_p99_ms", ms(percentile(succeeded, 99)))
		r.recordRequests(name, reqBefore, p.inflight)
	})
}

// sqsRequests is how many SQS requests were made so far, by operation: the
// outpost_sqs_requests_total of the scheduler and the runners, and the
// submitter's own. Nil on JetStream.
func (r *pathRig) sqsRequests() map[string]float64 {
	if r.sqs == nil {
		return nil
	}
	out := map[string]float64{}
	add := func(m map[string]float64, who string) {
		for op, v := range m {
			out[op] += v
			out[who] += v
		}
	}
	add(harness.MetricBy(r.t, r.stack.Ops, "outpost_sqs_requests_total", "operation"), "@services")
	for _, p := range r.runners {
		add(harness.MetricBy(r.t, p.Ops, "outpost_sqs_requests_total", "operation"), "@services")
	}
	sub := map[string]float64{}
	for op, v := range r.sqs.Requests() {
		sub[op] = float64(v)
	}
	add(sub, "@submitter")
	return out
}

// recordRequests records the SQS requests per job since before: in all
// (the services' and the submitter's), the services' alone, and by
// operation. Nothing on JetStream.
func (r *pathRig) recordRequests(name string, before map[string]float64, jobs int) {
	if r.sqs == nil {
		return
	}
	// The services' last batches are sent a linger after the last record
	// was written; wait until the counts settle.
	var after map[string]float64
	require.Eventually(r.t, func() bool {
		prev := after
		after = r.sqsRequests()
		return prev != nil && prev["@services"] == after["@services"]
	}, 10*time.Second, 200*time.Millisecond)
	var total float64
	for op, v := range after {
		d := (v - before[op]) / float64(jobs)
		switch op {
		case "@services":
			record(name+"sqs_requests_per_job_services", d)
		case "@submitter":
			record(name+"sqs_requests_per_job_submitter", d)
		default:
			total += d
			if d > 0 {
				record(name+"sqs_requests_per_job_op_"+snake(op), d)
			}
		}
	}
	record(name+"sqs_requests_per_job", total)
}

// snake turns an SQS operation name into a figure name: "ReceiveMessage"
// becomes "receive_message".
func snake(op string) string {
	var b strings.Builder
	for i, c := range op {
		if unicode.IsUpper(c) {
			if i > 0 {
				b.WriteByte('_')
			}
			c = unicode.ToLower(c)
		}
		b.WriteRune(c)
	}
	return b.String()
}
