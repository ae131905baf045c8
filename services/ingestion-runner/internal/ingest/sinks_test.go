package ingest_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/libs/events"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
)

// sinkSource is a small catalogue: database, schema, two tables = 4 records.
func sinkSource(t *testing.T) (*dbtest.DB, string) {
	db := dbtest.SharedPostgres(t)
	db.Exec(t, `CREATE TABLE a (id int PRIMARY KEY)`)
	db.Exec(t, `CREATE TABLE b (id int PRIMARY KEY, a_id int REFERENCES a (id))`)
	return db, fmt.Sprintf("source:\n  type: postgres\n  config: {host_port: '%s', database: '%s', username: '%s', password: '${PG_PASSWORD}'}\n",
		db.HostPort(), db.Database, db.User)
}

type request struct {
	path, query string
	header      http.Header
	body        []byte
}

// receiver records requests and fails the first `fail` of them with 503.
type receiver struct {
	mu   sync.Mutex
	reqs []request
	fail int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	r.reqs = append(r.reqs, request{path: req.URL.Path, query: req.URL.RawQuery, header: req.Header.Clone(), body: body})
}

func TestHTTPSink(t *testing.T) {
	db, source := sinkSource(t)
	rcv := &receiver{fail: 1}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	dir := t.TempDir()
	writeSecret(t, dir, "PG_PASSWORD", db.Password)
	writeSecret(t, dir, "HOOK_TOKEN", "hook-token-value")
	text := source + fmt.Sprintf("pipeline_name: nightly\nsink:\n  type: http\n  config: {url: '%s/hook', batch_size: 3, headers: {Authorization: 'Bearer ${HOOK_TOKEN}'}}\n", srv.URL)
	res, out := run(t, newTask(dir, nil), text)
	require.NoError(t, res.Err, out.text())
	require.Len(t, rcv.reqs, 2, "4 records in batches of 3, the 503 retried")
	var seqs []uint64
	var urns []string
	for _, r := range rcv.reqs {
		require.Equal(t, "/hook", r.path)
		require.Equal(t, "Bearer hook-token-value", r.header.Get("Authorization"))
		require.Equal(t, "application/json", r.header.Get("Content-Type"))
		var batch struct {
			JobID        string           `json:"job_id"`
			PipelineName string           `json:"pipeline_name"`
			FirstSeq     uint64           `json:"first_seq"`
			Records      []map[string]any `json:"records"`
		}
		require.NoError(t, json.Unmarshal(r.body, &batch))
		require.Equal(t, "job-1", batch.JobID)
		require.Equal(t, "nightly", batch.PipelineName)
		seqs = append(seqs, batch.FirstSeq)
		for _, rec := range batch.Records {
			urns = append(urns, rec["name"].(string)+" "+rec["entity_type"].(string))
			require.Contains(t, rec, "aspects")
		}
	}
	require.Equal(t, []uint64{1, 4}, seqs)
	d := db.Database
	require.Equal(t, []string{d + " database", d + ".public schema", d + ".public.a table", d + ".public.b table"}, urns)
	require.NotContains(t, out.text(), "hook-token-value")
}

func TestDataHubRESTSink(t *testing.T) {
	for _, mode := range []string{"ASYNC", "ASYNC_BATCH"} {
		t.Run(mode, func(t *testing.T) {
			db, source := sinkSource(t)
			rcv := &receiver{fail: 1}
			srv := httptest.NewServer(rcv)
			defer srv.Close()
			dir := t.TempDir()
			writeSecret(t, dir, "PG_PASSWORD", db.Password)
			writeSecret(t, dir, "DATAHUB_TOKEN", "pat-value")
			text := source + fmt.Sprintf("sink:\n  type: datahub-rest\n  config: {server: '%s/gms/', token: '${DATAHUB_TOKEN}', mode: %s}\n", srv.URL, mode)
			// systemMetadata: the run is named after the job unless the
			// recipe names it; pipeline_name when the recipe has one.
			system := map[string]any{"runId": "postgres-job-1", "lastObserved": float64(fixedNow.UnixMilli())}
			if mode == "ASYNC_BATCH" {
				text += "run_id: nightly-7\npipeline_name: nightly\n"
				system = map[string]any{"runId": "nightly-7", "lastObserved": float64(fixedNow.UnixMilli()), "pipelineName": "nightly"}
			}
			res, out := run(t, newTask(dir, nil), text)
			require.NoError(t, res.Err, out.text())

			var proposals []map[string]any
			for _, r := range rcv.reqs {
				require.Equal(t, "/gms/aspects", r.path)
				require.Equal(t, "2.0.0", r.header.Get("X-RestLi-Protocol-Version"))
				require.Equal(t, "Bearer pat-value", r.header.Get("Authorization"))
				var body map[string]any
				require.NoError(t, json.Unmarshal(r.body, &body))
				if mode == "ASYNC_BATCH" {
					require.Equal(t, "action=ingestProposalBatch", r.query)
					for _, p := range body["proposals"].([]any) {
						proposals = append(proposals, p.(map[string]any))
					}
				} else {
					require.Equal(t, "action=ingestProposal", r.query)
					proposals = append(proposals, body["proposal"].(map[string]any))
				}
			}
			// database: 3 aspects, schema: 4, each table: 4.
			require.Len(t, proposals, 15)
			var schemaOfB map[string]any
			for _, p := range proposals {
				require.Equal(t, "UPSERT", p["changeType"])
				require.Equal(t, system, p["systemMetadata"])
				require.Contains(t, []string{"container", "dataset"}, p["entityType"])
				aspect := p["aspect"].(map[string]any)
				require.Equal(t, "application/json", aspect["contentType"])
				var value map[string]any
				require.NoError(t, json.Unmarshal([]byte(aspect["value"].(string)), &value), "the aspect value is a JSON string")
				if p["aspectName"] == "schemaMetadata" && p["entityUrn"] == fmt.Sprintf("urn:li:dataset:(urn:li:dataPlatform:postgres,%s.public.b,PROD)", db.Database) {
					schemaOfB = value
				}
			}
			require.NotNil(t, schemaOfB)
			require.Equal(t, "urn:li:dataPlatform:postgres", schemaOfB["platform"])
			require.Equal(t, []any{"id"}, schemaOfB["primaryKeys"])
			require.Len(t, schemaOfB["fields"], 2)
			require.Len(t, schemaOfB["foreignKeys"], 1)
			require.NotContains(t, out.text(), "pat-value")
		})
	}
}

func TestOutpostSink(t *testing.T) {
	db, source := sinkSource(t)
	dir := t.TempDir()
	writeSecret(t, dir, "PG_PASSWORD", db.Password)
	pub := &publisher{}
	res, out := run(t, newTask(dir, pub), source+"sink: {type: outpost, config: {batch_size: 3}}\n")
	require.NoError(t, res.Err, out.text())
	require.Equal(t, "4", res.Outputs["records"])
	require.Len(t, pub.msgs, 2)
	require.Equal(t, 2, res.RecordBatches, "the terminal status names the batches sent")
	var names []string
	for i, m := range pub.msgs {
		require.Equal(t, "outpost.acme.job-events.job-1.records", m.Subject)
		require.Equal(t, fmt.Sprintf("job-1-1-records-%d", []int{1, 4}[i]), m.DedupeID)
		jr, err := events.DecodeAs[*ingestv1.JobRecords](m.Header, m.Data)
		require.NoError(t, err)
		require.Equal(t, "job-1", jr.GetJobId())
		require.Equal(t, uint32(1), jr.GetEnvelope().GetAttempt())
		require.Equal(t, "acme", jr.GetEnvelope().GetTenant())
		require.Equal(t, []uint64{1, 4}[i], jr.GetFirstSeq())
		for _, r := range jr.GetRecords() {
			names = append(names, r.GetName())
		}
	}
	d := db.Database
	require.Equal(t, []string{d, d + ".public", d + ".public.a", d + ".public.b"}, names)
}
