package logstream

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/redact"
)

func line(text string) *jobsv1.LogLine { return &jobsv1.LogLine{Stream: "stdout", Text: text} }

func texts(lines []*jobsv1.LogLine) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.GetText()
	}
	return out
}

func TestBatcher(t *testing.T) {
	size := func(text string) int { return lineSize(line(text)) }
	tests := []struct {
		name      string
		limits    Limits
		add       []string
		wantFull  [][]string // batches returned by Add, in order
		wantTaken []string   // what Take returns at the end
	}{
		{
			name:      "under every limit: nothing until taken",
			limits:    Limits{MaxLines: 10, MaxBytes: 1 << 20},
			add:       []string{"a", "b"},
			wantTaken: []string{"a", "b"},
		},
		{
			name:      "max lines",
			limits:    Limits{MaxLines: 2, MaxBytes: 1 << 20},
			add:       []string{"a", "b", "c", "d", "e"},
			wantFull:  [][]string{{"a", "b"}, {"c", "d"}},
			wantTaken: []string{"e"},
		},
		{
			name:      "a line that does not fit sends the batch before it",
			limits:    Limits{MaxLines: 100, MaxBytes: size("aaaa") + size("bbbb") + 1},
			add:       []string{"aaaa", "bbbb", "cccc"},
			wantFull:  [][]string{{"aaaa", "bbbb"}},
			wantTaken: []string{"cccc"},
		},
		{
			name:     "exactly max bytes is sent at once",
			limits:   Limits{MaxLines: 100, MaxBytes: size("aaaa") + size("bbbb")},
			add:      []string{"aaaa", "bbbb"},
			wantFull: [][]string{{"aaaa", "bbbb"}},
		},
		{
			name:      "a line larger than max bytes goes alone",
			limits:    Limits{MaxLines: 100, MaxBytes: size("x") * 2},
			add:       []string{"x", strings.Repeat("y", 100), "z"},
			wantFull:  [][]string{{"x"}, {strings.Repeat("y", 100)}},
			wantTaken: []string{"z"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBatcher(tt.limits)
			var full [][]string
			for _, a := range tt.add {
				for _, batch := range b.Add(line(a)) {
					full = append(full, texts(batch))
				}
			}
			require.Equal(t, tt.wantFull, full)
			require.Equal(t, len(tt.wantTaken), b.Len())
			taken := b.Take()
			if tt.wantTaken == nil {
				require.Empty(t, taken)
			} else {
				require.Equal(t, tt.wantTaken, texts(taken))
			}
			require.Zero(t, b.Len())
		})
	}
}

func TestLineWriter(t *testing.T) {
	tests := []struct {
		name   string
		max    int
		values []string
		writes []string
		want   []string
	}{
		{name: "lines across writes", max: 100, writes: []string{"a\nb", "c\n", "d\r\n\n", "tail"}, want: []string{"a", "bc", "d", "", "tail"}},
		{name: "long line split at max", max: 4, writes: []string{"abcdefghij\n"}, want: []string{"abcd", "efgh", "ij"}},
		{name: "split keeps characters whole", max: 4, writes: []string{"aaaé\n"}, want: []string{"aaa", "é"}},
		{name: "a line of exactly max bytes waits for its end", max: 4, writes: []string{"ab", "cd", "\n", "efgh"}, want: []string{"abcd", "efgh"}},
		{
			name: "keeping a character whole never cuts a secret", max: 3, values: []string{"aé"},
			writes: []string{"a\xc3\xa9\xa9\xa9\xa9\xa9\n"},
			want:   []string{"a\xc3\xa9", "\xa9\xa9\xa9\xa9"},
		},
		{
			name: "split never cuts a secret", max: 8, values: []string{"SECRET"},
			writes: []string{"0123456SECRET789abcdefghijklmnop\n"},
			// A line end within max plus the hold-back goes out whole.
			want: []string{"0123456", "SECRET78", "9abcdefg", "hijklmnop"},
		},
		{
			name: "secret across writes", max: 8, values: []string{"SECRET"},
			writes: []string{"0123456SE", "CRET\n"},
			want:   []string{"0123456SECRET"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			w := NewLineWriter(func(s string) { got = append(got, s) }, tt.max, redact.New(tt.values...))
			for _, s := range tt.writes {
				n, err := w.Write([]byte(s))
				require.NoError(t, err)
				require.Equal(t, len(s), n)
			}
			require.NoError(t, w.Close())
			require.Equal(t, tt.want, got)
			r := redact.New(tt.values...)
			for _, g := range got {
				for _, v := range tt.values {
					require.NotContains(t, r.Redact(g), v)
					require.False(t, strings.HasPrefix(v, g) && g != "" && len(g) < len(v), "fragment %q of a secret", g)
				}
			}
		})
	}
}

// recorder is a Publisher that keeps what it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []queue.Message
	fail bool
}

func (r *recorder) Publish(_ context.Context, m queue.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return queue.ErrClosed
	}
	r.msgs = append(r.msgs, m)
	return nil
}

func (r *recorder) chunks(t *testing.T) []*jobsv1.LogChunk {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*jobsv1.LogChunk, 0, len(r.msgs))
	for _, m := range r.msgs {
		c, err := events.DecodeAs[*jobsv1.LogChunk](m.Header, m.Data)
		require.NoError(t, err)
		out = append(out, c)
	}
	return out
}

func startStreamer(pub Publisher, limits Limits, onSent func(int), values ...string) *Streamer {
	return Start(Options{
		Publisher: pub, Subject: "outpost.acme.job-events.j1.logs", Tenant: "acme", JobID: "j1", Attempt: 2,
		Limits: limits, MaxLineBytes: 1024, Redactor: redact.New(values...), OnSent: onSent,
	})
}

func TestStreamerBatchesAndNumbers(t *testing.T) {
	rec := &recorder{}
	var sent int
	s := startStreamer(rec, Limits{MaxLines: 3, MaxBytes: 1 << 20, Interval: time.Hour}, func(n int) { sent += n }, "tok")
	out := s.Stream(StreamStdout)
	for i := range 7 {
		fmt.Fprintf(out, "line %d tok\n", i+1)
	}
	s.Log("done with tok")
	require.NoError(t, out.Close())
	require.NoError(t, s.Close(context.Background()))

	chunks := rec.chunks(t)
	require.Len(t, chunks, 3)
	var all []string
	for i, c := range chunks {
		require.Equal(t, uint64(3*i+1), c.GetFirstSeq())
		require.Equal(t, "j1", c.GetJobId())
		require.Equal(t, uint32(2), c.GetEnvelope().GetAttempt())
		require.Equal(t, "acme", c.GetEnvelope().GetTenant())
		all = append(all, texts(c.GetLines())...)
	}
	require.Equal(t, []string{
		"line 1 ****", "line 2 ****", "line 3 ****", "line 4 ****", "line 5 ****",
		"line 6 ****", "line 7 ****", "done with ****",
	}, all)
	require.Equal(t, "runner", chunks[2].GetLines()[1].GetStream())
	require.Equal(t, "j1-2-logs-4", rec.msgs[1].DedupeID)
	require.Equal(t, 8, sent)
}

func TestStreamerFlushesAfterInterval(t *testing.T) {
	rec := &recorder{}
	s := startStreamer(rec, Limits{MaxLines: 100, MaxBytes: 1 << 20, Interval: 20 * time.Millisecond}, nil)
	defer s.Close(context.Background())
	s.Log("first")
	require.Eventually(t, func() bool { return len(rec.chunks(t)) == 1 }, 5*time.Second, 5*time.Millisecond)
	s.Log("second")
	s.Log("third")
	require.Eventually(t, func() bool { return len(rec.chunks(t)) == 2 }, 5*time.Second, 5*time.Millisecond)
	c := rec.chunks(t)[1]
	require.Equal(t, uint64(2), c.GetFirstSeq())
	require.Equal(t, []string{"second", "third"}, texts(c.GetLines()))
}

func TestStreamerSanitizesAndSurvivesPublishFailure(t *testing.T) {
	rec := &recorder{fail: true}
	s := startStreamer(rec, Limits{MaxLines: 1, MaxBytes: 1 << 20, Interval: time.Hour}, nil)
	s.Line(StreamStderr, "lost")
	rec.mu.Lock()
	rec.fail = false
	rec.mu.Unlock()
	s.Line(StreamStderr, "bad \xff byte")
	require.NoError(t, s.Close(context.Background()))
	s.Line(StreamStderr, "after close") // dropped, no panic
	chunks := rec.chunks(t)
	require.NotEmpty(t, chunks)
	last := chunks[len(chunks)-1]
	require.Equal(t, []string{"bad \uFFFD byte"}, texts(last.GetLines()))
	require.Equal(t, uint64(2), last.GetFirstSeq(), "a dropped chunk keeps its numbers")
}

func TestStreamerCloseInline(t *testing.T) {
	tests := []struct {
		name string
		// lines are logged; flushFirst publishes the first one before
		// the rest are logged.
		lines      []string
		flushFirst bool
		maxBytes   int
		wantInline []string
		wantSent   [][]string
	}{
		{name: "short attempt: kept for the outcome", lines: []string{"one", "two"}, maxBytes: 4096, wantInline: []string{"one", "two"}},
		{name: "inline off", lines: []string{"one"}, maxBytes: 0, wantSent: [][]string{{"one"}}},
		{name: "too large: published", lines: []string{strings.Repeat("x", 200)}, maxBytes: 100, wantSent: [][]string{{strings.Repeat("x", 200)}}},
		{name: "a chunk went out before: the rest follows it", lines: []string{"one", "two"}, flushFirst: true, maxBytes: 4096, wantSent: [][]string{{"one"}, {"two"}}},
		{name: "no lines", maxBytes: 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := &recorder{}
			s := Start(Options{
				Publisher: rec, Subject: "outpost.acme.job-events.j1.logs", Tenant: "acme", JobID: "j1", Attempt: 1, AttemptToken: "tok-1",
				Limits: Limits{MaxLines: 100, MaxBytes: 1 << 20, Interval: time.Hour}, MaxLineBytes: 1024,
			})
			for i, l := range tt.lines {
				s.Log(l)
				if i == 0 && tt.flushFirst {
					s.mu.Lock()
					s.enqueueLocked(s.batch.Take())
					s.mu.Unlock()
					require.Eventually(t, func() bool { return len(rec.chunks(t)) == 1 }, 5*time.Second, 5*time.Millisecond)
				}
			}
			inline, err := s.CloseInline(context.Background(), tt.maxBytes)
			require.NoError(t, err)
			if tt.wantInline == nil {
				require.Nil(t, inline)
			} else {
				require.NotNil(t, inline)
				require.Equal(t, tt.wantInline, texts(inline.GetLines()))
				require.Equal(t, uint64(1), inline.GetFirstSeq())
				require.Equal(t, "tok-1", inline.GetAttemptToken())
				require.LessOrEqual(t, proto.Size(inline), tt.maxBytes)
			}
			var sent [][]string
			for _, c := range rec.chunks(t) {
				sent = append(sent, texts(c.GetLines()))
			}
			require.Equal(t, tt.wantSent, sent)
		})
	}
}
