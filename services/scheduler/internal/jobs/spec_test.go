package jobs

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

var policy = Policy{
	MaxAttempts: 3, InitialBackoff: time.Second, MaxBackoff: time.Minute, Multiplier: 2,
	DefaultTimeout: time.Hour, MaxTimeout: 24 * time.Hour, AttemptsLimit: 100,
}

func cmdSpec() *jobsv1.JobSpec {
	return &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{Command: "echo"}}}}
}

func TestNormalizeSpecDefaults(t *testing.T) {
	got, err := NormalizeSpec(cmdSpec(), policy)
	require.NoError(t, err)
	require.Equal(t, "default", got.Pool)
	require.Equal(t, uint32(3), got.Retry.MaxAttempts)
	require.Equal(t, time.Second, got.Retry.InitialBackoff.AsDuration())
	require.Equal(t, time.Minute, got.Retry.MaxBackoff.AsDuration())
	require.InDelta(t, 2, got.Retry.Multiplier, 0)
	require.Equal(t, time.Hour, got.Timeout.AsDuration())

	in := cmdSpec()
	in.Retry = &jobsv1.RetryPolicy{InitialBackoff: durationpb.New(2 * time.Minute)}
	got, err = NormalizeSpec(in, policy)
	require.NoError(t, err)
	require.Equal(t, 2*time.Minute, got.Retry.MaxBackoff.AsDuration(), "max backoff defaults to at least the initial one")
	require.Nil(t, in.Timeout, "the input is not modified")
}

func TestNormalizeSpecErrors(t *testing.T) {
	cases := []struct {
		name  string
		edit  func(*jobsv1.JobSpec)
		field string
	}{
		{"bad pool", func(s *jobsv1.JobSpec) { s.Pool = "a.b" }, "pool"},
		{"no task", func(s *jobsv1.JobSpec) { s.Task = nil }, "task"},
		{"empty task", func(s *jobsv1.JobSpec) { s.Task = &jobsv1.Task{} }, "task"},
		{"empty command", func(s *jobsv1.JobSpec) { s.Task.GetCommand().Command = "" }, "task.command.command"},
		{"long command", func(s *jobsv1.JobSpec) { s.Task.GetCommand().Command = strings.Repeat("x", 5000) }, "task.command.command"},
		{"bad env name", func(s *jobsv1.JobSpec) { s.Task.GetCommand().Env = map[string]string{"1X": "v"} }, "task.command.env.1X"},
		{"negative sleep", func(s *jobsv1.JobSpec) {
			s.Task = &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{Sleep: durationpb.New(-time.Second)}}}
		}, "task.noop.sleep"},
		{"too many attempts", func(s *jobsv1.JobSpec) { s.Retry = &jobsv1.RetryPolicy{MaxAttempts: 101} }, "retry.max_attempts"},
		{"negative backoff", func(s *jobsv1.JobSpec) {
			s.Retry = &jobsv1.RetryPolicy{InitialBackoff: durationpb.New(-time.Second)}
		}, "retry.initial_backoff"},
		{"max below initial", func(s *jobsv1.JobSpec) {
			s.Retry = &jobsv1.RetryPolicy{InitialBackoff: durationpb.New(time.Minute), MaxBackoff: durationpb.New(time.Second)}
		}, "retry.max_backoff"},
		{"multiplier below 1", func(s *jobsv1.JobSpec) { s.Retry = &jobsv1.RetryPolicy{Multiplier: 0.5} }, "retry.multiplier"},
		{"timeout too long", func(s *jobsv1.JobSpec) { s.Timeout = durationpb.New(48 * time.Hour) }, "timeout"},
		{"negative timeout", func(s *jobsv1.JobSpec) { s.Timeout = durationpb.New(-time.Second) }, "timeout"},
		{"bad label key", func(s *jobsv1.JobSpec) { s.Labels = map[string]string{"-x": "v"} }, "labels.-x"},
		{"long label value", func(s *jobsv1.JobSpec) { s.Labels = map[string]string{"x": strings.Repeat("v", 300)} }, "labels.x"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := cmdSpec()
			c.edit(s)
			_, err := NormalizeSpec(s, policy)
			require.ErrorIs(t, err, ErrInvalidSpec)
			var fe *FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, c.field, fe.Field)
		})
	}
}

func TestRecordSpecRoundTrip(t *testing.T) {
	for _, task := range []*jobsv1.Task{
		{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{Command: "sh", Args: []string{"-c", "true"}, Env: map[string]string{"A": "${B}"}}}},
		{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{Sleep: durationpb.New(time.Second), FailMessage: "x"}}},
	} {
		spec, err := NormalizeSpec(&jobsv1.JobSpec{Pool: "p", Task: task, Labels: map[string]string{"team": "a"}}, policy)
		require.NoError(t, err)
		r := NewRecord("id", "t", spec, t0, false)
		b, err := r.Marshal()
		require.NoError(t, err)
		back, err := Unmarshal(b)
		require.NoError(t, err)
		require.Equal(t, spec.String(), back.Spec().String())
	}
}

func TestRejectedRecord(t *testing.T) {
	r := NewRejectedRecord("id", "t", &jobsv1.JobSpec{Pool: "bad pool"}, "invalid spec: pool: x", t0)
	require.Equal(t, StateFailed, r.State)
	require.Equal(t, DefaultPool, r.Pool)
	require.Equal(t, "invalid spec: pool: x", r.Reason)
}

func TestIDs(t *testing.T) {
	a := NewID(t0)
	b := NewID(t0.Add(time.Millisecond))
	require.Len(t, a, 26)
	require.Less(t, a, b, "ids sort by time")
	first, second := NewID(t0), NewID(t0)
	require.NotEqual(t, first, second, "ids of the same instant differ")
	derived, again := DeriveID(t0, []byte("e1")), DeriveID(t0, []byte("e1"))
	require.Equal(t, derived, again, "a derived id depends on its inputs only")
	require.NotEqual(t, DeriveID(t0, []byte("e1")), DeriveID(t0, []byte("e2")))
	require.Equal(t, a[:10], DeriveID(t0, []byte("e1"))[:10], "the time prefix is the same")
}

// A Duration reads back as written, in the bytes json.Marshal gives its
// text (µ included).
func TestDurationJSON(t *testing.T) {
	for _, d := range []time.Duration{0, 1500 * time.Nanosecond, 90 * time.Second, -time.Minute, 1<<63 - 1} {
		t.Run(d.String(), func(t *testing.T) {
			got, err := json.Marshal(Duration(d))
			require.NoError(t, err)
			want, err := json.Marshal(d.String())
			require.NoError(t, err)
			require.Equal(t, string(want), string(got))
			var back Duration
			require.NoError(t, json.Unmarshal(got, &back))
			require.Equal(t, d, back.D())
		})
	}
}
