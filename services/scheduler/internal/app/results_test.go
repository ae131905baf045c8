package app_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/outposthq/outpost/libs/events"
	"github.com/outposthq/outpost/libs/queue"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"
)

type resultsView struct {
	JobID        string `json:"job_id"`
	Attempt      int    `json:"attempt"`
	TotalRecords int    `json:"total_records"`
	TotalChecks  int    `json:"total_checks"`
	Next         string `json:"next"`
	Records      []struct {
		URN     string         `json:"urn"`
		Name    string         `json:"name"`
		Aspects map[string]any `json:"aspects"`
	} `json:"records"`
	Checks []struct {
		Name     string `json:"name"`
		Outcome  string `json:"outcome"`
		Observed string `json:"observed"`
	} `json:"checks"`
}

func dataset(name, comment string) *ingestv1.MetadataRecord {
	props, _ := structpb.NewStruct(map[string]any{"description": comment})
	return &ingestv1.MetadataRecord{
		Urn:        "urn:li:dataset:(urn:li:dataPlatform:postgres," + name + ",PROD)",
		EntityType: "table", Platform: "postgres", Name: name,
		Aspects: map[string]*structpb.Struct{"datasetProperties": props},
	}
}

// records publishes a JobRecords batch as a runner's outpost sink would.
func (e *env) records(id string, attempt uint32, seq uint64, produced int64, checks []*ingestv1.CheckResult, recs ...*ingestv1.MetadataRecord) {
	e.t.Helper()
	m := &ingestv1.JobRecords{Envelope: events.NewEnvelope("default", attempt, "", ""), JobId: id, FirstSeq: seq, AttemptToken: e.attemptToken("default", id),
		Records: recs, Checks: checks, ProducedAt: timestamppb.New(time.Unix(1_740_000_000+produced, 0))}
	e.publish(e.subjects.JobRecords("default", id), m, fmt.Sprintf("%s-%d-%d", id, attempt, seq))
}

func (e *env) results(id, query string) resultsView {
	e.t.Helper()
	code, out := e.do("GET", "/api/v1/jobs/"+id+"/results"+query, "", nil)
	require.Equal(e.t, http.StatusOK, code, string(out))
	return decode[resultsView](e.t, out)
}

// The records of a job's current attempt are kept in order and queryable;
// a stale attempt's are dropped; the metadata view holds the latest record
// of each URN; a malformed batch is dead-lettered and counted.
func TestJobResults(t *testing.T) {
	e := newEnv(t)
	e.submit("", noopJob(map[string]any{"id": "ing-1"}))
	e.status("default", "ing-1", jobsv1.JobState_JOB_STATE_RUNNING, 1)
	e.waitState("", "ing-1", "RUNNING")

	// Out of order, and one batch twice (a redelivery).
	e.records("ing-1", 1, 2, 2, nil, dataset("db.public.b", "b1"), dataset("db.public.c", "c1"))
	e.records("ing-1", 1, 0, 1, nil, dataset("db.public.a", "a1"), dataset("db.public.b", "b0"))
	e.records("ing-1", 1, 0, 1, nil, dataset("db.public.a", "a1"), dataset("db.public.b", "b0"))
	var r resultsView
	require.Eventually(t, func() bool { r = e.results("ing-1", ""); return r.TotalRecords == 4 }, waitFor, tick)
	require.Equal(t, 1, r.Attempt)
	names := []string{}
	for _, rec := range r.Records {
		names = append(names, rec.Name)
	}
	require.Equal(t, []string{"db.public.a", "db.public.b", "db.public.b", "db.public.c"}, names)
	require.Equal(t, "a1", r.Records[0].Aspects["datasetProperties"].(map[string]any)["description"])

	// Paging: one batch per page here.
	p1 := e.results("ing-1", "?limit=1")
	require.Len(t, p1.Records, 2)
	require.Equal(t, "2", p1.Next)
	p2 := e.results("ing-1", "?limit=1&from="+p1.Next)
	require.Len(t, p2.Records, 2)
	require.Empty(t, p2.Next)

	// The metadata view: the latest record of each URN (b1 was produced
	// after b0, whatever the order they came in).
	code, out := e.do("GET", "/api/v1/metadata/datasets?platform=postgres&name=db.public.b", "", nil)
	require.Equal(t, http.StatusOK, code, string(out))
	require.Contains(t, string(out), `"total":1`)
	require.Contains(t, string(out), `"description":"b1"`)

	// Attempt 2 replaces attempt 1: its late records are fenced.
	e.status("default", "ing-1", jobsv1.JobState_JOB_STATE_RUNNING, 2)
	require.Eventually(t, func() bool { return e.job("", "ing-1").Attempt == 2 }, waitFor, tick)
	require.Empty(t, e.results("ing-1", "").Records, "attempt 1's results are not the job's any more")
	fenced := e.metric("outpost_fenced_events_total", map[string]string{"reason": "stale_attempt"})
	e.records("ing-1", 1, 4, 3, nil, dataset("db.public.z", "late"))
	require.Eventually(t, func() bool {
		return e.metric("outpost_fenced_events_total", map[string]string{"reason": "stale_attempt"}) == fenced+1
	}, waitFor, tick)
	e.records("ing-1", 2, 0, 4, []*ingestv1.CheckResult{{Name: "rows", Outcome: ingestv1.CheckOutcome_CHECK_OUTCOME_PASS, Observed: "12"}}, dataset("db.public.a", "a2"))
	require.Eventually(t, func() bool { r = e.results("ing-1", ""); return r.TotalRecords == 1 }, waitFor, tick)
	require.Equal(t, 2, r.Attempt)
	require.Equal(t, 1, r.TotalChecks)
	require.Equal(t, "PASS", r.Checks[0].Outcome)
	require.Equal(t, "12", r.Checks[0].Observed)
	code, out = e.do("GET", "/api/v1/metadata/datasets?platform=postgres", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(out), `"total":3`, "z came from a stale attempt")
	require.Contains(t, string(out), `"description":"a2"`)

	// Malformed: dead-lettered and counted, never redelivered.
	require.NoError(t, e.conn.Publish(e.ctx, queue.Message{
		Subject: e.subjects.JobRecords("default", "ing-1"), Data: []byte("not protobuf \xff\xff"),
		Header: map[string]string{queue.HeaderType: events.TypeName(&ingestv1.JobRecords{})},
	}))
	require.Eventually(t, func() bool {
		return e.metric("outpost_malformed_messages_total", map[string]string{"role": "job-events"}) == 1
	}, waitFor, tick)

	code, _ = e.do("GET", "/api/v1/jobs/nope/results", "", nil)
	require.Equal(t, http.StatusNotFound, code)
}

// A terminal status that arrives before the results its attempt sent (the
// records and statuses go to different consumers) is applied only once
// they are stored: a job that has ended has its results.
func TestTerminalStatusWaitsForItsResults(t *testing.T) {
	e := newEnv(t)
	e.submit("", noopJob(map[string]any{"id": "ing-w"}))
	e.status("default", "ing-w", jobsv1.JobState_JOB_STATE_RUNNING, 1)
	e.waitState("", "ing-w", "RUNNING")

	retried := map[string]string{"outcome": "retried"}
	e.status("default", "ing-w", jobsv1.JobState_JOB_STATE_SUCCEEDED, 1, func(m *jobsv1.JobStatus) {
		m.Result = &jobsv1.JobResult{RecordBatches: 2}
	})
	require.Eventually(t, func() bool { return e.metric("outpost_terminal_status_results_waits_total", retried) >= 2 }, waitFor, tick)
	require.Equal(t, "RUNNING", e.job("", "ing-w").State, "no results stored yet")

	e.records("ing-w", 1, 1, 1, nil, dataset("db.public.a", "a"))
	require.Eventually(t, func() bool { return e.results("ing-w", "").TotalRecords == 1 }, waitFor, tick)
	n := e.metric("outpost_terminal_status_results_waits_total", retried)
	require.Eventually(t, func() bool { return e.metric("outpost_terminal_status_results_waits_total", retried) > n }, waitFor, tick)
	require.Equal(t, "RUNNING", e.job("", "ing-w").State, "one batch of two stored")

	e.records("ing-w", 1, 2, 2, nil, dataset("db.public.b", "b"))
	e.waitState("", "ing-w", "SUCCEEDED")
	r := e.results("ing-w", "")
	require.Equal(t, 2, r.TotalRecords)
	require.Zero(t, e.metric("outpost_terminal_status_results_waits_total", map[string]string{"outcome": "incomplete"}))
}
