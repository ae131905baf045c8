package runner

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

// blockingPublisher holds the first publish until released and records
// every message published.
type blockingPublisher struct {
	release chan struct{}
	fail    func(queue.Message) error

	mu   sync.Mutex
	msgs []queue.Message
}

func (p *blockingPublisher) publish(_ context.Context, m queue.Message) error {
	p.mu.Lock()
	first := len(p.msgs) == 0
	p.msgs = append(p.msgs, m)
	p.mu.Unlock()
	if first {
		<-p.release
	}
	if p.fail != nil {
		return p.fail(m)
	}
	return nil
}

func (p *blockingPublisher) published() []queue.Message {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]queue.Message(nil), p.msgs...)
}

func outcomeReq(t *testing.T, id string, max, textBytes int) *statusReq {
	t.Helper()
	dedupe := id + "-1-SUCCEEDED"
	st := &jobsv1.JobStatus{
		Envelope: events.NewEnvelope("acme", 1, dedupe, ""), JobId: id, State: jobsv1.JobState_JOB_STATE_SUCCEEDED,
		StartedAt: timestamppb.Now(), Logs: &jobsv1.LogChunk{Lines: []*jobsv1.LogLine{{Text: strings.Repeat("x", textBytes)}}},
	}
	msg, err := events.Encode("outpost.acme.job-events."+id+".status", st, dedupe)
	require.NoError(t, err)
	return &statusReq{msg: msg, st: st, max: max}
}

// jobsOf is the jobs whose statuses a message carries, and whether it is a
// batch.
func jobsOf(t *testing.T, m queue.Message) ([]string, bool) {
	t.Helper()
	if m.Header[queue.HeaderType] == events.TypeName(&jobsv1.JobStatus{}) {
		st, err := events.DecodeAs[*jobsv1.JobStatus](m.Header, m.Data)
		require.NoError(t, err)
		return []string{st.GetJobId()}, false
	}
	b, err := events.DecodeAs[*jobsv1.JobStatusBatch](m.Header, m.Data)
	require.NoError(t, err)
	var ids []string
	for _, st := range b.GetStatuses() {
		ids = append(ids, st.GetJobId())
	}
	require.Equal(t, "outpost.acme.job-events."+ids[0]+".status", m.Subject, "on the subject of the first one's job")
	require.True(t, strings.HasPrefix(m.DedupeID, "statuses-"), m.DedupeID)
	return ids, true
}

func TestStatusSenderBatchesWhileAPublishIsInFlight(t *testing.T) {
	tooLarge := func(m queue.Message) error {
		if m.Header[queue.HeaderType] == events.TypeName(&jobsv1.JobStatusBatch{}) {
			return fmt.Errorf("broker says: %w", queue.ErrPayloadTooLarge)
		}
		return nil
	}
	cases := []struct {
		name string
		// the statuses queued while the first one's publish is held
		max, textBytes int
		fail           func(queue.Message) error
		want           [][]string // jobs of each message after the first
		wantBatch      []bool
	}{
		{name: "all in one batch", max: 64, textBytes: 10,
			want: [][]string{{"j1", "j2", "j3", "j4"}}, wantBatch: []bool{true}},
		{name: "as many as the dispatches allow", max: 3, textBytes: 10,
			want: [][]string{{"j1", "j2", "j3"}, {"j4"}}, wantBatch: []bool{true, false}},
		{name: "within the byte bound", max: 64, textBytes: 30 << 10,
			want: [][]string{{"j1", "j2"}, {"j3", "j4"}}, wantBatch: []bool{true, true}},
		{name: "a batch too large for the broker goes status by status", max: 64, textBytes: 10, fail: tooLarge,
			want: [][]string{{"j1", "j2", "j3", "j4"}, {"j1"}, {"j2"}, {"j3"}, {"j4"}}, wantBatch: []bool{true, false, false, false, false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := &blockingPublisher{release: make(chan struct{}), fail: tc.fail}
			s := newStatusSender("acme", p.publish, func(id string) string { return "outpost.acme.job-events." + id + ".status" })
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() { defer close(done); s.run(ctx) }()
			defer func() { cancel(); <-done }()

			errs := make(chan error, 5)
			first := outcomeReq(t, "j0", tc.max, 10)
			go func() { errs <- s.send(ctx, first) }()
			require.Eventually(t, func() bool { return len(p.published()) == 1 }, 5*time.Second, time.Millisecond)
			for i := 1; i <= 4; i++ {
				req := outcomeReq(t, fmt.Sprintf("j%d", i), tc.max, tc.textBytes)
				go func() { errs <- s.send(ctx, req) }()
				require.Eventually(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.queued) == i }, 5*time.Second, time.Millisecond)
			}
			close(p.release)
			for range 5 {
				require.NoError(t, <-errs)
			}
			msgs := p.published()
			ids, batch := jobsOf(t, msgs[0])
			require.Equal(t, []string{"j0"}, ids, "the first status went at once")
			require.False(t, batch, "alone, as a JobStatus")
			require.Len(t, msgs, 1+len(tc.want))
			for i, m := range msgs[1:] {
				ids, batch := jobsOf(t, m)
				require.Equal(t, tc.want[i], ids, "message %d", i+1)
				require.Equal(t, tc.wantBatch[i], batch, "message %d", i+1)
			}
		})
	}
}

func TestStatusSenderReportsThePublishError(t *testing.T) {
	refused := errors.New("refused")
	p := &blockingPublisher{release: make(chan struct{}), fail: func(queue.Message) error { return fmt.Errorf("%w: %w", queue.ErrInvalidSubject, refused) }}
	close(p.release)
	s := newStatusSender("acme", p.publish, func(id string) string { return "outpost.acme.job-events." + id + ".status" })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx) }()
	defer func() { cancel(); <-done }()
	require.ErrorIs(t, s.send(ctx, outcomeReq(t, "j0", 64, 10)), refused, "a status not published is the job's to handle")

	// Once the sender stops, a status waits no longer than its context.
	cancel()
	<-done
	sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer scancel()
	require.ErrorIs(t, s.send(sctx, outcomeReq(t, "j1", 64, 10)), context.DeadlineExceeded)
}
