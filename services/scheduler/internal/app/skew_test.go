package app_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/natsembed/natstest"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// withUnknownField encodes m for subject as a newer version would send it:
// with a field this version does not know.
func withUnknownField(t *testing.T, subject string, m proto.Message, dedupe string) queue.Message {
	t.Helper()
	msg, err := events.Encode(subject, m, dedupe)
	require.NoError(t, err)
	msg.Data = protowire.AppendTag(msg.Data, 1<<20, protowire.BytesType)
	msg.Data = protowire.AppendString(msg.Data, "from a newer version")
	return msg
}

// TestNewerMessagesAreProcessed: a SubmitJob, a JobStatus and a
// JobStatusBatch carrying a field from a newer version are processed, not
// dead-lettered.
func TestNewerMessagesAreProcessed(t *testing.T) {
	e := newEnv(t)
	r := e.runner("default", "default")
	spec := &jobsv1.JobSpec{Pool: "default", Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{}}}}
	submit := &jobsv1.SubmitJob{Envelope: events.NewEnvelope("default", 0, "", ""), JobId: "newer", Spec: spec}
	require.NoError(t, e.conn.Publish(e.ctx, withUnknownField(t, e.subjects.Submit("default"), submit, "")))

	_, m := r.next(t)
	require.Equal(t, "newer", m.GetJobId())
	e.waitState("default", "newer", "QUEUED")

	status := &jobsv1.JobStatus{Envelope: events.NewEnvelope("default", 1, "", ""), JobId: "newer", State: jobsv1.JobState_JOB_STATE_SUCCEEDED, RunnerId: "runner-1", AttemptToken: m.GetAttemptToken()}
	require.NoError(t, e.conn.Publish(e.ctx, withUnknownField(t, e.subjects.JobStatus("default", "newer"), status, "")))
	e.waitState("default", "newer", "SUCCEEDED")

	// A JobStatusBatch too.
	submit = &jobsv1.SubmitJob{Envelope: events.NewEnvelope("default", 0, "", ""), JobId: "newer-batch", Spec: spec}
	require.NoError(t, e.conn.Publish(e.ctx, withUnknownField(t, e.subjects.Submit("default"), submit, "")))
	_, m = r.next(t)
	require.Equal(t, "newer-batch", m.GetJobId())
	batch := &jobsv1.JobStatusBatch{Envelope: events.NewEnvelope("default", 0, "", ""), Statuses: []*jobsv1.JobStatus{{
		Envelope: events.NewEnvelope("default", 1, "", ""), JobId: "newer-batch", State: jobsv1.JobState_JOB_STATE_SUCCEEDED,
		RunnerId: "runner-1", AttemptToken: m.GetAttemptToken(), StartedAt: timestamppb.Now(),
	}}}
	require.NoError(t, e.conn.Publish(e.ctx, withUnknownField(t, e.subjects.JobStatus("default", "newer-batch"), batch, "")))
	e.waitState("default", "newer-batch", "SUCCEEDED")

	require.Empty(t, e.read(e.subjects.DeadLetter("default", queue.RoleSubmit)))
	require.Empty(t, e.read(e.subjects.DeadLetter("default", queue.RoleJobEvents)))
	require.Zero(t, e.metric("outpost_malformed_messages_total", nil))
}

// TestDeadLetteredSubmitDoesNotHoldTheJobID: a SubmitJob dead-lettered
// after it used the dedupe id the API once used for a job ("submit/<id>")
// must not make a later submit of that id disappear. Before, the API's
// publish was dropped as a duplicate, POST answered 202 QUEUED and the job
// never existed.
func TestDeadLetteredSubmitDoesNotHoldTheJobID(t *testing.T) {
	tests := []struct {
		name string
		msg  func(e *env, id string) queue.Message
	}{
		{"undecodable", func(e *env, id string) queue.Message {
			return queue.Message{
				Subject: e.subjects.Submit("default"), Data: []byte{0xff, 0xff, 0xff},
				Header: map[string]string{queue.HeaderType: events.TypeName(&jobsv1.SubmitJob{})}, DedupeID: "submit/" + id,
			}
		}},
		{"another tenant's", func(e *env, id string) queue.Message {
			m := &jobsv1.SubmitJob{Envelope: events.NewEnvelope("acme", 0, "", ""), JobId: id}
			msg, err := events.Encode(e.subjects.Submit("default"), m, "submit/"+id)
			require.NoError(e.t, err)
			return msg
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.runner("default", "default")
			id := "held-" + string(rune('a'+i))
			require.NoError(t, e.conn.Publish(e.ctx, tt.msg(e, id)))
			require.Eventually(t, func() bool {
				return len(e.read(e.subjects.DeadLetter("default", queue.RoleSubmit))) == 1
			}, waitFor, tick, "the bad submit is dead-lettered")

			code, out := e.do("POST", "/api/v1/jobs", "", noopJob(map[string]any{"id": id}))
			require.Equal(t, http.StatusCreated, code, string(out))
			require.Equal(t, id, decode[jobView](t, out).ID)
			_, m := r.next(t)
			require.Equal(t, id, m.GetJobId())
			require.Equal(t, "QUEUED", e.job("default", id).State)
		})
	}
}

// TestBrokerDownAnswers503: while the broker is gone, requests that need
// it answer 503 with Retry-After, not 500 "context deadline exceeded".
func TestBrokerDownAnswers503(t *testing.T) {
	srv := natstest.RunServer(t)
	e := newEnvOn(t, srv.ClientURL())
	e.submit("default", noopJob(map[string]any{"id": "before"}))
	srv.Shutdown()

	tests := []struct {
		name, method, path string
		body               any
	}{
		{"submit", "POST", "/api/v1/jobs", noopJob(map[string]any{"id": "during"})},
		{"get", "GET", "/api/v1/jobs/before", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, header, out := e.doHeader(tt.method, tt.path, "", tt.body)
			require.Equal(t, http.StatusServiceUnavailable, code, string(out))
			require.NotEmpty(t, header.Get("Retry-After"))
			require.NotContains(t, string(out), "deadline")
		})
	}
}
