package events

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/queue"
	accountsv1 "github.com/outposthq/outpost/proto/outpost/accounts/v1"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	watchv1 "github.com/outposthq/outpost/proto/outpost/watch/v1"
)

// FuzzDecode feeds Decode any type name and payload, as a consumer gets them
// from the broker. A payload Decode accepts is a message of the named type
// that survives a marshal and decode unchanged; anything else is
// ErrMalformed, never a panic.
func FuzzDecode(f *testing.F) {
	env := NewEnvelope("acme", 2, "submit/j1", "trace")
	seeds := []proto.Message{
		&jobsv1.SubmitJob{Envelope: env, JobId: "j1", Spec: &jobsv1.JobSpec{Pool: "remote", Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{Command: "echo", Args: []string{"hi"}, Env: map[string]string{"A": "${B}"}}}}}},
		&jobsv1.JobStatus{Envelope: env, JobId: "j1", State: jobsv1.JobState_JOB_STATE_RUNNING},
		&jobsv1.LogChunk{Envelope: env, JobId: "j1", FirstSeq: 3, Lines: []*jobsv1.LogLine{{Stream: "stdout", Text: "hello"}}},
		&jobsv1.CancelJob{Envelope: env, JobId: "j1"},
		&watchv1.Operation{Envelope: env, Id: "op1", Account: "prod", Kind: &watchv1.Operation_Apply{Apply: &watchv1.Apply{Manifests: []byte("kind: ConfigMap")}}},
		&watchv1.ObjectDelta{Envelope: env},
		&accountsv1.AccountLease{Envelope: env},
		&accountsv1.InventoryChecksum{Envelope: env},
		&ingestv1.JobRecords{Envelope: env},
	}
	for _, m := range seeds {
		msg, err := Encode("outpost.acme.submit", m, "")
		require.NoError(f, err)
		f.Add(msg.Header[queue.HeaderType], msg.Data)
		unknown := protowire.AppendTag(append([]byte(nil), msg.Data...), 999, protowire.BytesType)
		f.Add(msg.Header[queue.HeaderType], protowire.AppendBytes(unknown, []byte("from a newer version")))
		f.Add(msg.Header[queue.HeaderType], msg.Data[:len(msg.Data)/2])
	}
	f.Add("", []byte{})
	f.Add("outpost.nope.v1.X", []byte{0x08, 0x01})
	f.Add("outpost.jobs.v1.JobStatus", []byte{0xff, 0xff, 0xff})
	f.Add("google.protobuf.Timestamp", []byte{0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01})

	f.Fuzz(func(t *testing.T, typeName string, data []byte) {
		header := map[string]string{queue.HeaderType: typeName}
		m, err := Decode(header, data)
		if err != nil {
			require.ErrorIs(t, err, ErrMalformed)
			require.Nil(t, m)
			return
		}
		require.Equal(t, typeName, TypeName(m), "the decoded message is of the type the header names")

		msg, err := Encode("outpost.acme.submit", m, "d")
		require.NoError(t, err, "a decoded message encodes again")
		require.Equal(t, header, msg.Header)
		again, err := Decode(msg.Header, msg.Data)
		require.NoError(t, err, "an encoded message decodes")
		require.True(t, proto.Equal(m, again), "encode then decode is the identity")
	})
}
