package app_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
	"github.com/outposthq/outpost/services/scheduler/internal/config"
)

// logChunk publishes log lines of an attempt as a runner would.
func (e *env) logChunk(tenant, id string, attempt uint32, first uint64, lines ...string) {
	e.t.Helper()
	m := &jobsv1.LogChunk{Envelope: events.NewEnvelope(tenant, attempt, "", ""), JobId: id, FirstSeq: first, AttemptToken: e.attemptToken(tenant, id)}
	for _, l := range lines {
		m.Lines = append(m.Lines, &jobsv1.LogLine{Time: timestamppb.New(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)), Stream: "stdout", Text: l})
	}
	e.publish(e.subjects.JobLogs(tenant, id), m, "")
}

func TestLogs(t *testing.T) {
	e := newEnv(t)
	j := e.submit("", noopJob(nil))
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	e.logChunk("default", j.ID, 1, 0, "hello", "world")

	t.Run("text", func(t *testing.T) {
		code, out := e.do("GET", "/api/v1/jobs/"+j.ID+"/logs", "", nil)
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "2025-01-02T03:04:05Z 1 stdout hello\n2025-01-02T03:04:05Z 1 stdout world\n", string(out))
	})
	t.Run("ndjson", func(t *testing.T) {
		code, out := e.do("GET", "/api/v1/jobs/"+j.ID+"/logs?format=ndjson", "", nil)
		require.Equal(t, http.StatusOK, code)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		require.Len(t, lines, 2)
		var l struct {
			Attempt int    `json:"attempt"`
			Seq     int    `json:"seq"`
			Stream  string `json:"stream"`
			Text    string `json:"text"`
		}
		require.NoError(t, json.Unmarshal([]byte(lines[1]), &l))
		require.Equal(t, 1, l.Attempt)
		require.Equal(t, 1, l.Seq)
		require.Equal(t, "world", l.Text)
	})
	t.Run("bad parameters", func(t *testing.T) {
		code, out := e.do("GET", "/api/v1/jobs/"+j.ID+"/logs?format=xml", "", nil)
		require.Equal(t, http.StatusBadRequest, code)
		require.JSONEq(t, `{"error":"must be text or ndjson","field":"format"}`, string(out))
		code, _ = e.do("GET", "/api/v1/jobs/nope/logs", "", nil)
		require.Equal(t, http.StatusNotFound, code)
	})
	t.Run("follow", func(t *testing.T) {
		rd := e.followLogs(j.ID)
		line := func() string {
			s, err := rd.ReadString('\n')
			require.NoError(t, err)
			return s
		}
		require.Equal(t, "2025-01-02T03:04:05Z 1 stdout hello\n", line())
		require.Equal(t, "2025-01-02T03:04:05Z 1 stdout world\n", line())
		e.logChunk("default", j.ID, 1, 2, "later")
		require.Equal(t, "2025-01-02T03:04:05Z 1 stdout later\n", line(), "new lines are streamed")
		e.logChunk("default", j.ID, 1, 3, "last words")
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 1)
		rest, err := io.ReadAll(rd)
		require.NoError(t, err, "the follow ends when the job has ended")
		require.Equal(t, "2025-01-02T03:04:05Z 1 stdout last words\n", string(rest))
	})
}

func TestCancel(t *testing.T) {
	e := newEnv(t)
	cancelOf := func(m queue.StreamMessage) *jobsv1.CancelJob {
		c, err := events.DecodeAs[*jobsv1.CancelJob](m.Header, m.Data)
		require.NoError(t, err)
		return c
	}
	t.Run("running: the runner is told on its own subject", func(t *testing.T) {
		j := e.submit("", noopJob(map[string]any{"pool": "p1"}))
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
		e.waitState("", j.ID, "RUNNING")
		code, out := e.do("POST", "/api/v1/jobs/"+j.ID+"/cancel", "", map[string]string{"reason": "not needed"})
		require.Equal(t, http.StatusOK, code, string(out))
		c := decode[jobView](t, out)
		require.Equal(t, "CANCELLED", c.State)
		require.Equal(t, "not needed", c.Reason)

		msgs := e.read(e.subjects.RunnerControl("default", "p1", "runner-1"))
		require.Len(t, msgs, 1)
		require.Equal(t, j.ID, cancelOf(msgs[0]).JobId)
		require.Equal(t, "not needed", cancelOf(msgs[0]).Reason)

		code, out = e.do("POST", "/api/v1/jobs/"+j.ID+"/cancel", "", nil)
		require.Equal(t, http.StatusConflict, code, string(out))
	})
	t.Run("queued: cancelled in the record; the runner that takes it is told", func(t *testing.T) {
		j := e.submit("", noopJob(map[string]any{"pool": "p2"}))
		code, out := e.do("POST", "/api/v1/jobs/"+j.ID+"/cancel", "", nil)
		require.Equal(t, http.StatusOK, code, string(out))
		require.Empty(t, e.read(e.subjects.Stack+".default.control.p2.>"), "no runner has it yet")

		// A runner that took the job before it heard of the cancel
		// reports it RUNNING: it is told, and the record stays CANCELLED.
		e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1, func(m *jobsv1.JobStatus) { m.RunnerId = "runner-7" })
		require.Eventually(t, func() bool { return len(e.read(e.subjects.RunnerControl("default", "p2", "runner-7"))) == 1 }, waitFor, tick)
		require.Equal(t, "CANCELLED", e.job("", j.ID).State)
	})
	t.Run("unknown job", func(t *testing.T) {
		code, _ := e.do("POST", "/api/v1/jobs/unknown/cancel", "", nil)
		require.Equal(t, http.StatusNotFound, code)
	})
}

type explainView struct {
	State   string `json:"state"`
	Summary string `json:"summary"`
	Reasons []struct {
		Code    string     `json:"code"`
		Message string     `json:"message"`
		At      *time.Time `json:"at"`
	} `json:"reasons"`
	Runners struct {
		Live int `json:"live"`
		Busy int `json:"busy"`
	} `json:"runners"`
}

func (e *env) explain(id string) explainView {
	e.t.Helper()
	code, out := e.do("GET", "/api/v1/jobs/"+id+"/explain", "", nil)
	require.Equal(e.t, http.StatusOK, code, string(out))
	return decode[explainView](e.t, out)
}

func codes(x explainView) []string {
	var out []string
	for _, r := range x.Reasons {
		out = append(out, r.Code)
	}
	return out
}

func TestExplain(t *testing.T) {
	e := newEnv(t)
	j := e.submit("", noopJob(map[string]any{"pool": "etl"}))

	x := e.explain(j.ID)
	require.Equal(t, []string{"NO_RUNNERS"}, codes(x))
	require.Contains(t, x.Summary, `no runner of pool "etl"`)

	e.heartbeat("default", "other", "r-other", 0, 4, false)
	require.Eventually(t, func() bool {
		return strings.Contains(e.explain(j.ID).Summary, "runners are live in pools other")
	}, waitFor, tick)

	e.heartbeat("default", "etl", "r1", 2, 2, false)
	require.Eventually(t, func() bool { return codes(e.explain(j.ID))[0] == "RUNNERS_BUSY" }, waitFor, tick)
	e.heartbeat("default", "etl", "r1", 2, 2, true)
	require.Eventually(t, func() bool { return codes(e.explain(j.ID))[0] == "RUNNERS_DRAINING" }, waitFor, tick)
	e.heartbeat("default", "etl", "r1", 1, 2, false)
	require.Eventually(t, func() bool { return codes(e.explain(j.ID))[0] == "WAITING_FOR_RUNNER" }, waitFor, tick)
	require.Equal(t, 1.0, e.metric("outpost_runners", map[string]string{"tenant": "default", "pool": "etl"}))

	// Attempt 1 failed; the retry is due in a minute.
	retryAt := time.Now().Add(time.Minute).UTC().Truncate(time.Second)
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_RUNNING, 1)
	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_QUEUED, 1, withReason("exit status 1"), withRetryAt(retryAt))
	require.Eventually(t, func() bool { return e.job("", j.ID).RetryAt != nil }, waitFor, tick)
	x = e.explain(j.ID)
	require.Equal(t, "RETRY_WAIT", x.Reasons[0].Code)
	require.Contains(t, x.Reasons[0].Message, "attempt 1 of 3 failed: exit status 1")
	require.True(t, x.Reasons[0].At.Equal(retryAt))

	e.status("default", j.ID, jobsv1.JobState_JOB_STATE_SUCCEEDED, 2)
	e.waitState("default", j.ID, "SUCCEEDED")
	require.Equal(t, []string{"SUCCEEDED"}, codes(e.explain(j.ID)))
}

func TestPauseResume(t *testing.T) {
	e := newEnv(t)
	r := e.runner("default", "etl")
	code, out := e.do("POST", "/api/v1/pools/etl/pause", "", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	require.JSONEq(t, `true`, string(mustField(t, out, "paused")))

	j := e.submit("", noopJob(map[string]any{"pool": "etl"}))
	require.True(t, j.Held)
	x := e.explain(j.ID)
	require.Equal(t, "POOL_PAUSED", x.Reasons[0].Code)
	r.requireEmpty(t)

	code, out = e.do("GET", "/api/v1/pools", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(out), `"pool":"etl","paused":true`)

	code, out = e.do("POST", "/api/v1/pools/etl/resume", "", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	require.JSONEq(t, `1`, string(mustField(t, out, "dispatched")))
	_, m := r.next(t)
	require.Equal(t, j.ID, m.JobId)
	require.False(t, e.job("", j.ID).Held)

	code, out = e.do("POST", "/api/v1/pools/bad.pool/pause", "", nil)
	require.Equal(t, http.StatusBadRequest, code, string(out))
}

func mustField(t *testing.T, body []byte, field string) json.RawMessage {
	t.Helper()
	m := decode[map[string]json.RawMessage](t, body)
	v, ok := m[field]
	require.True(t, ok, "no %q in %s", field, body)
	return v
}

func TestQueueDrivenSubmit(t *testing.T) {
	e := newEnv(t)
	r := e.runner("acme", "default")
	spec := &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Noop{Noop: &jobsv1.NoopTask{Sleep: durationpb.New(time.Second)}}}}

	e.publish(e.subjects.Submit("acme"), &jobsv1.SubmitJob{Envelope: events.NewEnvelope("acme", 0, "", ""), JobId: "from-queue", Spec: spec}, "")
	_, m := r.next(t)
	require.Equal(t, "from-queue", m.JobId)
	require.Equal(t, "QUEUED", e.job("acme", "from-queue").State)

	// Without an id, one is derived from the message.
	e.publish(e.subjects.Submit("acme"), &jobsv1.SubmitJob{Envelope: events.NewEnvelope("acme", 0, "", ""), Spec: spec}, "")
	_, m = r.next(t)
	require.Len(t, m.JobId, 26)
	require.Equal(t, "QUEUED", e.job("acme", m.JobId).State)

	// An invalid spec creates the job FAILED with the reason.
	bad := &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Command{Command: &jobsv1.CommandTask{}}}}
	e.publish(e.subjects.Submit("acme"), &jobsv1.SubmitJob{Envelope: events.NewEnvelope("acme", 0, "", ""), JobId: "bad-spec", Spec: bad}, "")
	require.Eventually(t, func() bool {
		code, _ := e.do("GET", "/api/v1/jobs/bad-spec", "acme", nil)
		return code == http.StatusOK
	}, waitFor, tick)
	failed := e.job("acme", "bad-spec")
	require.Equal(t, "FAILED", failed.State)
	require.Equal(t, "invalid spec: task.command.command: is required", failed.Reason)

	// A SubmitJob naming another tenant is dead-lettered.
	e.publish(e.subjects.Submit("acme"), &jobsv1.SubmitJob{Envelope: events.NewEnvelope("default", 0, "", ""), JobId: "wrong-tenant", Spec: spec}, "")
	require.Eventually(t, func() bool {
		return e.metric("outpost_malformed_messages_total", map[string]string{"role": "submit"}) == 1
	}, waitFor, tick)
	r.requireEmpty(t)

	code, out := e.do("GET", "/api/v1/jobs?state=queued", "acme", nil)
	require.Equal(t, http.StatusOK, code)
	list := decode[struct {
		Jobs  []jobView `json:"jobs"`
		Total int       `json:"total"`
	}](t, out)
	require.Equal(t, 2, list.Total)
	require.Equal(t, m.JobId, list.Jobs[0].ID, "newest first")
}

func TestTenants(t *testing.T) {
	e := newEnv(t)
	code, out := e.do("GET", "/api/v1/jobs", "newco", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.JSONEq(t, `{"error":"unknown tenant \"newco\": it is neither configured nor added with PUT /api/v1/tenants/newco","field":"X-Outpost-Tenant"}`, string(out))
	code, _ = e.do("GET", "/api/v1/jobs", "bad.name", nil)
	require.Equal(t, http.StatusBadRequest, code)

	code, out = e.do("PUT", "/api/v1/tenants/newco", "", map[string]any{"limits": map[string]int{"max_messages": 1000}})
	require.Equal(t, http.StatusCreated, code, string(out))
	require.Contains(t, string(out), `"max_messages":1000`)
	code, _ = e.do("PUT", "/api/v1/tenants/newco", "", nil)
	require.Equal(t, http.StatusOK, code)
	code, out = e.do("PUT", "/api/v1/tenants/newco", "", `{"limits":{"max_bytes":-1}}`)
	require.Equal(t, http.StatusBadRequest, code, string(out))

	r := e.runner("newco", "default")
	j := e.submit("newco", noopJob(nil))
	require.Equal(t, "newco", j.Tenant)
	_, m := r.next(t)
	require.Equal(t, j.ID, m.JobId)
	code, _ = e.do("GET", "/api/v1/jobs/"+j.ID, "", nil)
	require.Equal(t, http.StatusNotFound, code, "jobs are per tenant")

	code, out = e.do("GET", "/api/v1/tenants", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(out), `"name":"newco"`)
}

func TestSubmitValidation(t *testing.T) {
	e := newEnv(t, func(c *config.Config) { c.API.MaxRequestBytes = 1024 })
	cases := []struct {
		name  string
		body  string
		code  int
		field string
	}{
		{"unknown top-level field", `{"task":{"noop":{}},"colour":"red"}`, 400, "colour"},
		{"unknown nested field", `{"task":{"command":{"command":"x","shell":true}}}`, 400, "task.command.shell"},
		{"wrong type", `{"task":{"noop":{}},"retry":{"max_attempts":"3"}}`, 400, "retry.max_attempts"},
		{"empty command", `{"task":{"command":{"command":""}}}`, 400, "task.command.command"},
		{"two task kinds", `{"task":{"noop":{},"command":{"command":"x"}}}`, 400, "task"},
		{"no task", `{"pool":"default"}`, 400, "task"},
		{"bad duration", `{"task":{"noop":{}},"timeout":"soon"}`, 400, "timeout"},
		{"bad id", `{"id":"a/b","task":{"noop":{}}}`, 400, "id"},
		{"bad pool", `{"pool":"a b","task":{"noop":{}}}`, 400, "pool"},
		{"not JSON", `{"task":`, 400, ""},
		{"too large", `{"task":{"command":{"command":"` + strings.Repeat("x", 2000) + `"}}}`, 413, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out := e.do("POST", "/api/v1/jobs", "", c.body)
			require.Equal(t, c.code, code, string(out))
			body := decode[map[string]string](t, out)
			require.NotEmpty(t, body["error"])
			require.Equal(t, c.field, body["field"])
		})
	}
}
