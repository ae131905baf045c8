package ingest_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/libs/queue"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/ingest"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/redact"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// fixedNow pins datasetProfile.timestampMillis.
var fixedNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// output records what a task reports, redacted the way the runner's log
// stream redacts it, so a test sees what would leave the runner.
type output struct {
	mu      sync.Mutex
	red     *redact.Redactor
	lines   []string
	streams map[string]*bytes.Buffer
}

func newOutput() *output { return &output{red: redact.New(), streams: map[string]*bytes.Buffer{}} }

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

func (o *output) Stream(name string) io.WriteCloser {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.streams[name] == nil {
		o.streams[name] = &bytes.Buffer{}
	}
	return nopCloser{o.streams[name]}
}
func (o *output) Log(text string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lines = append(o.lines, o.red.Redact(text))
}
func (o *output) Mask(values ...string) { o.red.Add(values...) }
func (o *output) text() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return strings.Join(o.lines, "\n")
}

// publisher collects what the outpost sink publishes.
type publisher struct {
	mu   sync.Mutex
	msgs []queue.Message
}

func (p *publisher) Publish(_ context.Context, m queue.Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, m)
	return nil
}

func ingestSpec(recipeText string) *jobsv1.JobSpec {
	return &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Ingest{Ingest: &ingestv1.IngestTask{Recipe: recipeText}}}}
}

// newTask is an ingest task whose secrets come from dir.
func newTask(dir string, pub ingest.Publisher) *ingest.Task {
	return &ingest.Task{
		Resolver:  &secrets.Resolver{Providers: []secrets.Provider{secrets.Dir{Path: dir}}},
		Publisher: pub,
		Subjects:  queue.NewSubjects(""),
		RetryBase: time.Millisecond,
		Now:       func() time.Time { return fixedNow },
	}
}

func run(t *testing.T, task *ingest.Task, recipeText string) (tasks.Result, *output) {
	t.Helper()
	out := newOutput()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return task.Run(ctx, tasks.Input{Tenant: "acme", JobID: "job-1", Attempt: 1, Spec: ingestSpec(recipeText)}, out), out
}

// reason is what the status reason would say: the error, redacted.
func (o *output) reason(err error) string { return o.red.Redact(err.Error()) }

func writeSecret(t *testing.T, dir, name, value string) {
	t.Helper()
	require.NoError(t, os.WriteFile(dir+"/"+name, []byte(value+"\n"), 0o600))
}

// readLines decodes a file sink's output.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	require.NoError(t, sc.Err())
	return out
}

// project renders a record as the lines a reader checks: identity,
// description, columns in order, keys, view logic, row count, parent.
func project(rec map[string]any) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s\n", rec["entity_type"], rec["name"], rec["urn"])
	aspects, _ := rec["aspects"].(map[string]any)
	get := func(a, k string) any {
		m, _ := aspects[a].(map[string]any)
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
			m := f.(map[string]any)
			typ := ""
			for k := range m["type"].(map[string]any)["type"].(map[string]any) {
				typ = strings.TrimPrefix(k, "com.linkedin.schema.")
			}
			fmt.Fprintf(&b, "  field %v %v (%s) nullable=%v key=%v", m["fieldPath"], m["nativeDataType"], typ, m["nullable"], m["isPartOfKey"])
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
			m := f.(map[string]any)
			fmt.Fprintf(&b, "  fk %v: %v -> %v\n", m["name"], m["sourceFields"], m["foreignFields"])
		}
	}
	if v := get("viewProperties", "viewLogic"); v != nil {
		fmt.Fprintf(&b, "  view: %s\n", strings.Join(strings.Fields(fmt.Sprint(v)), " "))
	}
	if ups, ok := get("upstreamLineage", "upstreams").([]any); ok {
		for _, u := range ups {
			m := u.(map[string]any)
			fmt.Fprintf(&b, "  upstream %v %v\n", m["type"], m["dataset"])
		}
	}
	if rc := get("datasetProfile", "rowCount"); rc != nil {
		fmt.Fprintf(&b, "  rowCount: %v at %v\n", rc, get("datasetProfile", "timestampMillis"))
	}
	if c := get("container", "container"); c != nil {
		fmt.Fprintf(&b, "  container: %v\n", c)
	}
	return b.String()
}
