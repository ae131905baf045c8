package jobs

import (
	"crypto/subtle"
	"slices"
	"time"
)

// InlineLogsMax is the most bytes (the encoded LogChunk) of log lines an
// attempt may send with its outcome instead of on the job's log subject;
// the dispatch offers it to the runner (JobDispatched.inline_logs_max).
// Small enough that a record holding MaxInlineLogAttempts of them stays
// well within a store value.
const InlineLogsMax = 4 << 10

// MaxInlineLogAttempts bounds how many attempts' inline logs a record
// keeps; the lines of later attempts go to the job's log subject.
const MaxInlineLogAttempts = 16

// AttemptLogs are the log lines one attempt sent with its outcome.
type AttemptLogs struct {
	Attempt int `json:"attempt"`
	// Token is the attempt token of the dispatch the attempt ran: the
	// logs API shows the lines of the job's current dispatch only, like
	// the chunks of the log subject.
	Token string `json:"token"`
	// FirstSeq numbers the first line within the attempt.
	FirstSeq uint64    `json:"first_seq"`
	Lines    []LogLine `json:"lines"`
}

// LogLine is one line a task or its runner wrote.
type LogLine struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	Text   string    `json:"text"`
}

// HasLogs reports whether r keeps the inline logs of attempt of the
// dispatch token.
func (r *Record) HasLogs(attempt int, token string) bool {
	for _, l := range r.Logs {
		if l.Attempt == attempt && subtle.ConstantTimeCompare([]byte(l.Token), []byte(token)) == 1 {
			return true
		}
	}
	return false
}

// AddLogs keeps l with r, in attempt order; it reports false, leaving r
// unchanged, when r keeps MaxInlineLogAttempts attempts' logs already.
func (r *Record) AddLogs(l AttemptLogs) bool {
	if len(r.Logs) >= MaxInlineLogAttempts {
		return false
	}
	i := len(r.Logs)
	for i > 0 && r.Logs[i-1].Attempt > l.Attempt {
		i--
	}
	r.Logs = slices.Insert(r.Logs, i, l)
	return true
}
