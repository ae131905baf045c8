package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/jobs"
)

// withLogs has a status carry lines of its attempt (JobStatus.logs), as a
// runner sends a short attempt's lines with its outcome.
func withLogs(token string, lines ...string) statusOpt {
	return func(m *jobsv1.JobStatus) {
		m.Logs = &jobsv1.LogChunk{FirstSeq: 1, AttemptToken: token}
		for _, l := range lines {
			m.Logs.Lines = append(m.Logs.Lines, &jobsv1.LogLine{Time: timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)), Stream: "runner", Text: l})
		}
	}
}

// logsOf is the text answer of GET /api/v1/jobs/{id}/logs with query.
func (e *env) logsOf(id, query string) string {
	e.t.Helper()
	code, out := e.do("GET", "/api/v1/jobs/"+id+"/logs"+query, "", nil)
	require.Equal(e.t, http.StatusOK, code, string(out))
	return string(out)
}

const logTime = "2025-01-02T03:04:05Z"

// TestInlineLogs: lines a short attempt sends with its outcome are kept
// with the job's record instead of on the log subject, and the logs API
// shows them in their place among the subject's chunks.
func TestInlineLogs(t *testing.T) {
	e := newEnv(t)
	retry3 := map[string]any{"retry": map[string]any{"max_attempts": 3}}

	t.Run("the dispatch offers it", func(t *testing.T) {
		r := e.runner("default", "inline")
		j := e.submit("", noopJob(map[string]any{"pool": "inline"}))
		_, d := r.next(t)
		require.Equal(t, j.ID, d.GetJobId())
		require.Equal(t, uint32(jobs.InlineLogsMax), d.GetInlineLogsMax())
	})

	t.Run("attempts in order, whichever way their lines came", func(t *testing.T) {
		j := e.submit("", noopJob(retry3))
		tok := e.attemptToken("default", j.ID)
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_QUEUED, 1, withReason("boom"), withLogs(tok, "one", "two"))
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 2)
		e.logChunk("default", j.ID, 2, 1, "three")
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_QUEUED, 2, withReason("boom"))
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 3)
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 3, withLogs(tok, "four"))
		// Delivered again: its lines are kept once.
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 3, withLogs(tok, "four"))
		e.waitState("", j.ID, "SUCCEEDED")

		want := logTime + " 1 runner one\n" + logTime + " 1 runner two\n" + logTime + " 2 stdout three\n" + logTime + " 3 runner four\n"
		require.Eventually(t, func() bool { return e.logsOf(j.ID, "") == want }, waitFor, tick)
		require.Equal(t, logTime+" 3 runner four\n", e.logsOf(j.ID, "?attempt=3"))
		require.Equal(t, logTime+" 1 runner one\n"+logTime+" 1 runner two\n", e.logsOf(j.ID, "?attempt=1"))
		require.Contains(t, e.logsOf(j.ID, "?format=ndjson"), `"attempt":1,"seq":2,"stream":"runner","text":"two"`)

		require.Len(t, e.read(e.subjects.JobLogs("default", j.ID)), 1, "only attempt 2's chunk is on the log subject")
		_, out := e.do("GET", "/api/v1/jobs/"+j.ID, "", nil)
		require.NotContains(t, string(out), "four", "the record's answer does not carry the lines")
	})

	t.Run("lines of another dispatch are not shown", func(t *testing.T) {
		j := e.submit("", noopJob(nil))
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1, withLogs("forged-token", "not mine"),
			func(m *jobsv1.JobStatus) { m.AttemptToken = "forged-token" })
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1, withLogs(e.attemptToken("default", j.ID), "mine"))
		e.waitState("", j.ID, "SUCCEEDED")
		require.Equal(t, logTime+" 1 runner mine\n", e.logsOf(j.ID, ""))
	})

	t.Run("lines larger than the dispatch allowed go to the log subject", func(t *testing.T) {
		j := e.submit("", noopJob(nil))
		big := strings.Repeat("x", jobs.InlineLogsMax)
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1, withLogs(e.attemptToken("default", j.ID), "short", big))
		e.waitState("", j.ID, "SUCCEEDED")
		require.Eventually(t, func() bool { return len(e.read(e.subjects.JobLogs("default", j.ID))) == 1 }, waitFor, tick)
		require.Equal(t, logTime+" 1 runner short\n"+logTime+" 1 runner "+big+"\n", e.logsOf(j.ID, ""))
	})

	t.Run("a follow shows an attempt's lines when it ends", func(t *testing.T) {
		j := e.submit("", noopJob(retry3))
		tok := e.attemptToken("default", j.ID)
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
		e.waitState("", j.ID, "RUNNING")
		rd := e.followLogs(j.ID)

		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_QUEUED, 1, withReason("boom"), withLogs(tok, "first try"))
		s, err := rd.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, logTime+" 1 runner first try\n", s, "shown while the job waits for its retry")

		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 2)
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 2, withLogs(tok, "second try"))
		rest, err := io.ReadAll(rd)
		require.NoError(t, err, "the follow ends when the job has ended")
		require.Equal(t, logTime+" 2 runner second try\n", string(rest))
	})
}
