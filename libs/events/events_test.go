package events

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

func TestRoundTripAndPoison(t *testing.T) {
	status := &jobsv1.JobStatus{Envelope: NewEnvelope("acme", 2, "k", ""), JobId: "j1", State: jobsv1.JobState_JOB_STATE_RUNNING}
	msg, err := Encode("outpost.acme.job-events.j1", status, "d1")
	require.NoError(t, err)
	require.Equal(t, "outpost.jobs.v1.JobStatus", msg.Header[queue.HeaderType])
	require.Equal(t, "d1", msg.DedupeID)

	got, err := DecodeAs[*jobsv1.JobStatus](msg.Header, msg.Data)
	require.NoError(t, err)
	require.True(t, proto.Equal(status, got))

	unknown := protowire.AppendTag(append([]byte(nil), msg.Data...), 999, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 1)

	tests := []struct {
		name   string
		header map[string]string
		data   []byte
		want   string
	}{
		{"no type header", map[string]string{}, msg.Data, "no Outpost-Type header"},
		{"unknown type", map[string]string{queue.HeaderType: "outpost.nope.v1.X"}, msg.Data, "unknown type"},
		{"garbage bytes", msg.Header, []byte{0xff, 0xff, 0xff}, "JobStatus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.header, tt.data)
			require.ErrorIs(t, err, ErrMalformed)
			require.ErrorContains(t, err, tt.want)
		})
	}

	// A field from a newer version is read past, not refused.
	got, err = DecodeAs[*jobsv1.JobStatus](msg.Header, unknown)
	require.NoError(t, err)
	require.Equal(t, "j1", got.GetJobId())

	_, err = DecodeAs[*jobsv1.LogChunk](msg.Header, msg.Data)
	require.ErrorIs(t, err, ErrMalformed)
}
