package jobs

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// benchRecord is a command job's record as a status update finds it.
func benchRecord() *Record {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	spec := &jobsv1.JobSpec{Pool: "default", Labels: map[string]string{"team": "data"}, Timeout: durationpb.New(time.Hour),
		Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{Command: "sh", Args: []string{"-c", "echo hello"}, Env: map[string]string{"A": "b"}}}}}
	r := NewRecord("job-1", "default", spec, now, false)
	r.TraceContext = map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	r.State, r.Attempt, r.Started, r.RunnerID, r.StartedAt = StateRunning, 1, 1, "runner-1", &now
	r.record(&Transition{State: StateRunning, Attempt: 1, RunnerID: "runner-1", At: now}, 20)
	return r
}

// What a status update of a remembered record saves: the decode, against
// the copy the store's cache makes instead.
func BenchmarkRecordDecode(b *testing.B) {
	raw, err := benchRecord().Marshal()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(raw); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRecordClone(b *testing.B) {
	r := benchRecord()
	b.ReportAllocs()
	for b.Loop() {
		_ = r.Clone()
	}
}

// A status update's write: the record encoded for the store.
func BenchmarkRecordEncode(b *testing.B) {
	r := benchRecord()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Marshal(); err != nil {
			b.Fatal(err)
		}
	}
}
