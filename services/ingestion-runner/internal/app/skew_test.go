package app_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// publishNewer publishes m as a newer version would send it: with a field
// this version does not know.
func (e *env) publishNewer(t *testing.T, subject string, m proto.Message) {
	t.Helper()
	extra := protowire.AppendTag(nil, 1<<20, protowire.BytesType)
	extra = protowire.AppendString(extra, "from a newer version")
	m.ProtoReflect().SetUnknown(extra)
	if job, ok := m.(*jobsv1.JobDispatched); ok {
		sign(t, testKey, job) // the newer scheduler signs the field too
	}
	msg, err := events.Encode(subject, m, "")
	require.NoError(t, err)
	require.True(t, bytes.HasSuffix(msg.Data, extra), "the unknown field is sent last")
	require.NoError(t, e.conn.Publish(context.Background(), msg))
}

// TestNewerMessagesAreRun: a JobDispatched and a CancelJob from a newer
// scheduler are acted on, not dead-lettered.
func TestNewerMessagesAreRun(t *testing.T) {
	e := newEnv(t)
	tr := e.startRunner(t, runnerConfig(t, "r1"))

	e.publishNewer(t, e.subj.Jobs(tenant, "default"), &jobsv1.JobDispatched{
		Envelope: events.NewEnvelope(tenant, 0, "", ""), JobId: "job-newer", Spec: command("echo newer"),
	})
	e.waitStates(t, "job-newer", "RUNNING@1/r1", "SUCCEEDED@1/r1")

	e.publishNewer(t, e.subj.Jobs(tenant, "default"), &jobsv1.JobDispatched{
		Envelope: events.NewEnvelope(tenant, 0, "", ""), JobId: "job-long", Spec: command("echo started; sleep 30"),
	})
	e.waitStates(t, "job-long", "RUNNING@1/r1")
	e.publishNewer(t, e.subj.RunnerControl(tenant, "default", "r1"), &jobsv1.CancelJob{
		Envelope: events.NewEnvelope(tenant, 0, "", ""), JobId: "job-long", Reason: "newer",
	})
	e.waitStates(t, "job-long", "RUNNING@1/r1", "CANCELLED@1/r1")

	require.Empty(t, e.dlq.on(""))
	require.Zero(t, testutil.ToFloat64(tr.metrics.MalformedMessages.WithLabelValues("jobs")))
	require.Zero(t, testutil.ToFloat64(tr.metrics.MalformedMessages.WithLabelValues("control")))
}
