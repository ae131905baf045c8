package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/tests/harness"
)

// metadataRecord is a record as the results and the metadata view return it.
type metadataRecord struct {
	URN        string         `json:"urn"`
	EntityType string         `json:"entity_type"`
	Platform   string         `json:"platform"`
	Name       string         `json:"name"`
	Aspects    map[string]any `json:"aspects"`
	JobID      string         `json:"job_id"`
}

// resultsPage is GET /api/v1/jobs/{id}/results.
type resultsPage struct {
	JobID        string           `json:"job_id"`
	State        string           `json:"state"`
	Attempt      int              `json:"attempt"`
	TotalRecords int              `json:"total_records"`
	Records      []metadataRecord `json:"records"`
	Next         string           `json:"next"`
}

// ingestSpec is a job spec for an ingest task with one attempt.
func ingestSpec(recipe string) map[string]any {
	return map[string]any{
		"task":    map[string]any{"ingest": map[string]any{"recipe": recipe, "format": "yaml"}},
		"retry":   map[string]any{"max_attempts": 1},
		"timeout": "2m",
	}
}

// sqlRecipe is a recipe reading one database into the outpost sink; extra
// is added to the source config (YAML flow-mapping entries).
func sqlRecipe(kind, hostPort, database, user, password, extra string) string {
	cfg := fmt.Sprintf("{host_port: '%s', database: '%s', username: '%s', password: '%s'", hostPort, database, user, password)
	if extra != "" {
		cfg += ", " + extra
	}
	return fmt.Sprintf("pipeline_name: e2e-%s\nsource:\n  type: %s\n  config: %s}\nsink: {type: outpost}\n", kind, kind, cfg)
}

// writeSecret writes one file of the runner's secrets folder.
func writeSecret(t *testing.T, dir, name, value string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(value+"\n"), 0o600))
}

// results reads every page of a job's results (bounded).
func results(t *testing.T, c *harness.Client, id string) (resultsPage, []metadataRecord) {
	t.Helper()
	var first resultsPage
	var all []metadataRecord
	from := ""
	for page := 0; page < 100; page++ {
		code, body := c.Do(http.MethodGet, "/api/v1/jobs/"+id+"/results?limit=1000&from="+url.QueryEscape(from), nil)
		require.Equal(t, http.StatusOK, code, "results %s: %s", id, body)
		var p resultsPage
		require.NoError(t, json.Unmarshal(body, &p))
		if page == 0 {
			first = p
		}
		all = append(all, p.Records...)
		if p.Next == "" {
			return first, all
		}
		from = p.Next
	}
	t.Fatalf("results of %s: more than 100 pages", id)
	return first, all
}

// datasets queries the tenant's metadata view.
func datasets(t *testing.T, c *harness.Client, platform, name string) []metadataRecord {
	t.Helper()
	ds, err := tryDatasets(c, platform, name)
	require.NoError(t, err)
	return ds
}

// tryDatasets is datasets for polled conditions: it reports what is wrong
// instead of failing the test.
func tryDatasets(c *harness.Client, platform, name string) ([]metadataRecord, error) {
	q := url.Values{"platform": {platform}, "name": {name}}
	code, body, err := c.Try(http.MethodGet, "/api/v1/metadata/datasets?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("datasets: status %d: %s", code, body)
	}
	var out struct {
		Datasets []metadataRecord `json:"datasets"`
		Total    int              `json:"total"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("datasets: %w", err)
	}
	if len(out.Datasets) != out.Total {
		return nil, fmt.Errorf("datasets: %d listed, total %d", len(out.Datasets), out.Total)
	}
	return out.Datasets, nil
}

// project renders what the test asserts of a record, one line per fact, so
// a mismatch shows as a readable diff.
func project(rec metadataRecord) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s %s\n", rec.EntityType, rec.Platform, rec.Name, rec.URN)
	get := func(a, k string) any {
		m, _ := rec.Aspects[a].(map[string]any)
		return m[k]
	}
	if d := get("datasetProperties", "description"); d != nil {
		fmt.Fprintf(&b, "  description: %v\n", d)
	}
	if st := get("subTypes", "typeNames"); st != nil {
		fmt.Fprintf(&b, "  subTypes: %v\n", st)
	}
	if fs, ok := get("schemaMetadata", "fields").([]any); ok {
		for _, f := range fs {
			m, _ := f.(map[string]any)
			typ := []string{}
			if tm, ok := m["type"].(map[string]any); ok {
				if inner, ok := tm["type"].(map[string]any); ok {
					for k := range inner {
						typ = append(typ, strings.TrimPrefix(k, "com.linkedin.schema."))
					}
				}
			}
			sort.Strings(typ)
			fmt.Fprintf(&b, "  field %v %v %v nullable=%v key=%v", m["fieldPath"], m["nativeDataType"], typ, m["nullable"], m["isPartOfKey"])
			if d, ok := m["description"]; ok {
				fmt.Fprintf(&b, " %q", d)
			}
			b.WriteString("\n")
		}
	}
	if pk := get("schemaMetadata", "primaryKeys"); pk != nil {
		fmt.Fprintf(&b, "  primaryKeys: %v\n", pk)
	}
	if fks, ok := get("schemaMetadata", "foreignKeys").([]any); ok {
		for _, f := range fks {
			m, _ := f.(map[string]any)
			fmt.Fprintf(&b, "  fk %v: %v -> %v (%v)\n", m["name"], m["sourceFields"], m["foreignFields"], m["foreignDataset"])
		}
	}
	if v := get("viewProperties", "viewLogic"); v != nil {
		fmt.Fprintf(&b, "  view: %s\n", strings.Join(strings.Fields(fmt.Sprint(v)), " "))
	}
	if c := get("container", "container"); c != nil {
		fmt.Fprintf(&b, "  container: %v\n", c)
	}
	return b.String()
}

var containerURN = regexp.MustCompile(`urn:li:container:[0-9a-f]{32}`)

// normalize replaces the test's random database name and numbers the
// container URNs (md5 of names holding it) by first appearance; PostgreSQL
// 16 stopped qualifying view columns, so compare without.
func normalize(s, database string) string {
	s = strings.ReplaceAll(s, database, "DB")
	s = strings.ReplaceAll(s, "orders.id", "id")
	s = strings.ReplaceAll(s, "(orders.line > 1)", "(line > 1)")
	seen := map[string]string{}
	return containerURN.ReplaceAllStringFunc(s, func(u string) string {
		if _, ok := seen[u]; !ok {
			seen[u] = fmt.Sprintf("urn:li:container:C%d", len(seen)+1)
		}
		return seen[u]
	})
}

// noSecretAnywhere checks that none of the values is in the processes'
// logs, the job's log, its record (reason, history: its events) or its
// results.
func noSecretAnywhere(t *testing.T, c *harness.Client, procs []*harness.Process, jobID string, values ...string) {
	t.Helper()
	_, record := c.Do(http.MethodGet, "/api/v1/jobs/"+jobID, nil)
	_, res := c.Do(http.MethodGet, "/api/v1/jobs/"+jobID+"/results?limit=1000", nil)
	_, explain := c.Do(http.MethodGet, "/api/v1/jobs/"+jobID+"/explain", nil)
	places := map[string]string{
		"job log": c.Logs(jobID), "job record": string(record), "results": string(res), "explain": string(explain),
	}
	for _, p := range procs {
		places["process log of "+p.Name] = p.Logs()
	}
	for where, text := range places {
		for _, v := range values {
			require.NotContains(t, text, v, "secret value in %s", where)
		}
	}
}

// waitLogContains waits until the job's log holds s (logs may trail the
// terminal state by a flush).
func waitLogContains(t *testing.T, c *harness.Client, id, s string) {
	t.Helper()
	require.Eventually(t, func() bool {
		code, body, err := c.Try(http.MethodGet, "/api/v1/jobs/"+id+"/logs", nil)
		return err == nil && code == http.StatusOK && strings.Contains(string(body), s)
	}, 15*time.Second, 50*time.Millisecond, "job %s log never contained %q", id, s)
}

// noSecretOnBroker reads every message the broker holds, in every stream
// (queues, job events and logs, the KV buckets of records, results and the
// metadata view), and checks that none of the values is in one. It reads
// with the control plane's credentials, which may read every stream.
func noSecretOnBroker(t *testing.T, broker *harness.NATS, values ...string) {
	t.Helper()
	nc := broker.Observer()
	defer nc.Close()
	js, err := jetstream.New(nc.Conn)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	streams, read := 0, 0
	lister := js.ListStreams(ctx)
	for info := range lister.Info() {
		streams++
		stream, err := js.Stream(ctx, info.Config.Name)
		require.NoError(t, err)
		if info.State.Msgs == 0 {
			continue // a work queue holds no acknowledged message
		}
		require.Less(t, info.State.LastSeq-info.State.FirstSeq, uint64(100_000), "stream %s", info.Config.Name)
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			msg, err := stream.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted or purged
			}
			read++
			text := msg.Subject + " " + string(msg.Data)
			for k, vs := range msg.Header {
				text += " " + k + ":" + strings.Join(vs, ",")
			}
			for _, v := range values {
				require.NotContains(t, text, v, "secret value in stream %s, message %d on %s", info.Config.Name, seq, msg.Subject)
			}
		}
	}
	require.NoError(t, lister.Err())
	require.Positive(t, streams)
	require.Positive(t, read)
}
