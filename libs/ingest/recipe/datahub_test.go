package recipe_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/ingest/recipe"
)

// DataHub-shaped recipes, written as DataHub documents them.
const (
	defaultsOnly = `
source:
  type: mysql
  config:
    username: root
    password: example
sink:
  type: datahub-rest
  config:
    server: http://localhost:8080
`
	fullProfiling = `
source:
  type: postgres
  config:
    username: ingest
    password: ${PG_PASSWORD}
    database: shop
    include_view_lineage: true
    include_view_column_lineage: true
    stateful_ingestion: {enabled: true, remove_stale_metadata: true}
    profile_pattern: {deny: ['shop\.public\.secret.*']}
    profiling:
      enabled: true
      include_field_null_count: true
      include_field_distinct_count: true
      include_field_min_value: true
      include_field_max_value: true
      include_field_mean_value: true
      include_field_median_value: true
      include_field_stddev_value: false
      include_field_quantiles: false
      include_field_histogram: false
      include_field_sample_values: true
      field_sample_values_limit: 5
      max_number_of_fields_to_profile: 10
      profile_table_row_limit: 1000000
      profile_table_size_limit: 5
      max_workers: 4
      query_combiner_enabled: true
      operation_config: {lower_freq_profile_enabled: false}
`
	withAPI = `
pipeline_name: shop
run_id: shop-nightly
source: {type: mysql, config: {host_port: 'db:3306', database: shop}}
transformers:
  - type: pattern_add_dataset_tags
    config:
      tag_pattern:
        rules:
          ".*orders.*": ["urn:li:tag:Sales"]
          ".*": ["urn:li:tag:Other"]
          ".*customers.*": ["urn:li:tag:People"]
datahub_api:
  server: https://acme.acryl.io/gms
  token: ${DATAHUB_TOKEN}
  disable_ssl_verification: false
  some_future_key: 1
flags: {set_system_metadata_pipeline_name: false}
reporting: [{type: datahub}]
`
)

func TestDataHubShapes(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		notices []string
		check   func(t *testing.T, r *recipe.Recipe)
	}{
		{name: "defaults only", text: defaultsOnly, check: func(t *testing.T, r *recipe.Recipe) {
			require.Equal(t, "localhost:3306", recipe.HostPort(r.Source.Type, r.Source.Config))
			require.Equal(t, "localhost:5432", recipe.HostPort("postgres", nil))
			require.Equal(t, "db.internal:6432", recipe.HostPort("postgres", map[string]any{"host_port": "ignored:1",
				"sqlalchemy_uri": "postgresql+psycopg2://u:${PG_PASSWORD}@db.internal:6432/shop?sslmode=require"}), "the URI takes precedence")
			send, withName := r.Pipeline.SystemMetadata()
			require.True(t, send)
			require.True(t, withName)
		}},
		{name: "full profiling block", text: fullProfiling, notices: []string{
			"source.config.include_view_column_lineage: accepted, has no effect here (column-level lineage needs SQL parsing)",
			"source.config.profiling.include_field_histogram: accepted, has no effect here (histograms are not computed)",
			"source.config.profiling.include_field_quantiles: accepted, has no effect here (quantiles are not computed)",
			"source.config.profiling.max_workers: accepted, has no effect here (tables are profiled one at a time on one connection)",
			"source.config.profiling.query_combiner_enabled: accepted, has no effect here (a table's metrics are always read in one query)",
			"source.config.stateful_ingestion: accepted, has no effect here (stale-entity removal needs DataHub's state store)",
		}, check: func(t *testing.T, r *recipe.Recipe) {
			cfg, err := recipe.DecodeConfig(r.Source)
			require.NoError(t, err)
			p := cfg.(*recipe.PostgresSource).Profiling
			require.Equal(t, 10, *p.MaxFields)
			require.Equal(t, 5, *p.FieldSampleValuesLimit)
			require.False(t, *p.StddevValue)
		}},
		{name: "datahub_api, flags, reporting, run_id", text: withAPI, notices: []string{
			"datahub_api: accepted, has no effect here (records go to the sink; nothing is read from a DataHub server)",
			"datahub_api.disable_ssl_verification: accepted, has no effect here (TLS is always verified)",
			"datahub_api.some_future_key: unknown key, ignored (as DataHub ignores it)",
			"reporting: accepted, has no effect here (the run is reported to Outpost)",
		}, check: func(t *testing.T, r *recipe.Recipe) {
			require.Equal(t, "shop-nightly", r.RunID)
			require.Equal(t, "https://acme.acryl.io/gms", r.Pipeline.DataHubAPI.Server)
			send, withName := r.Pipeline.SystemMetadata()
			require.True(t, send)
			require.False(t, withName)
			cfg, err := recipe.DecodeConfig(r.Transformers[0])
			require.NoError(t, err)
			rules := cfg.(*recipe.PatternAddDatasetTags).TagPattern.Rules
			require.Equal(t, []string{".*orders.*", ".*", ".*customers.*"},
				recipe.Ordered(r, "transformers[0].config.tag_pattern.rules", rules), "rules apply in the order written")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, format := range []recipe.Format{recipe.FormatYAML} {
				r, err := recipe.Parse([]byte(tt.text), format)
				require.NoError(t, err)
				var got []string
				for _, n := range r.Notices {
					got = append(got, n.Error())
				}
				require.ElementsMatch(t, tt.notices, got)
				tt.check(t, r)
			}
		})
	}
}
