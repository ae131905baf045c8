package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/tests/harness"
)

// Reports are what the runners reported for each job on the status stream:
// by attempt, the states reported (a status is published with the dedupe
// id job-attempt-STATE, so each appears once per attempt).
type Reports map[string]map[int][]string

// ReadStatusStream reads every JobStatus of tenant kept on the broker at
// url, from the first, as the user of the credentials file creds (one of
// the control plane's). A cluster that has just lost a node may leave a
// read unanswered while it elects leaders: the read starts over then, for
// up to a minute.
func ReadStatusStream(ctx context.Context, url, tenant, creds string) (Reports, error) {
	b := backoff.NewExponentialBackOff(backoff.WithInitialInterval(200*time.Millisecond), backoff.WithMaxElapsedTime(time.Minute))
	var out Reports
	err := backoff.Retry(func() error {
		var err error
		out, err = readStatusStream(ctx, url, tenant, creds)
		return err
	}, backoff.WithContext(b, ctx))
	return out, err
}

func readStatusStream(ctx context.Context, url, tenant, creds string) (Reports, error) {
	opts, err := harness.ClientOptions(creds)
	if err != nil {
		return nil, backoff.Permanent(err)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	subject := queue.NewSubjects("").AllJobStatus(tenant)
	stream, err := js.StreamNameBySubject(ctx, subject)
	if err != nil {
		return nil, fmt.Errorf("stream of %s: %w", subject, err)
	}
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		return nil, fmt.Errorf("consumer on %s: %w", stream, err)
	}
	out := Reports{}
	// Bounded: a stream of a million statuses is far beyond any run.
	for range 10_000 {
		batch, err := cons.Fetch(200, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return nil, fmt.Errorf("fetch from %s: %w", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			st := &jobsv1.JobStatus{}
			if err := proto.Unmarshal(m.Data(), st); err != nil {
				return nil, fmt.Errorf("status on %s: %w", m.Subject(), err)
			}
			byAttempt := out[st.GetJobId()]
			if byAttempt == nil {
				byAttempt = map[int][]string{}
				out[st.GetJobId()] = byAttempt
			}
			a := int(st.GetEnvelope().GetAttempt())
			if st.GetStartedAt() != nil {
				// An outcome that carries its start stands for the
				// RUNNING the runner did not send (a short attempt).
				byAttempt[a] = append(byAttempt[a], "RUNNING")
			}
			byAttempt[a] = append(byAttempt[a], strings.TrimPrefix(st.GetState().String(), "JOB_STATE_"))
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, fmt.Errorf("fetch from %s: %w", stream, err)
		}
		if n == 0 {
			return out, nil
		}
	}
	return nil, backoff.Permanent(errors.New("status stream longer than the reader's bound"))
}

// Outcome sums up a run: the figures and, for each way a job can go wrong,
// the jobs that did, with what was seen.
type Outcome struct {
	Submitted int
	// Lost are accepted jobs without a record or not terminal.
	Lost map[string]string
	// Double are jobs with more than one terminal transition in their
	// record's history.
	Double map[string]string
	// DoubleReported are jobs whose recorded attempt reported more than
	// one terminal state on the status stream.
	DoubleReported map[string]string
	// Inconsistent are jobs whose attempts do not add up.
	Inconsistent map[string]string
	// States counts the jobs by final state.
	States map[string]int
	// Redeliveries sums the deliveries past the first over the jobs.
	Redeliveries int
	// RanTwice are jobs that reported RUNNING for more than one attempt;
	// MaxRuns is the most attempts one job ran.
	RanTwice map[string]string
	MaxRuns  int
}

// Check compares the records of the accepted jobs with the status stream.
// maxAttempt bounds a job's attempts (the runners' max deliveries).
func Check(accepted []string, records map[string]harness.Job, reports Reports, maxAttempt int) Outcome {
	o := Outcome{
		Submitted: len(accepted), Lost: map[string]string{}, Double: map[string]string{},
		DoubleReported: map[string]string{}, Inconsistent: map[string]string{},
		States: map[string]int{}, RanTwice: map[string]string{},
	}
	for _, id := range accepted {
		rec, ok := records[id]
		if !ok {
			o.Lost[id] = "no record (404) for an accepted job"
			continue
		}
		o.States[rec.State]++
		if !isTerminal(rec.State) {
			o.Lost[id] = fmt.Sprintf("still %s at attempt %d on %q; history %s; reports %v", rec.State, rec.Attempt, rec.RunnerID, history(rec), reports[id])
			continue
		}
		var terminal []string
		last := 0
		for _, h := range rec.History {
			if isTerminal(h.State) {
				terminal = append(terminal, fmt.Sprintf("%s@%d", h.State, h.Attempt))
			}
			if h.Attempt < last {
				o.Inconsistent[id] = "history goes back from attempt " + fmt.Sprint(last) + ": " + history(rec)
			}
			last = max(last, h.Attempt)
		}
		if len(terminal) != 1 {
			o.Double[id] = fmt.Sprintf("%d terminal transitions %v; history %s", len(terminal), terminal, history(rec))
		}
		if want := fmt.Sprintf("%s@%d", rec.State, rec.Attempt); len(terminal) > 0 && terminal[len(terminal)-1] != want {
			o.Inconsistent[id] = fmt.Sprintf("record says %s, its last terminal transition %s", want, terminal[len(terminal)-1])
		}
		if rec.Attempt < 1 || rec.Attempt > maxAttempt || rec.Attempt < last {
			o.Inconsistent[id] = fmt.Sprintf("attempt %d (history up to %d, bound %d): %s", rec.Attempt, last, maxAttempt, history(rec))
		}

		byAttempt := reports[id]
		var ends []string
		for _, st := range byAttempt[rec.Attempt] {
			if isTerminal(st) {
				ends = append(ends, st)
			}
		}
		switch {
		case len(ends) > 1:
			o.DoubleReported[id] = fmt.Sprintf("attempt %d reported %v", rec.Attempt, ends)
		case rec.State == "SUCCEEDED" || rec.State == "FAILED":
			if len(ends) == 0 || ends[0] != rec.State {
				o.Inconsistent[id] = fmt.Sprintf("record %s at attempt %d, the attempt reported %v; reports %v", rec.State, rec.Attempt, byAttempt[rec.Attempt], byAttempt)
			}
		}
		var runs []int
		for a, states := range byAttempt {
			if slices.Contains(states, "RUNNING") {
				runs = append(runs, a)
			}
		}
		slices.Sort(runs)
		// Deliveries past the first: up to the recorded attempt, or to a
		// later one that ran after the job had ended.
		o.Redeliveries += max(rec.Attempt-1, 0)
		if len(runs) > 0 && runs[len(runs)-1] > rec.Attempt {
			o.Redeliveries += runs[len(runs)-1] - rec.Attempt
		}
		o.MaxRuns = max(o.MaxRuns, len(runs))
		if len(runs) > 1 {
			o.RanTwice[id] = fmt.Sprintf("ran attempts %v, recorded %s at %d", runs, rec.State, rec.Attempt)
		}
	}
	return o
}

func history(j harness.Job) string {
	parts := make([]string, 0, len(j.History))
	for _, h := range j.History {
		p := fmt.Sprintf("%s@%d", h.State, h.Attempt)
		if h.RunnerID != "" {
			p += "/" + h.RunnerID
		}
		if h.Reason != "" {
			p += fmt.Sprintf("(%s)", h.Reason)
		}
		parts = append(parts, p+" "+h.At.Format("15:04:05.000"))
	}
	return "[" + strings.Join(parts, ", ") + "]"
}
