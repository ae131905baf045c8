package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/outposthq/outpost/libs/ingest/recipe"
	"github.com/outposthq/outpost/libs/ingest/transform"
	"github.com/outposthq/outpost/libs/queue"
	"github.com/outposthq/outpost/libs/telemetry"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/policy"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

// defaultOutpostBatch keeps a JobRecords message well under the broker's
// 1 MB payload limit for tables of a few dozen columns.
const defaultOutpostBatch = 50

// Task runs the `ingest` task kind.
type Task struct {
	Resolver  *secrets.Resolver
	Publisher Publisher
	Subjects  queue.Subjects
	// HTTPClient serves the http and datahub-rest sinks; a client with the
	// sink's timeout when nil.
	HTTPClient *http.Client
	// RetryBase is the first retry delay of the http sinks (500ms when 0).
	RetryBase time.Duration
	// Now is time.Now when nil; tests pin it for datasetProfile.
	Now func() time.Time
	// Policy, when set, confines the file sink to its directory at the
	// moment the file is opened (the job was checked against it before).
	Policy *policy.Policy
}

// Format maps the proto's recipe format.
func Format(f ingestv1.RecipeFormat) recipe.Format {
	switch f {
	case ingestv1.RecipeFormat_RECIPE_FORMAT_JSON:
		return recipe.FormatJSON
	case ingestv1.RecipeFormat_RECIPE_FORMAT_YAML:
		return recipe.FormatYAML
	}
	return recipe.FormatAuto
}

// ResolveErr marks a resolution error permanent when no retry can fix it
// (an unknown name, a malformed reference); a provider that could not
// answer may answer next time.
func ResolveErr(err error) error {
	if errors.Is(err, secrets.ErrUnknownSecret) || errors.Is(err, secrets.ErrInvalidReference) {
		return tasks.Permanent(err)
	}
	return err
}

// MaskSensitive masks the values of a config's password and token keys
// and of its header maps, written literally or resolved: a recipe that
// holds a literal password must not leak it into the log either.
func MaskSensitive(out tasks.Output, cfg map[string]any) {
	for k, v := range cfg {
		switch x := v.(type) {
		case string:
			lk := strings.ToLower(k)
			if strings.Contains(lk, "password") || strings.Contains(lk, "token") || strings.Contains(lk, "secret") {
				out.Mask(x)
			}
		case map[string]any:
			if k == "headers" || k == "extra_headers" {
				for _, hv := range x {
					if s, ok := hv.(string); ok {
						out.Mask(s)
					}
				}
				continue
			}
			MaskSensitive(out, x)
		}
	}
}

func (t *Task) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// Run implements tasks.Task.
func (t *Task) Run(ctx context.Context, in tasks.Input, out tasks.Output) tasks.Result {
	started := time.Now()
	spec := in.Spec.GetTask().GetIngest()
	if spec == nil {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("%w: no ingest task", tasks.ErrInvalidTask))}
	}
	r, err := recipe.Parse([]byte(spec.GetRecipe()), Format(spec.GetFormat()))
	if err != nil {
		out.Log(err.Error())
		return tasks.Result{Err: tasks.Permanent(err)}
	}
	sess := t.Resolver.NewSession()
	src, err := sess.ExpandSection(ctx, "source", r.Source)
	var snk recipe.Section
	if err == nil {
		snk, err = sess.ExpandSection(ctx, "sink", r.Sink)
	}
	trs := make([]recipe.Section, len(r.Transformers))
	for i := 0; err == nil && i < len(trs); i++ {
		trs[i], err = sess.ExpandSection(ctx, fmt.Sprintf("transformers[%d]", i), r.Transformers[i])
	}
	// Mask before anything is logged, and also what resolved before a
	// later reference failed.
	out.Mask(sess.Values()...)
	if err != nil {
		return tasks.Result{Err: ResolveErr(err)}
	}
	MaskSensitive(out, src.Config)
	MaskSensitive(out, snk.Config)

	if err := sameAddress(r.Source, src); err != nil {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("source: %w", err))}
	}
	source, err := NewSource(src)
	if err != nil {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("source: %w", err))}
	}
	domains, err := domainsOf(r, src)
	if err != nil {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("source: %w", err))}
	}
	chain, err := transform.New(r, trs, t.now)
	if err != nil {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("transformers: %w", err))}
	}
	name := r.PipelineName
	if name == "" {
		name = in.JobID
	}
	runID := r.RunID
	if runID == "" {
		runID = r.Source.Type + "-" + in.JobID
	}
	sink, err := t.newSink(snk, in, r, runID, out)
	if err != nil {
		return tasks.Result{Err: tasks.Permanent(fmt.Errorf("sink: %w", err))}
	}
	out.Log(fmt.Sprintf("ingest %s: source %s, %d transformers, sink %s, run_id %s", name, r.Source.Type, chain.Len(), r.Sink.Type, runID))

	p := &pipeline{
		sink: sink, out: out, started: started,
		namer: namer{platform: source.Platform(), instance: platformInstance(src), env: env(src), now: t.now,
			lowercase: lowercaseURNs(src), domain: domains, urns: &urnCache{}},
	}
	if chain.Len() > 0 {
		p.namer.transform = func(urn string, a map[string]map[string]any) { chain.Apply(urn, a) }
	}
	for _, n := range r.Notices {
		p.Warn(n.Error())
	}
	setClock(source, t.now)
	err = source.Extract(ctx, p)
	if err == nil {
		err = p.flush(ctx)
	}
	if cerr := sink.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
		err = cerr
	}
	if err != nil {
		p.failures++
	}
	out.Log(p.summary(r.Sink.Type, err))
	res := tasks.Result{Outputs: map[string]string{
		"records":  strconv.Itoa(p.written),
		"tables":   strconv.Itoa(p.tables),
		"views":    strconv.Itoa(p.views),
		"warnings": strconv.Itoa(p.warnings),
	}}
	if c, ok := sink.(interface{ RecordBatches() int }); ok {
		// The terminal status says how many batches went out, so the
		// scheduler ends the job only once they are stored.
		res.RecordBatches = c.RecordBatches()
	}
	if err != nil {
		if errors.Is(err, ErrAuth) || errors.Is(err, ErrSourceConfig) || errors.Is(err, recipe.ErrInvalid) {
			err = tasks.Permanent(err)
		}
		res.Err, res.ExitCode = err, 1
	}
	return res
}

func platformInstance(s recipe.Section) string {
	v, _ := s.Config["platform_instance"].(string)
	return v
}

// env is DataHub's env, upper-cased as DataHub does.
func env(s recipe.Section) string {
	if v, _ := s.Config["env"].(string); v != "" {
		return strings.ToUpper(v)
	}
	return "PROD"
}

func lowercaseURNs(s recipe.Section) bool {
	v, _ := s.Config["convert_urns_to_lowercase"].(bool)
	return v
}

// setClock gives a source the task's clock (profiling schedules).
func setClock(s Source, now func() time.Time) {
	switch x := s.(type) {
	case *postgresSource:
		x.now = now
	case *mysqlSource:
		x.now = now
	}
}

func (t *Task) newSink(s recipe.Section, in tasks.Input, r *recipe.Recipe, runID string, out tasks.Output) (Sink, error) {
	pipelineName := r.PipelineName
	cfg, err := recipe.DecodeConfig(s)
	if err != nil {
		return nil, err
	}
	retryBase := t.RetryBase
	if retryBase <= 0 {
		retryBase = 500 * time.Millisecond
	}
	client := func(timeoutSec int) *http.Client {
		if t.HTTPClient != nil {
			return t.HTTPClient
		}
		timeout := defaultHTTPTimeout
		if timeoutSec > 0 {
			timeout = time.Duration(timeoutSec) * time.Second
		}
		c := &http.Client{Timeout: timeout}
		if t.Policy != nil {
			// A redirect is a new destination: it is held to the same
			// hosts as the URL the job named.
			c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
				if len(via) >= 10 {
					return errors.New("stopped after 10 redirects")
				}
				return t.Policy.CheckURL("sink "+s.Type+" redirect", req.URL.String())
			}
		}
		return c
	}
	orDefault := func(v, d int) int {
		if v > 0 {
			return v
		}
		return d
	}
	switch c := cfg.(type) {
	case *recipe.FileSink:
		if t.Policy != nil {
			return newFileSinkIn(t.Policy, c.Filename)
		}
		return newFileSink(c.Filename)
	case *recipe.ConsoleSink:
		return newConsoleSink(out.Stream("stdout")), nil
	case *recipe.OutpostSink:
		if t.Publisher == nil {
			return nil, errors.New("the outpost sink is not available on this runner")
		}
		return &outpostSink{
			pub: t.Publisher, subject: t.Subjects.JobRecords(in.Tenant, in.JobID),
			tenant: in.Tenant, jobID: in.JobID, attempt: in.Attempt, token: in.AttemptToken,
			batchSize: orDefault(c.BatchSize, defaultOutpostBatch), next: 1, now: t.now,
		}, nil
	case *recipe.HTTPSink:
		if !strings.HasPrefix(c.URL, "http://") && !strings.HasPrefix(c.URL, "https://") {
			return nil, fmt.Errorf("%w: sink.config.url must be an http:// or https:// URL once resolved", recipe.ErrInvalid)
		}
		return &httpSink{
			poster:    poster{client: client(c.TimeoutSec), headers: c.Headers, retries: orDefault(c.RetryMaxTimes, defaultHTTPRetries), retryBase: retryBase},
			url:       c.URL,
			batchSize: orDefault(c.BatchSize, defaultHTTPBatch),
			jobID:     in.JobID, pipelineName: pipelineName,
		}, nil
	case *recipe.DataHubRESTSink:
		server := strings.TrimRight(c.Server, "/")
		if !strings.HasPrefix(server, "http://") && !strings.HasPrefix(server, "https://") {
			return nil, fmt.Errorf("%w: sink.config.server must be an http:// or https:// URL once resolved", recipe.ErrInvalid)
		}
		headers := map[string]string{"X-RestLi-Protocol-Version": "2.0.0"}
		for k, v := range c.ExtraHeaders {
			headers[k] = v
		}
		if c.Token != "" {
			headers["Authorization"] = "Bearer " + c.Token
		}
		mode := strings.ToUpper(c.Mode)
		if mode == "" {
			mode = "ASYNC"
		}
		sink := &dataHubSink{
			poster:    poster{client: client(c.TimeoutSec), headers: headers, retries: orDefault(c.RetryMaxTime, defaultHTTPRetries), retryBase: retryBase},
			server:    server,
			mode:      mode,
			batchSize: orDefault(c.BatchSize, defaultHTTPBatch),
		}
		if send, withName := r.Pipeline.SystemMetadata(); send {
			sink.system = func() map[string]any {
				m := map[string]any{"runId": runID, "lastObserved": t.now().UnixMilli()}
				if withName && pipelineName != "" {
					m["pipelineName"] = pipelineName
				}
				return m
			}
		}
		return sink, nil
	}
	return nil, fmt.Errorf("%w: %q is not a sink", recipe.ErrInvalid, s.Type)
}

// pipeline turns what a source emits into records and hands them to the
// sink in batches; it counts for the progress lines and the summary.
type pipeline struct {
	namer   namer
	sink    Sink
	out     tasks.Output
	started time.Time
	buf     []*Record

	databases, schemas, tables, views, written, warnings, failures int
}

// Container implements Emitter.
func (p *pipeline) Container(ctx context.Context, c Container) error {
	if c.Schema == "" {
		p.databases++
	} else {
		p.schemas++
	}
	return p.add(ctx, p.namer.containerRecord(c))
}

// Table implements Emitter.
func (p *pipeline) Table(ctx context.Context, t Table) error {
	if t.View {
		p.views++
	} else {
		p.tables++
	}
	return p.add(ctx, p.namer.tableRecord(t))
}

// Warn implements Emitter.
func (p *pipeline) Warn(msg string) {
	p.warnings++
	p.out.Log("warning: " + msg)
}

// Note implements Emitter.
func (p *pipeline) Note(msg string) { p.out.Log(msg) }

func (p *pipeline) add(ctx context.Context, rec *Record) error {
	p.buf = append(p.buf, rec)
	if len(p.buf) >= p.sink.BatchSize() {
		return p.flush(ctx)
	}
	return nil
}

func (p *pipeline) flush(ctx context.Context) error {
	if len(p.buf) == 0 {
		return nil
	}
	ctx, span := telemetry.Tracer().Start(ctx, "runner.sink_batch", trace.WithAttributes(attribute.Int("outpost.records", len(p.buf))))
	err := p.sink.Write(ctx, p.buf)
	telemetry.End(span, err)
	if err != nil {
		return err
	}
	p.written += len(p.buf)
	// A fresh slice: the sink may still hold the old one (a queued publish).
	p.buf = nil
	p.out.Log(fmt.Sprintf("progress: read %d tables and %d views in %d schemas; %d records written", p.tables, p.views, p.schemas, p.written))
	return nil
}

func (p *pipeline) summary(sink string, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "summary: %d databases, %d schemas, %d tables, %d views read; %d records written to %s; %d warnings; %d failures; duration %s",
		p.databases, p.schemas, p.tables, p.views, p.written, sink, p.warnings, p.failures, time.Since(p.started).Round(time.Millisecond))
	if err != nil {
		fmt.Fprintf(&b, "; failed: %v", err)
	}
	return b.String()
}
