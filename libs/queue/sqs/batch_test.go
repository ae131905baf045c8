package sqs

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/stretchr/testify/require"
)

// fakeSend records the batches a batcher sends and fails the entries it is
// told to.
type fakeSend struct {
	mu      sync.Mutex
	batches [][]int
	fail    map[int]error
}

func (f *fakeSend) send(_ context.Context, _ string, entries []int) []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches = append(f.batches, append([]int(nil), entries...))
	errs := make([]error, len(entries))
	for i, e := range entries {
		errs[i] = f.fail[e]
	}
	return errs
}

func (f *fakeSend) sizes() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int
	for _, b := range f.batches {
		out = append(out, len(b))
	}
	return out
}

func TestBatcher(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name     string
		linger   time.Duration
		maxBytes int
		n        int
		size     int
		// requests is how many batch requests n concurrent calls take.
		requests int
	}{
		{"ten share one request", 300 * time.Millisecond, 0, 10, 1, 1},
		{"twenty-five take three", 300 * time.Millisecond, 0, 25, 1, 3},
		{"a lone call waits only the linger", 20 * time.Millisecond, 0, 1, 1, 1},
		{"byte limit splits batches", 300 * time.Millisecond, 100, 10, 40, 5},
		{"no linger: one request each", -1, 0, 5, 1, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := offline(t, Config{BatchLinger: tc.linger})
			b.base = context.Background()
			f := &fakeSend{fail: map[int]error{3: boom}}
			bt := newBatcher(b, "test", tc.maxBytes, f.send)
			errs := make([]error, tc.n)
			var wg sync.WaitGroup
			for i := range tc.n {
				wg.Go(func() { errs[i] = bt.do(context.Background(), "q", i, tc.size) })
			}
			done := make(chan struct{})
			go func() {
				wg.Wait()
				close(done)
			}()
			require.Eventually(t, func() bool {
				select {
				case <-done:
					return true
				default:
					return false
				}
			}, 5*time.Second, 5*time.Millisecond, "calls did not return")
			total := 0
			for _, s := range f.sizes() {
				require.LessOrEqual(t, s, maxBatch)
				total += s
			}
			require.Equal(t, tc.n, total, "every entry sent once")
			if tc.linger > 0 && tc.maxBytes == 0 {
				require.Len(t, f.sizes(), tc.requests)
			} else {
				require.GreaterOrEqual(t, len(f.sizes()), tc.requests)
			}
			for i, err := range errs {
				if i == 3 {
					require.ErrorIs(t, err, boom, "the failed entry's own error")
				} else {
					require.NoError(t, err, "entry %d", i)
				}
			}
		})
	}
}

func TestBatcherCallerGivesUp(t *testing.T) {
	b := offline(t, Config{BatchLinger: time.Hour})
	b.base = context.Background()
	bt := newBatcher(b, "test", 0, (&fakeSend{}).send)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, bt.do(ctx, "q", 1, 1), context.Canceled)
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, bt.do(ctx, "q", 1, 1), context.DeadlineExceeded)
}

func TestResults(t *testing.T) {
	errs := results(3, nil, []types.BatchResultErrorEntry{
		{Id: aws.String("1"), Code: aws.String("ReceiptHandleIsInvalid"), Message: aws.String("gone"), SenderFault: true},
		{Id: aws.String("9")}, // not ours: ignored
	})
	require.NoError(t, errs[0])
	var ee *EntryError
	require.ErrorAs(t, errs[1], &ee)
	require.Equal(t, "ReceiptHandleIsInvalid", ee.Code)
	require.True(t, ee.SenderFault)
	require.NoError(t, errs[2])

	whole := errors.New("network")
	for _, err := range results(2, whole, nil) {
		require.ErrorIs(t, err, whole)
	}
}

func TestWindow(t *testing.T) {
	w := newWindow(50 * time.Millisecond)
	require.False(t, w.seen("a"))
	w.add("a", "m1")
	v, ok := w.get("a")
	require.True(t, ok)
	require.Equal(t, "m1", v)
	require.Eventually(t, func() bool { return !w.seen("a") }, time.Second, 5*time.Millisecond, "expired")

	require.True(t, w.claim("b"))
	require.False(t, w.claim("b"), "claimed once")
	w.drop("b")
	require.True(t, w.claim("b"), "claimable again after drop")
}
