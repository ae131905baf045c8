package recipe

import (
	"errors"
	"slices"
	"strings"
)

// Profiling is DataHub's profiling section (GEProfilingConfig). The keys
// it honours are typed; the others are accepted with a notice.
type Profiling struct {
	Enabled         bool             `json:"enabled"`
	OperationConfig *OperationConfig `json:"operation_config,omitempty"`
	// Limit and Offset bound the rows the column profile reads.
	Limit                 *int  `json:"limit,omitempty"`
	Offset                *int  `json:"offset,omitempty"`
	ProfileTableLevelOnly bool  `json:"profile_table_level_only,omitempty"`
	NullCount             *bool `json:"include_field_null_count,omitempty"`
	DistinctCount         *bool `json:"include_field_distinct_count,omitempty"`
	MinValue              *bool `json:"include_field_min_value,omitempty"`
	MaxValue              *bool `json:"include_field_max_value,omitempty"`
	MeanValue             *bool `json:"include_field_mean_value,omitempty"`
	MedianValue           *bool `json:"include_field_median_value,omitempty"`
	StddevValue           *bool `json:"include_field_stddev_value,omitempty"`
	SampleValues          *bool `json:"include_field_sample_values,omitempty"`
	// TurnOffExpensive turns sample values off and profiles at most 10
	// columns unless those keys say otherwise.
	TurnOffExpensive       bool `json:"turn_off_expensive_profiling_metrics,omitempty"`
	FieldSampleValuesLimit *int `json:"field_sample_values_limit,omitempty"`
	MaxFields              *int `json:"max_number_of_fields_to_profile,omitempty"`
	// ReportDropped logs each table and column not profiled, and why.
	ReportDropped bool `json:"report_dropped_profiles,omitempty"`
	// TableRowLimit and TableSizeLimit (GB) skip the column profile of
	// larger tables, by the server's estimates.
	TableRowLimit          *int `json:"profile_table_row_limit,omitempty"`
	TableSizeLimit         *int `json:"profile_table_size_limit,omitempty"`
	RowCountEstimateOnly   bool `json:"profile_table_row_count_estimate_only,omitempty"`
	TimeBudgetSec          *int `json:"time_budget_sec,omitempty"`
	Quantiles              any  `json:"include_field_quantiles,omitempty" recipe:"noeffect" why:"quantiles are not computed"`
	DistinctValueFreqs     any  `json:"include_field_distinct_value_frequencies,omitempty" recipe:"noeffect" why:"value frequencies are not computed"`
	Histogram              any  `json:"include_field_histogram,omitempty" recipe:"noeffect" why:"histograms are not computed"`
	MaxWorkers             any  `json:"max_workers,omitempty" recipe:"noeffect" why:"tables are profiled one at a time on one connection"`
	ReportExpensiveTables  any  `json:"report_expensive_tables,omitempty" recipe:"noeffect"`
	IfUpdatedSinceDays     any  `json:"profile_if_updated_since_days,omitempty" recipe:"noeffect" why:"DataHub reads it for snowflake, bigquery and dremio only"`
	QueryCombinerEnabled   any  `json:"query_combiner_enabled,omitempty" recipe:"noeffect" why:"a table's metrics are always read in one query"`
	CatchExceptions        any  `json:"catch_exceptions,omitempty" recipe:"noeffect"`
	IsolationLevel         any  `json:"profiling_isolation_level,omitempty" recipe:"noeffect" why:"each table is profiled by one statement, on one snapshot"`
	PartitionProfiling     any  `json:"partition_profiling_enabled,omitempty" recipe:"noeffect"`
	PartitionDatetime      any  `json:"partition_datetime,omitempty" recipe:"noeffect"`
	UseSampling            any  `json:"use_sampling,omitempty" recipe:"noeffect"`
	SampleSize             any  `json:"sample_size,omitempty" recipe:"noeffect"`
	ProfileExternalTables  any  `json:"profile_external_tables,omitempty" recipe:"noeffect"`
	TagsToIgnoreSampling   any  `json:"tags_to_ignore_sampling,omitempty" recipe:"noeffect"`
	ProfileNestedFields    any  `json:"profile_nested_fields,omitempty" recipe:"noeffect"`
	NestedFieldMaxDepth    any  `json:"nested_field_max_depth,omitempty" recipe:"noeffect"`
	Method                 any  `json:"method,omitempty" recipe:"noeffect" why:"removed from DataHub"`
	BigQueryTempTableSchma any  `json:"bigquery_temp_table_schema,omitempty" recipe:"noeffect"`
}

// OperationConfig is DataHub's schedule for lower-frequency profiling:
// when enabled, profiling runs only on the given weekday (0 is Monday)
// and day of the month, by the runner's UTC clock.
type OperationConfig struct {
	LowerFreqProfileEnabled bool `json:"lower_freq_profile_enabled,omitempty"`
	ProfileDayOfWeek        *int `json:"profile_day_of_week,omitempty"`
	ProfileDateOfMonth      *int `json:"profile_date_of_month,omitempty"`
}

func (p *Profiling) check(path string, f *faults) {
	if p.ProfileTableLevelOnly {
		for k, v := range map[string]*bool{
			"include_field_null_count": p.NullCount, "include_field_distinct_count": p.DistinctCount,
			"include_field_min_value": p.MinValue, "include_field_max_value": p.MaxValue,
			"include_field_mean_value": p.MeanValue, "include_field_median_value": p.MedianValue,
			"include_field_stddev_value": p.StddevValue, "include_field_sample_values": p.SampleValues,
		} {
			if v != nil && *v {
				f.add(path+"."+k, "cannot enable field-level metrics if profile_table_level_only is set")
			}
		}
		if p.MaxFields != nil {
			f.add(path+".max_number_of_fields_to_profile", "must not be set with profile_table_level_only")
		}
	}
	if p.MaxFields != nil && *p.MaxFields < 1 {
		f.add(path+".max_number_of_fields_to_profile", "must be a positive number")
	}
	counts := map[string]int{}
	for k, v := range map[string]*int{"limit": p.Limit, "offset": p.Offset, "field_sample_values_limit": p.FieldSampleValuesLimit,
		"profile_table_row_limit": p.TableRowLimit, "profile_table_size_limit": p.TableSizeLimit, "time_budget_sec": p.TimeBudgetSec} {
		if v != nil {
			counts[k] = *v
		}
	}
	checkCounts(path, f, counts)
	if o := p.OperationConfig; o != nil {
		if o.ProfileDayOfWeek != nil && (*o.ProfileDayOfWeek < 0 || *o.ProfileDayOfWeek > 6) {
			f.add(path+".operation_config.profile_day_of_week", "must be from 0 (Monday) to 6")
		}
		if o.ProfileDateOfMonth != nil && (*o.ProfileDateOfMonth < 1 || *o.ProfileDateOfMonth > 31) {
			f.add(path+".operation_config.profile_date_of_month", "must be from 1 to 31")
		}
	}
}

// SQLSource holds the keys shared by the postgres and mysql sources, under
// DataHub's names (SQLCommonConfig and SQLAlchemyConnectionConfig).
type SQLSource struct {
	// HostPort defaults to localhost and the platform's port.
	HostPort         string    `json:"host_port,omitempty"`
	Username         string    `json:"username,omitempty"`
	Password         string    `json:"password,omitempty"`
	Env              string    `json:"env,omitempty"`
	PlatformInstance string    `json:"platform_instance,omitempty"`
	SchemaPattern    *Pattern  `json:"schema_pattern,omitempty"`
	TablePattern     *Pattern  `json:"table_pattern,omitempty"`
	ViewPattern      *Pattern  `json:"view_pattern,omitempty"`
	ProfilePattern   *Pattern  `json:"profile_pattern,omitempty"`
	IncludeTables    *bool     `json:"include_tables,omitempty"`
	IncludeViews     *bool     `json:"include_views,omitempty"`
	ViewLineage      *bool     `json:"include_view_lineage,omitempty"`
	LowercaseURNs    bool      `json:"convert_urns_to_lowercase,omitempty"`
	Profiling        Profiling `json:"profiling,omitzero"`
	// Options are extra connection parameters (sslmode, tls, ...).
	Options map[string]string `json:"options,omitempty"`

	// SQLAlchemyURI, when set, takes precedence over host_port, username,
	// password, database and options, as DataHub's: its driver part
	// ("+psycopg2") is ignored, its query becomes options.
	SQLAlchemyURI  string `json:"sqlalchemy_uri,omitempty"`
	Scheme         any    `json:"scheme,omitempty" recipe:"noeffect" why:"the driver is built in"`
	DatabaseAlias  any    `json:"database_alias,omitempty" recipe:"noeffect" why:"removed from DataHub"`
	Stateful       any    `json:"stateful_ingestion,omitempty" recipe:"noeffect" why:"stale-entity removal needs DataHub's state store"`
	Incremental    any    `json:"incremental_lineage,omitempty" recipe:"noeffect"`
	Classification any    `json:"classification,omitempty" recipe:"noeffect"`
	// Domain maps a domain URN to the pattern of the databases, schemas
	// and tables (db[.schema].table) it takes; the first that allows a
	// name applies, in the order written.
	Domain           map[string]*Pattern `json:"domain,omitempty"`
	LocationLineage  any                 `json:"include_table_location_lineage,omitempty" recipe:"noeffect"`
	ColumnLineage    any                 `json:"include_view_column_lineage,omitempty" recipe:"noeffect" why:"column-level lineage needs SQL parsing"`
	FileBackedCache  any                 `json:"use_file_backed_cache,omitempty" recipe:"noeffect"`
	StoredProcedures any                 `json:"include_stored_procedures,omitempty" recipe:"noeffect" why:"stored procedures are not read"`
	ProcedurePattern any                 `json:"procedure_pattern,omitempty" recipe:"noeffect" why:"stored procedures are not read"`
}

func (s *SQLSource) check(path string, f *faults) {
	for k, p := range s.Domain {
		if !strings.HasPrefix(k, "urn:li:domain:") {
			f.notice(path+".domain."+k, "skipped: a domain name is resolved on DataHub's server, which this runner does not read; write urn:li:domain:<id>")
		}
		p.check(path+".domain."+k, f)
	}
	if s.SQLAlchemyURI != "" {
		if _, _, err := SplitURI(s.SQLAlchemyURI); err != nil {
			f.add(path+".sqlalchemy_uri", "%v", err)
		}
	}
	s.SchemaPattern.check(path+".schema_pattern", f)
	s.TablePattern.check(path+".table_pattern", f)
	s.ViewPattern.check(path+".view_pattern", f)
	s.ProfilePattern.check(path+".profile_pattern", f)
	s.Profiling.check(path+".profiling", f)
}

// checkScheme holds sqlalchemy_uri to the source's platform: its scheme
// starts with one of the names ("postgresql+psycopg2").
func (s *SQLSource) checkScheme(path, platform string, f *faults, others ...string) {
	scheme, _, err := SplitURI(s.SQLAlchemyURI)
	if s.SQLAlchemyURI == "" || err != nil {
		return
	}
	for _, p := range append([]string{platform}, others...) {
		if strings.HasPrefix(strings.ToLower(scheme), p) {
			return
		}
	}
	f.add(path+".sqlalchemy_uri", "scheme %q is not one of the %s source", scheme, platform)
}

// PostgresSource is the postgres source: database, or every database the
// server lists (read from initial_database) that database_pattern allows.
type PostgresSource struct {
	SQLSource
	Database        string   `json:"database,omitempty"`
	DatabasePattern *Pattern `json:"database_pattern,omitempty"`
	InitialDatabase string   `json:"initial_database,omitempty"`

	AuthMode           any `json:"auth_mode,omitempty" recipe:"noeffect" why:"password authentication is used"`
	AWSConfig          any `json:"aws_config,omitempty" recipe:"noeffect"`
	QueryLineage       any `json:"include_query_lineage,omitempty" recipe:"noeffect" why:"pg_stat_statements is not read"`
	MaxQueries         any `json:"max_queries_to_extract,omitempty" recipe:"noeffect"`
	MinQueryCalls      any `json:"min_query_calls,omitempty" recipe:"noeffect"`
	QueryExclude       any `json:"query_exclude_patterns,omitempty" recipe:"noeffect"`
	UsageStatistics    any `json:"include_usage_statistics,omitempty" recipe:"noeffect" why:"usage statistics are not read"`
	BucketDuration     any `json:"bucket_duration,omitempty" recipe:"noeffect"`
	StartTime          any `json:"start_time,omitempty" recipe:"noeffect"`
	EndTime            any `json:"end_time,omitempty" recipe:"noeffect"`
	TopNQueries        any `json:"top_n_queries,omitempty" recipe:"noeffect"`
	UserEmailPattern   any `json:"user_email_pattern,omitempty" recipe:"noeffect"`
	OperationalStats   any `json:"include_operational_stats,omitempty" recipe:"noeffect"`
	ReadOperational    any `json:"include_read_operational_stats,omitempty" recipe:"noeffect"`
	FormatSQLQueries   any `json:"format_sql_queries,omitempty" recipe:"noeffect"`
	IncludeTopNQueries any `json:"include_top_n_queries,omitempty" recipe:"noeffect"`
	QueriesCharLimit   any `json:"queries_character_limit,omitempty" recipe:"noeffect"`
}

func (s *PostgresSource) check(path string, f *faults) {
	s.SQLSource.check(path, f)
	s.checkScheme(path, "postgres", f)
	s.DatabasePattern.check(path+".database_pattern", f)
}

// MySQLSource is the mysql source (MariaDB too). MySQL has no schema level:
// DataHub's database_pattern (and schema_pattern, its older name) filters
// databases; database limits the run to one.
type MySQLSource struct {
	SQLSource
	Database        string   `json:"database,omitempty"`
	DatabasePattern *Pattern `json:"database_pattern,omitempty"`

	StoredProcCode any `json:"include_stored_procedures_code,omitempty" recipe:"noeffect" why:"stored procedures are not read"`
	Lineage        any `json:"include_lineage,omitempty" recipe:"noeffect" why:"stored procedures are not read"`
}

func (s *MySQLSource) check(path string, f *faults) {
	s.SQLSource.check(path, f)
	s.checkScheme(path, "mysql", f, "mariadb")
	s.DatabasePattern.check(path+".database_pattern", f)
}

// DefaultPorts are the ports a source's host_port defaults to, with
// localhost, as DataHub's.
var DefaultPorts = map[string]string{"postgres": "5432", "mysql": "3306"}

// HostPort is where a source config connects: the host and port of its
// sqlalchemy_uri, or its host_port as written, or DataHub's default
// (localhost and the platform's port).
func HostPort(sourceType string, cfg map[string]any) string {
	if uri, ok := cfg["sqlalchemy_uri"].(string); ok && uri != "" {
		if _, hp, err := SplitURI(uri); err == nil {
			return hp
		}
		return ""
	}
	if hp, ok := cfg["host_port"].(string); ok && hp != "" {
		return hp
	}
	if port, ok := DefaultPorts[sourceType]; ok {
		return "localhost:" + port
	}
	return ""
}

// SplitURI returns the scheme and the host[:port] of a SQLAlchemy URI
// (scheme://[user[:password]@]host[:port][/database][?options]) without
// parsing the rest, so that a ${NAME} in the password does not hide the
// host.
func SplitURI(uri string) (scheme, hostPort string, err error) {
	scheme, rest, ok := strings.Cut(uri, "://")
	if !ok || scheme == "" {
		return "", "", errors.New("must be a URI: scheme://user:password@host:port/database")
	}
	authority := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		authority = rest[:i]
	}
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		authority = authority[i+1:]
	}
	if authority == "" {
		return "", "", errors.New("must name a host: scheme://user:password@host:port/database")
	}
	return scheme, authority, nil
}

// DefaultInitialDatabase is where the postgres source lists databases when
// the recipe names none.
const DefaultInitialDatabase = "postgres"

var (
	sources = registry{
		"postgres": {func() any { return &PostgresSource{} }},
		"mysql":    {func() any { return &MySQLSource{} }},
	}
	// refusedTypes are DataHub types refused with a reason rather than as
	// unknown.
	refusedTypes = map[string]map[string]string{
		"sink": {
			"datahub-kafka": "datahub-kafka is not supported: this runner has no Kafka; send to DataHub's GMS with datahub-rest (server, token), or leave the sink out to send records to Outpost",
		},
		"transformer": {
			"add_dataset_properties": "add_dataset_properties calls a Python resolver class, which this runner cannot run; for static properties use simple_add_dataset_properties (config: properties)",
		},
	}
)

// upper normalizes an enum value as DataHub does.
func upper(s string) string { return strings.ToUpper(strings.TrimSpace(s)) }

func oneOf(path, v string, allowed []string, f *faults) {
	if !slices.Contains(allowed, upper(v)) {
		f.add(path, "unknown value %q (supported: %s)", v, strings.Join(allowed, ", "))
	}
}
