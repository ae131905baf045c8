package recipe

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
)

// The typed configurations below are the schema: checkValue walks a raw
// config against their reflect types (json tags name the keys, a
// `recipe:"required"` tag makes one required), so the keys a connector
// reads and the keys validation accepts cannot drift apart.

// Pattern is DataHub's AllowDenyPattern: a name is kept when it matches one
// of Allow (default: everything) and none of Deny. Like DataHub (Python's
// re.match) a regex is anchored at the start only; IgnoreCase defaults to
// true.
type Pattern struct {
	Allow      []string `json:"allow,omitempty"`
	Deny       []string `json:"deny,omitempty"`
	IgnoreCase *bool    `json:"ignoreCase,omitempty"`
}

func (p *Pattern) check(path string, f *faults) {
	if p == nil {
		return
	}
	for _, l := range []struct {
		name string
		res  []string
	}{{"allow", p.Allow}, {"deny", p.Deny}} {
		for i, re := range l.res {
			if _, err := regexp.Compile(re); err != nil {
				f.add(fmt.Sprintf("%s.%s[%d]", path, l.name, i), "invalid regex: %v", err)
			}
		}
	}
}

// Profiling is the profiling section. Only row counts are supported; any
// other DataHub profiling key is refused by name rather than ignored.
type Profiling struct {
	Enabled bool `json:"enabled"`
}

// SQLSource holds the keys shared by the postgres and mysql sources, under
// DataHub's names.
type SQLSource struct {
	HostPort         string    `json:"host_port" recipe:"required"`
	Username         string    `json:"username,omitempty"`
	Password         string    `json:"password,omitempty"`
	Env              string    `json:"env,omitempty"`
	PlatformInstance string    `json:"platform_instance,omitempty"`
	SchemaPattern    *Pattern  `json:"schema_pattern,omitempty"`
	TablePattern     *Pattern  `json:"table_pattern,omitempty"`
	ViewPattern      *Pattern  `json:"view_pattern,omitempty"`
	IncludeTables    *bool     `json:"include_tables,omitempty"`
	IncludeViews     *bool     `json:"include_views,omitempty"`
	Profiling        Profiling `json:"profiling,omitzero"`
	// Options are extra connection parameters (sslmode, tls, ...).
	Options map[string]string `json:"options,omitempty"`
}

func (s *SQLSource) check(path string, f *faults) {
	s.SchemaPattern.check(path+".schema_pattern", f)
	s.TablePattern.check(path+".table_pattern", f)
	s.ViewPattern.check(path+".view_pattern", f)
}

// PostgresSource is the postgres source: one database per recipe.
type PostgresSource struct {
	SQLSource
	Database string `json:"database" recipe:"required"`
}

func (s *PostgresSource) check(path string, f *faults) { s.SQLSource.check(path, f) }

// MySQLSource is the mysql source (MariaDB too). MySQL has no schema level:
// DataHub's database_pattern (and schema_pattern, its older name) filters
// databases; database limits the run to one.
type MySQLSource struct {
	SQLSource
	Database        string   `json:"database,omitempty"`
	DatabasePattern *Pattern `json:"database_pattern,omitempty"`
}

func (s *MySQLSource) check(path string, f *faults) {
	s.SQLSource.check(path, f)
	s.DatabasePattern.check(path+".database_pattern", f)
}

// FileSink writes JSON lines.
type FileSink struct {
	Filename string `json:"filename" recipe:"required"`
}

// ConsoleSink writes JSON lines to the job log's stdout.
type ConsoleSink struct{}

// OutpostSink sends records back to the control plane.
type OutpostSink struct {
	// BatchSize is the number of records per JobRecords message.
	BatchSize int `json:"batch_size,omitempty"`
}

func (s *OutpostSink) check(path string, f *faults) {
	if s.BatchSize < 0 {
		f.add(path+".batch_size", "must not be negative")
	}
}

// HTTPSink POSTs batches of records as JSON.
type HTTPSink struct {
	URL string `json:"url" recipe:"required"`
	// Headers are sent with every request: an auth header takes its value
	// from a ${SECRET}.
	Headers       map[string]string `json:"headers,omitempty"`
	BatchSize     int               `json:"batch_size,omitempty"`
	TimeoutSec    int               `json:"timeout_sec,omitempty"`
	RetryMaxTimes int               `json:"retry_max_times,omitempty"`
}

func (s *HTTPSink) check(path string, f *faults) {
	checkURL(path+".url", s.URL, f)
	checkCounts(path, f, map[string]int{"batch_size": s.BatchSize, "timeout_sec": s.TimeoutSec, "retry_max_times": s.RetryMaxTimes})
}

// DataHubRESTSink emits MetadataChangeProposals to DataHub's GMS.
type DataHubRESTSink struct {
	Server       string            `json:"server" recipe:"required"`
	Token        string            `json:"token,omitempty"`
	TimeoutSec   int               `json:"timeout_sec,omitempty"`
	RetryMaxTime int               `json:"retry_max_times,omitempty"`
	ExtraHeaders map[string]string `json:"extra_headers,omitempty"`
	// Mode is DataHub's: SYNC and ASYNC post one proposal per request to
	// /aspects?action=ingestProposal; ASYNC_BATCH posts a batch to
	// /aspects?action=ingestProposalBatch.
	Mode      string `json:"mode,omitempty"`
	BatchSize int    `json:"max_per_batch,omitempty"`
}

// DataHub REST modes.
var dataHubModes = []string{"SYNC", "ASYNC", "ASYNC_BATCH"}

func (s *DataHubRESTSink) check(path string, f *faults) {
	checkURL(path+".server", s.Server, f)
	if s.Mode != "" && !slices.Contains(dataHubModes, strings.ToUpper(s.Mode)) {
		f.add(path+".mode", "unknown mode %q (supported: %s)", s.Mode, strings.Join(dataHubModes, ", "))
	}
	checkCounts(path, f, map[string]int{"timeout_sec": s.TimeoutSec, "retry_max_times": s.RetryMaxTime, "max_per_batch": s.BatchSize})
}

func checkURL(path, u string, f *faults) {
	if strings.Contains(u, "${") {
		return // checked on the runner, once resolved
	}
	if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		f.add(path, "must be an http:// or https:// URL")
	}
}

func checkCounts(path string, f *faults, counts map[string]int) {
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		if counts[k] < 0 {
			f.add(path+"."+k, "must not be negative")
		}
	}
}

// checker is a config with rules beyond its types.
type checker interface {
	check(path string, f *faults)
}

type spec struct {
	new func() any
}

func (s spec) configType() reflect.Type { return reflect.TypeOf(s.new()).Elem() }

type registry map[string]spec

func (r registry) names() []string { return slices.Sorted(maps.Keys(r)) }

func (r registry) kind() string {
	switch {
	case r["postgres"].new != nil:
		return "source"
	case r["file"].new != nil:
		return "sink"
	}
	return "transformer"
}

var (
	sources = registry{
		"postgres": {func() any { return &PostgresSource{} }},
		"mysql":    {func() any { return &MySQLSource{} }},
	}
	sinks = registry{
		"file":         {func() any { return &FileSink{} }},
		"console":      {func() any { return &ConsoleSink{} }},
		"outpost":      {func() any { return &OutpostSink{} }},
		"http":         {func() any { return &HTTPSink{} }},
		"datahub-rest": {func() any { return &DataHubRESTSink{} }},
	}
	// No transformer is built in yet: naming one is an error that says
	// so, rather than a recipe that runs without it.
	transformers = registry{}
)

// SourceTypes lists the supported source types.
func SourceTypes() []string { return sources.names() }

// SinkTypes lists the supported sink types.
func SinkTypes() []string { return sinks.names() }

// DecodeConfig decodes a section's config (normally after its references
// were resolved) into its typed configuration: *PostgresSource,
// *MySQLSource, *FileSink, *ConsoleSink, *OutpostSink, *HTTPSink or
// *DataHubRESTSink.
func DecodeConfig(s Section) (any, error) {
	sp, ok := sources[s.Type]
	if !ok {
		sp, ok = sinks[s.Type]
	}
	if !ok {
		return nil, fmt.Errorf("%w: unknown type %q", ErrInvalid, s.Type)
	}
	var f faults
	checkValue("config", s.Config, sp.configType(), &f)
	if err := f.err(); err != nil {
		return nil, err
	}
	return decodeInto(s.Config, sp.configType())
}

func decodeInto(cfg map[string]any, t reflect.Type) (any, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	out := reflect.New(t).Interface()
	if err := json.Unmarshal(raw, out); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return out, nil
}

// fields maps json keys to the fields of struct type t, embedded structs
// flattened.
func fields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		sf := t.Field(i)
		if sf.Anonymous {
			maps.Copy(out, fields(sf.Type))
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out[name] = sf
	}
	return out
}

var patternType = reflect.TypeOf(Pattern{})

// checkValue reports where v does not fit type t.
func checkValue(path string, v any, t reflect.Type, f *faults) {
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			f.add(path, "must be a mapping, not %s", kindOf(v))
			return
		}
		fs := fields(t)
		known := slices.Sorted(maps.Keys(fs))
		for _, k := range slices.Sorted(maps.Keys(m)) {
			sf, ok := fs[k]
			if !ok {
				what := "unknown key"
				if t == patternType {
					what = "unknown pattern key"
				}
				if len(known) == 0 {
					f.add(path+"."+k, "%s (this section takes no keys)", what)
				} else {
					f.add(path+"."+k, "%s, not supported by this runner (known: %s)", what, strings.Join(known, ", "))
				}
				continue
			}
			checkValue(path+"."+k, m[k], sf.Type, f)
		}
		for _, k := range known {
			if fs[k].Tag.Get("recipe") == "required" {
				if s, present := m[k]; !present || s == nil || s == "" {
					f.add(path+"."+k, "required")
				}
			}
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			f.add(path, "must be a string, not %s", kindOf(v))
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			f.add(path, "must be true or false, not %s", kindOf(v))
		}
	case reflect.Int:
		if _, ok := v.(int64); !ok {
			f.add(path, "must be a whole number, not %s", kindOf(v))
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			f.add(path, "must be a list, not %s", kindOf(v))
			return
		}
		for i, e := range list {
			checkValue(fmt.Sprintf("%s[%d]", path, i), e, t.Elem(), f)
		}
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			f.add(path, "must be a mapping, not %s", kindOf(v))
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			checkValue(path+"."+k, m[k], t.Elem(), f)
		}
	}
}

// Matcher is a compiled Pattern.
type Matcher struct {
	allow, deny []*regexp.Regexp
}

// Compile compiles p; a nil Pattern allows everything.
func (p *Pattern) Compile() (*Matcher, error) {
	m := &Matcher{}
	if p == nil {
		return m, nil
	}
	prefix := "(?i)"
	if p.IgnoreCase != nil && !*p.IgnoreCase {
		prefix = ""
	}
	for _, l := range []struct {
		res []string
		out *[]*regexp.Regexp
	}{{p.Allow, &m.allow}, {p.Deny, &m.deny}} {
		for _, s := range l.res {
			re, err := regexp.Compile(prefix + "^(?:" + s + ")")
			if err != nil {
				return nil, fmt.Errorf("%w: regex %q: %w", ErrInvalid, s, err)
			}
			*l.out = append(*l.out, re)
		}
	}
	return m, nil
}

// Allowed tells whether name passes the pattern.
func (m *Matcher) Allowed(name string) bool {
	for _, re := range m.deny {
		if re.MatchString(name) {
			return false
		}
	}
	if len(m.allow) == 0 {
		return true
	}
	for _, re := range m.allow {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}
