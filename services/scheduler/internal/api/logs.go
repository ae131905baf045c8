package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/tenants"
)

// logLine is one line of ?format=ndjson.
type logLine struct {
	Time    time.Time `json:"time"`
	Attempt uint32    `json:"attempt"`
	Seq     uint64    `json:"seq"`
	Stream  string    `json:"stream"`
	Text    string    `json:"text"`
}

// logsHandler answers GET /api/v1/jobs/{id}/logs: the job's log lines as
// text, one per line ("<RFC 3339 time> <attempt> <stream> <text>"), or as
// NDJSON with ?format=ndjson. ?attempt=N keeps one attempt. ?follow=true
// keeps the response open and streams new lines until the job has ended and
// its logs are drained.
func (a *API) logsHandler(w http.ResponseWriter, r *http.Request, t *tenants.Tenant) {
	q := r.URL.Query()
	follow := false
	if s := q.Get("follow"); s != "" {
		var err error
		if follow, err = strconv.ParseBool(s); err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, "must be true or false", "follow")
			return
		}
	}
	format := q.Get("format")
	if format != "" && format != "text" && format != "ndjson" {
		httpjson.WriteError(w, http.StatusBadRequest, "must be text or ndjson", "format")
		return
	}
	var attempt uint64
	if s := q.Get("attempt"); s != "" {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n == 0 {
			httpjson.WriteError(w, http.StatusBadRequest, "must be a positive integer", "attempt")
			return
		}
		attempt = n
	}
	rec, ok := a.job(w, r, t)
	if !ok {
		return
	}
	rc := http.NewResponseController(w)
	if follow {
		// A follow lasts as long as the job: no write deadline.
		_ = rc.SetWriteDeadline(time.Time{})
	}
	if format == "ndjson" {
		w.Header().Set("Content-Type", "application/x-ndjson")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)

	lw := &logWriter{w: w, ndjson: format == "ndjson", attempt: uint32(attempt), token: rec.AttemptToken}
	emit := func(m queue.StreamMessage) bool {
		if err := lw.write(m); err != nil {
			return false
		}
		if follow {
			_ = rc.Flush()
		}
		return true
	}
	subject := a.opts.Subjects.JobLogs(t.Name, rec.ID)
	ctx := r.Context()
	if follow && rec.Live() {
		a.followLogs(ctx, t, rec.ID, subject, emit)
	}
	// Read (or, after a follow, drain) what is stored.
	if err := a.logs.Read(ctx, subject, queue.ReadOptions{FromSequence: lw.next()}, emit); err != nil && ctx.Err() == nil {
		a.log.Warn("read job logs failed", "tenant", t.Name, "job_id", rec.ID, "error", err)
	}
}

// followLogs streams new log events until the job has ended or ctx is done.
func (a *API) followLogs(ctx context.Context, t *tenants.Tenant, id, subject string, emit func(queue.StreamMessage) bool) {
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- a.logs.Read(fctx, subject, queue.ReadOptions{Follow: true}, emit) }()
	tick := time.NewTicker(a.opts.LogPoll)
	defer tick.Stop()
	for {
		select {
		case <-a.stopping.Done():
			cancel()
			<-done //nolint:errcheck // cancelled just above: the reader ends with the cancellation's error
			return
		case err := <-done:
			if err != nil && fctx.Err() == nil {
				a.log.Warn("follow job logs failed", "tenant", t.Name, "job_id", id, "error", err)
			}
			return
		case <-tick.C:
			rec, err := t.Jobs.Get(ctx, id)
			if err != nil || rec.Live() {
				continue
			}
			cancel()
			<-done //nolint:errcheck // cancelled just above: the reader ends with the cancellation's error
			return
		}
	}
}

// logWriter renders log events, skipping any already written (a drain after
// a follow may see them again).
type logWriter struct {
	mu      sync.Mutex
	w       io.Writer
	ndjson  bool
	attempt uint32
	// token, when set, is the job's attempt token: chunks that do not
	// carry it were not sent by the runner of the job and are skipped.
	token string
	last  uint64
}

// next is the stream sequence to read from after what was written.
func (lw *logWriter) next() uint64 {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.last + 1
}

func (lw *logWriter) write(m queue.StreamMessage) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if m.Sequence != 0 && m.Sequence <= lw.last {
		return nil
	}
	lw.last = max(lw.last, m.Sequence)
	chunk, err := events.DecodeAs[*jobsv1.LogChunk](m.Header, m.Data)
	if err != nil {
		return nil // not a log chunk: skip it
	}
	if lw.token != "" && subtle.ConstantTimeCompare([]byte(chunk.GetAttemptToken()), []byte(lw.token)) != 1 {
		return nil
	}
	att := chunk.GetEnvelope().GetAttempt()
	if lw.attempt != 0 && att != lw.attempt {
		return nil
	}
	var b strings.Builder
	for i, l := range chunk.Lines {
		ts := l.GetTime().AsTime()
		if l.GetTime() == nil {
			ts = m.Time
		}
		text := strings.TrimRight(l.Text, "\r\n")
		if !lw.ndjson {
			text = strings.ReplaceAll(text, "\n", `\n`) // one line per log line
		}
		if lw.ndjson {
			line, err := json.Marshal(logLine{Time: ts, Attempt: att, Seq: chunk.FirstSeq + uint64(i), Stream: l.Stream, Text: text})
			if err != nil {
				return err
			}
			b.Write(line)
			b.WriteByte('\n')
			continue
		}
		fmt.Fprintf(&b, "%s %d %s %s\n", ts.UTC().Format(time.RFC3339Nano), att, l.Stream, text)
	}
	_, err = io.WriteString(lw.w, b.String())
	return err
}
