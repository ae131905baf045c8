package dispatch

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/kv"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
	"github.com/outposthq/outpost/services/scheduler/internal/results"
)

// A terminal status waits for the result batches it names, a bounded
// number of deliveries; a status without a count (an older runner) or of
// an attempt whose results a later attempt replaced does not wait.
func TestTerminalStatusAwaitsResults(t *testing.T) {
	tests := []struct {
		name     string
		batches  uint32
		stored   map[int][]uint64 // attempt -> first_seq of the stored batches, in order
		attempt  uint32
		delivery int
		want     jobs.State
		settled  string
		retried  float64
		missing  float64
	}{
		{name: "no count: applied at once", batches: 0, attempt: 1, delivery: 1, want: jobs.StateSucceeded, settled: "ack"},
		{name: "all stored", batches: 2, stored: map[int][]uint64{1: {1, 3}}, attempt: 1, delivery: 1, want: jobs.StateSucceeded, settled: "ack"},
		{name: "none stored: waits", batches: 2, attempt: 1, delivery: 1, want: jobs.StateRunning, settled: "nak", retried: 1},
		{name: "one of two stored: waits", batches: 2, stored: map[int][]uint64{1: {1}}, attempt: 1, delivery: 3, want: jobs.StateRunning, settled: "nak", retried: 1},
		{name: "only an older attempt's stored: waits", batches: 1, stored: map[int][]uint64{1: {1}}, attempt: 2, delivery: 1, want: jobs.StateRunning, settled: "nak", retried: 1},
		{name: "bound reached: applied with results missing", batches: 2, stored: map[int][]uint64{1: {1}}, attempt: 1, delivery: 4, want: jobs.StateSucceeded, settled: "ack", missing: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.e.opts.ResultsWait = 4
			f.t.Results = results.NewStore(kv.NewMemory(), kv.NewMemory())
			f.create(t, "j")
			ctx := context.Background()
			running := f.statusDelivery(t, "j", jobsv1.JobState_JOB_STATE_RUNNING, tt.attempt)
			f.e.applyStatusBatch(ctx, f.t, nil, []*pending{{d: running}})
			require.Equal(t, "ack", running.settled())
			for attempt, seqs := range tt.stored {
				for _, seq := range seqs {
					require.NoError(t, f.t.Results.Add(ctx, &ingestv1.JobRecords{JobId: "j", FirstSeq: seq,
						Records: []*ingestv1.MetadataRecord{{Urn: "urn:x", Name: "x"}}}, attempt, t0))
				}
			}

			d := f.delivery(t, f.subjs.JobStatus("acme", "j"), &jobsv1.JobStatus{
				Envelope: events.NewEnvelope("acme", tt.attempt, "", ""), JobId: "j", State: jobsv1.JobState_JOB_STATE_SUCCEEDED,
				RunnerId: "r1", AttemptToken: f.token(t, "j"), Result: &jobsv1.JobResult{RecordBatches: tt.batches},
			}, tt.delivery)
			f.e.applyStatusBatch(ctx, f.t, nil, []*pending{{d: d}})

			require.Equal(t, tt.settled, d.settled())
			rec, err := f.t.Jobs.Get(ctx, "j")
			require.NoError(t, err)
			require.Equal(t, tt.want, rec.State)
			require.Equal(t, tt.retried, testutil.ToFloat64(f.m.ResultsWaits.WithLabelValues("retried")))
			require.Equal(t, tt.missing, testutil.ToFloat64(f.m.ResultsWaits.WithLabelValues("incomplete")))
		})
	}
}

// A status held back for its results is applied on the delivery that
// finds them stored.
func TestTerminalStatusAppliedOnceResultsStored(t *testing.T) {
	f := newFixture(t)
	f.t.Results = results.NewStore(kv.NewMemory(), kv.NewMemory())
	f.create(t, "j")
	ctx := context.Background()
	f.e.applyStatusBatch(ctx, f.t, nil, []*pending{{d: f.statusDelivery(t, "j", jobsv1.JobState_JOB_STATE_RUNNING, 1)}})
	status := func(delivery int) *fakeDelivery {
		return f.delivery(t, f.subjs.JobStatus("acme", "j"), &jobsv1.JobStatus{
			Envelope: events.NewEnvelope("acme", 1, "", ""), JobId: "j", State: jobsv1.JobState_JOB_STATE_FAILED,
			RunnerId: "r1", AttemptToken: f.token(t, "j"), Result: &jobsv1.JobResult{ExitCode: 1, RecordBatches: 1},
		}, delivery)
	}
	first := status(1)
	f.e.applyStatusBatch(ctx, f.t, nil, []*pending{{d: first}})
	require.Equal(t, "nak", first.settled())

	require.NoError(t, f.t.Results.Add(ctx, &ingestv1.JobRecords{JobId: "j", FirstSeq: 1,
		Checks: []*ingestv1.CheckResult{{Name: "rows", Outcome: ingestv1.CheckOutcome_CHECK_OUTCOME_FAIL}}}, 1, t0))
	second := status(2)
	f.e.applyStatusBatch(ctx, f.t, nil, []*pending{{d: second}})
	require.Equal(t, "ack", second.settled())
	rec, err := f.t.Jobs.Get(ctx, "j")
	require.NoError(t, err)
	require.Equal(t, jobs.StateFailed, rec.State)
}
