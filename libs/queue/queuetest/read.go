package queuetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue"
)

func testReadHistory(t *testing.T, s *suite) {
	ctx := s.ctx(t)
	all := s.Subjects.All(s.Tenant, queue.RoleJobEvents)
	read := func(subject string, opts queue.ReadOptions, limit int) ([]queue.StreamMessage, error) {
		var got []queue.StreamMessage
		err := s.Broker.Read(ctx, subject, opts, func(m queue.StreamMessage) bool {
			got = append(got, m)
			return limit <= 0 || len(got) < limit
		})
		return got, err
	}
	if !s.Capabilities.Read {
		_, err := read(all, queue.ReadOptions{FromSequence: 1}, 0)
		require.ErrorIs(t, err, errors.ErrUnsupported)
		return
	}

	// Nothing stored yet: Read returns at once.
	got, err := read(all, queue.ReadOptions{FromSequence: 1}, 0)
	require.NoError(t, err)
	require.Empty(t, got)

	want := []struct{ job, data string }{
		{"job-1", "queued"}, {"job-2", "queued"}, {"job-1", "running"}, {"job-1", "done"}, {"job-2", "failed"},
	}
	for _, w := range want {
		s.publish(t, queue.Message{Subject: s.Subjects.JobStatus(s.Tenant, w.job), Data: []byte(w.data), Header: map[string]string{queue.HeaderType: "outpost.test.v1.Status"}})
	}

	got, err = read(all, queue.ReadOptions{FromSequence: 1}, 0)
	require.NoError(t, err)
	require.Len(t, got, len(want))
	for i, w := range want {
		require.Equal(t, s.Subjects.JobStatus(s.Tenant, w.job), got[i].Subject)
		require.Equal(t, w.data, string(got[i].Data))
		require.Equal(t, "outpost.test.v1.Status", got[i].Header[queue.HeaderType])
		require.False(t, got[i].Time.IsZero())
		if i > 0 {
			require.Greater(t, got[i].Sequence, got[i-1].Sequence)
		}
	}

	job1, err := read(s.Subjects.JobStatus(s.Tenant, "job-1"), queue.ReadOptions{}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"queued", "running", "done"}, datas(job1))

	from, err := read(s.Subjects.JobStatus(s.Tenant, "job-1"), queue.ReadOptions{FromSequence: job1[1].Sequence}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"running", "done"}, datas(from))

	since, err := read(s.Subjects.JobStatus(s.Tenant, "job-1"), queue.ReadOptions{Since: job1[1].Time}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"running", "done"}, datas(since), "Since starts at the first message stored at or after it")

	onlyNew, err := read(all, queue.ReadOptions{OnlyNew: true}, 0)
	require.NoError(t, err)
	require.Empty(t, onlyNew, "OnlyNew without Follow has nothing to yield")

	// A filter with a wildcard in the middle: status events, not logs.
	s.publish(t, queue.Message{Subject: s.Subjects.JobLogs(s.Tenant, "job-1"), Data: []byte("log line")})
	status, err := read(s.Subjects.AllJobStatus(s.Tenant), queue.ReadOptions{FromSequence: 1}, 0)
	require.NoError(t, err)
	require.Equal(t, []string{"queued", "queued", "running", "done", "failed"}, datas(status))

	first, err := read(all, queue.ReadOptions{FromSequence: 1}, 1)
	require.NoError(t, err)
	require.Len(t, first, 1, "fn returning false stops the read")

	_, err = read(s.Subjects.All(s.Tenant, queue.RoleJobs), queue.ReadOptions{FromSequence: 1}, 0)
	require.ErrorIs(t, err, queue.ErrInvalidSubject, "work roles cannot be read")
}

func datas(ms []queue.StreamMessage) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, string(m.Data))
	}
	return out
}

func testReadFollow(t *testing.T, s *suite) {
	all := s.Subjects.All(s.Tenant, queue.RoleRunners)
	if !s.Capabilities.Read {
		err := s.Broker.Read(s.ctx(t), all, queue.ReadOptions{Follow: true}, func(queue.StreamMessage) bool { return true })
		require.ErrorIs(t, err, errors.ErrUnsupported)
		return
	}
	s.publish(t, queue.Message{Subject: s.Subjects.Runners(s.Tenant, "pool-f"), Data: []byte("hb-0")})

	var mu sync.Mutex
	var got []string
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- s.Broker.Read(ctx, all, queue.ReadOptions{FromSequence: 1, Follow: true}, func(m queue.StreamMessage) bool {
			mu.Lock()
			got = append(got, string(m.Data))
			mu.Unlock()
			return true
		})
	}()
	n := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	require.Eventually(t, func() bool { return n() == 1 }, 10*time.Second, 10*time.Millisecond, "history before following")
	s.publish(t, queue.Message{Subject: s.Subjects.Runners(s.Tenant, "pool-f"), Data: []byte("hb-1")})
	s.publish(t, queue.Message{Subject: s.Subjects.Runners(s.Tenant, "pool-g"), Data: []byte("hb-2")})
	require.Eventually(t, func() bool { return n() == 3 }, 10*time.Second, 10*time.Millisecond, "new messages while following")

	// OnlyNew skips the history: a reader started now sees only what is
	// published after it started, never hb-0..hb-2.
	var newMu sync.Mutex
	var fresh []string
	freshDone := make(chan error, 1)
	go func() {
		freshDone <- s.Broker.Read(ctx, all, queue.ReadOptions{OnlyNew: true, Follow: true}, func(m queue.StreamMessage) bool {
			newMu.Lock()
			fresh = append(fresh, string(m.Data))
			newMu.Unlock()
			return true
		})
	}()
	var ping atomic.Int64
	// A reader on a replicated stream of a loaded cluster may take
	// seconds to start; one that gave up says why.
	require.Eventually(t, func() bool {
		select {
		case err := <-freshDone:
			freshDone <- err
			return true
		default:
		}
		// The condition runs on its own goroutine, possibly after the
		// test ends: it must not fail the test, so no require here.
		data := fmt.Sprintf("ping-%d", ping.Add(1))
		if err := s.Broker.Publish(ctx, queue.Message{Subject: s.Subjects.Runners(s.Tenant, "pool-f"), Data: []byte(data)}); err != nil {
			return false
		}
		newMu.Lock()
		defer newMu.Unlock()
		return len(fresh) > 0
	}, 30*time.Second, 100*time.Millisecond, "an OnlyNew reader never saw a new message")
	select {
	case err := <-freshDone:
		require.NoError(t, err, "the OnlyNew reader returned before it saw a message")
	default:
	}
	newMu.Lock()
	require.NotEmpty(t, fresh, "an OnlyNew reader never saw a new message")
	require.NotContains(t, fresh, "hb-0")
	require.NotContains(t, fresh, "hb-2")
	newMu.Unlock()
	require.Never(t, func() bool { return len(done) > 0 }, 200*time.Millisecond, 10*time.Millisecond, "a follow read returned on its own")
	cancel()
	var err error
	require.Eventually(t, func() bool {
		select {
		case err = <-done:
			return true
		default:
			return false
		}
	}, 10*time.Second, 10*time.Millisecond, "Read did not return after its context was cancelled")
	if err != nil {
		require.ErrorIs(t, err, context.Canceled)
	}
	mu.Lock()
	require.GreaterOrEqual(t, len(got), 3)
	require.Equal(t, []string{"hb-0", "hb-1", "hb-2"}, got[:3], "then the pings of the OnlyNew check")
	mu.Unlock()

	// A follow read also stops when fn says so.
	stopped := 0
	err = s.Broker.Read(s.ctx(t), all, queue.ReadOptions{FromSequence: 1, Follow: true}, func(queue.StreamMessage) bool {
		stopped++
		return stopped < 2
	})
	require.NoError(t, err)
	require.Equal(t, 2, stopped)
}
