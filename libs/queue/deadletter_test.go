package queue_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

func TestDeadLetterClass(t *testing.T) {
	cases := []struct {
		reason, class string
	}{
		{"max deliveries (5) exceeded", queue.ClassMaxDeliveries},
		{"moved by the SQS redrive policy after 11 receives", queue.ClassRedrive},
		{"malformed event: outpost.jobs.v1.SubmitJob: proto: cannot parse", queue.ClassMalformed},
		{queue.ReasonPublishedDirectly, queue.ClassDirect},
		{"invalid SubmitJob: job_id \"a b\"", queue.ClassRejected},
		{"", queue.ClassRejected},
	}
	for _, c := range cases {
		t.Run(c.reason, func(t *testing.T) {
			require.Equal(t, c.class, queue.DeadLetterClass(c.reason))
		})
	}
}

func TestParseDeadLetter(t *testing.T) {
	stored := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	first := stored.Add(-time.Minute)
	cases := []struct {
		name   string
		msg    queue.StreamMessage
		want   queue.DeadLetter
		direct bool
	}{
		{"dead-lettered", queue.StreamMessage{
			Subject: "outpost.acme.dlq.jobs", Data: []byte("abc"), Time: stored,
			Header: map[string]string{
				queue.HeaderDeadLetterReason: "max deliveries (3) exceeded", queue.HeaderDeadLetterSubject: "outpost.acme.jobs.p",
				queue.HeaderDeadLetterAttempts: "3", queue.HeaderDeadLetterFirstTime: first.Format(time.RFC3339Nano),
			},
		}, queue.DeadLetter{Role: queue.RoleJobs, OriginalSubject: "outpost.acme.jobs.p", Reason: "max deliveries (3) exceeded",
			Class: queue.ClassMaxDeliveries, Attempts: 3, FirstTime: first, Time: stored}, false},
		{"published directly", queue.StreamMessage{Subject: "outpost.acme.dlq.submit", Data: []byte("x"), Time: stored},
			queue.DeadLetter{Role: queue.RoleSubmit, Reason: queue.ReasonPublishedDirectly, Class: queue.ClassDirect, FirstTime: stored, Time: stored}, true},
		{"unknown role", queue.StreamMessage{Subject: "outpost.acme.dlq.bogus", Time: stored},
			queue.DeadLetter{Role: "unknown", Reason: queue.ReasonPublishedDirectly, Class: queue.ClassDirect, FirstTime: stored, Time: stored}, true},
		{"bad headers", queue.StreamMessage{Subject: "outpost.acme.dlq.jobs", Time: stored, Header: map[string]string{
			queue.HeaderDeadLetterReason: "x", queue.HeaderDeadLetterSubject: "garbage", queue.HeaderDeadLetterAttempts: "many", queue.HeaderDeadLetterFirstTime: "yesterday",
		}}, queue.DeadLetter{Role: queue.RoleJobs, OriginalSubject: "garbage", Reason: "x", Class: queue.ClassRejected, FirstTime: stored, Time: stored}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := queue.ParseDeadLetter("acme", "7", c.msg)
			require.Equal(t, "7", got.ID)
			require.Equal(t, "acme", got.Tenant)
			require.Equal(t, c.msg.Subject, got.Subject)
			require.Equal(t, c.direct, got.Direct)
			require.Equal(t, c.want.Role, got.Role)
			require.Equal(t, c.want.OriginalSubject, got.OriginalSubject)
			require.Equal(t, c.want.Reason, got.Reason)
			require.Equal(t, c.want.Class, got.Class)
			require.Equal(t, c.want.Attempts, got.Attempts)
			require.True(t, c.want.FirstTime.Equal(got.FirstTime), "first time %v", got.FirstTime)
			require.True(t, c.want.Time.Equal(got.Time))
			require.Equal(t, len(c.msg.Data), got.Size())
		})
	}
}

func TestReplayMessage(t *testing.T) {
	d := queue.ParseDeadLetter("acme", "9", queue.StreamMessage{
		Subject: "outpost.acme.dlq.submit", Data: []byte("payload"),
		Header: map[string]string{
			queue.HeaderType: "outpost.jobs.v1.SubmitJob", queue.HeaderDeadLetterReason: "r",
			queue.HeaderDeadLetterSubject: "outpost.acme.submit", queue.HeaderDeadLetterAttempts: "1",
			queue.HeaderDeadLetterFirstTime: "2026-01-01T00:00:00Z", queue.HeaderReplayOf: "3",
		},
	})
	m := queue.ReplayMessage(d, "replay/9/1")
	require.Equal(t, queue.Message{
		Subject: "outpost.acme.submit", Data: []byte("payload"), DedupeID: "replay/9/1",
		Header: map[string]string{queue.HeaderType: "outpost.jobs.v1.SubmitJob", queue.HeaderReplayOf: "9"},
	}, m)
	require.Equal(t, "r", d.Header[queue.HeaderDeadLetterReason], "the dead letter's own headers are left alone")
}
