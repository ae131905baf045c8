package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/httpjson"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
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

	ctx := r.Context()
	lw := &logWriter{w: w, ndjson: format == "ndjson", attempt: uint32(attempt), token: rec.AttemptToken}
	lw.reload = func() []jobs.AttemptLogs {
		if now, err := t.Jobs.Get(ctx, rec.ID); err == nil {
			return now.Logs
		}
		return nil
	}
	lw.add(rec.Logs)
	emit := func(m queue.StreamMessage) bool {
		if err := lw.write(m); err != nil {
			return false
		}
		if follow {
			lw.send(rc)
		}
		return true
	}
	subject := a.opts.Subjects.JobLogs(t.Name, rec.ID)
	if follow && rec.Live() {
		a.followLogs(ctx, t, rec.ID, subject, emit, func(rec *jobs.Record) {
			// An attempt that sent its lines with its outcome has ended:
			// they are shown as soon as the record has them.
			lw.add(rec.Logs)
			if lw.flushInline(math.MaxUint32) == nil {
				lw.send(rc)
			}
		})
		lw.add(lw.reload())
	}
	// Read (or, after a follow, drain) what is stored; then the lines of
	// attempts that sent them with their outcome and come after the
	// subject's last chunk.
	if err := a.logs.Read(ctx, subject, queue.ReadOptions{FromSequence: lw.next()}, emit); err != nil && ctx.Err() == nil {
		a.log.Warn("read job logs failed", "tenant", t.Name, "job_id", rec.ID, "error", err)
	}
	_ = lw.flushInline(math.MaxUint32)
}

// followLogs streams new log events until the job has ended or ctx is done;
// it hands the job's record to seen at each look.
func (a *API) followLogs(ctx context.Context, t *tenants.Tenant, id, subject string, emit func(queue.StreamMessage) bool, seen func(*jobs.Record)) {
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
			if err != nil {
				continue
			}
			seen(rec)
			if rec.Live() {
				continue
			}
			cancel()
			<-done //nolint:errcheck // cancelled just above: the reader ends with the cancellation's error
			return
		}
	}
}

// logWriter renders log events, skipping any already written (a drain after
// a follow may see them again), and the lines attempts sent with their
// outcome (Record.Logs), each before the chunks of later attempts.
type logWriter struct {
	mu      sync.Mutex
	w       io.Writer
	ndjson  bool
	attempt uint32
	// token, when set, is the job's attempt token: chunks that do not
	// carry it were not sent by the runner of the job and are skipped.
	token string
	last  uint64
	// inline holds the outcome-borne lines not written yet, oldest
	// attempt first; wrote the attempts whose such lines were written.
	inline []jobs.AttemptLogs
	wrote  map[int]bool
	// reload, when set, reads the record's outcome-borne lines again: a
	// chunk of a later attempt than any before means earlier attempts
	// ended, maybe with their lines.
	reload func() []jobs.AttemptLogs
	seen   uint32
}

// send flushes what was written to the client. A follow writes from two
// goroutines (the reader of the log subject, the look at the record), so
// the flush too is under mu.
func (lw *logWriter) send(rc *http.ResponseController) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	_ = rc.Flush()
}

// next is the stream sequence to read from after what was written.
func (lw *logWriter) next() uint64 {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.last + 1
}

// add queues the outcome-borne lines of logs not queued or written yet.
func (lw *logWriter) add(logs []jobs.AttemptLogs) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	lw.addLocked(logs)
}

func (lw *logWriter) addLocked(logs []jobs.AttemptLogs) {
	for _, l := range logs {
		if lw.wrote[l.Attempt] || (lw.attempt != 0 && uint32(l.Attempt) != lw.attempt) ||
			(lw.token != "" && subtle.ConstantTimeCompare([]byte(l.Token), []byte(lw.token)) != 1) ||
			slices.ContainsFunc(lw.inline, func(q jobs.AttemptLogs) bool { return q.Attempt == l.Attempt }) {
			continue
		}
		lw.inline = append(lw.inline, l)
	}
	slices.SortStableFunc(lw.inline, func(a, b jobs.AttemptLogs) int { return a.Attempt - b.Attempt })
}

// flushInline writes the queued outcome-borne lines of attempts before
// before.
func (lw *logWriter) flushInline(before uint32) error {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.flushInlineLocked(before)
}

func (lw *logWriter) flushInlineLocked(before uint32) error {
	var b strings.Builder
	for len(lw.inline) > 0 && uint32(lw.inline[0].Attempt) < before {
		l := lw.inline[0]
		lw.inline = lw.inline[1:]
		if lw.wrote == nil {
			lw.wrote = map[int]bool{}
		}
		lw.wrote[l.Attempt] = true
		for i, line := range l.Lines {
			if err := lw.render(&b, line.Time, uint32(l.Attempt), l.FirstSeq+uint64(i), line.Stream, line.Text); err != nil {
				return err
			}
		}
	}
	if b.Len() == 0 {
		return nil
	}
	_, err := io.WriteString(lw.w, b.String())
	return err
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
	if att > lw.seen {
		if att > 1 && lw.reload != nil {
			lw.addLocked(lw.reload())
		}
		lw.seen = att
	}
	if err := lw.flushInlineLocked(att); err != nil {
		return err
	}
	var b strings.Builder
	for i, l := range chunk.Lines {
		ts := l.GetTime().AsTime()
		if l.GetTime() == nil {
			ts = m.Time
		}
		if err := lw.render(&b, ts, att, chunk.FirstSeq+uint64(i), l.Stream, l.Text); err != nil {
			return err
		}
	}
	_, err = io.WriteString(lw.w, b.String())
	return err
}

// render appends one line in the answer's format to b.
func (lw *logWriter) render(b *strings.Builder, ts time.Time, attempt uint32, seq uint64, stream, text string) error {
	text = strings.TrimRight(text, "\r\n")
	if lw.ndjson {
		line, err := json.Marshal(logLine{Time: ts, Attempt: attempt, Seq: seq, Stream: stream, Text: text})
		if err != nil {
			return err
		}
		b.Write(line)
		b.WriteByte('\n')
		return nil
	}
	text = strings.ReplaceAll(text, "\n", `\n`) // one line per log line
	fmt.Fprintf(b, "%s %d %s %s\n", ts.UTC().Format(time.RFC3339Nano), attempt, stream, text)
	return nil
}
