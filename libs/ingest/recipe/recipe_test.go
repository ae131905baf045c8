package recipe_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/ingest/recipe"
)

const good = `
pipeline_name: pg-prod
source:
  type: postgres
  config:
    host_port: db:5432
    database: shop
    username: ingest
    password: ${PG_PASSWORD}
    include_views: true
    schema_pattern: {deny: ["^tmp"]}
    profiling: {enabled: true}
sink:
  type: datahub-rest
  config:
    server: https://acme.acryl.io/gms
    token: ${DATAHUB_TOKEN}
`

func TestParseGood(t *testing.T) {
	r, err := recipe.Parse([]byte(good), recipe.FormatYAML)
	require.NoError(t, err)
	require.Equal(t, "pg-prod", r.PipelineName)
	require.Equal(t, "postgres", r.Source.Type)
	require.Equal(t, "${PG_PASSWORD}", r.Source.Config["password"], "references stay unresolved")
	cfg, err := recipe.DecodeConfig(r.Source)
	require.NoError(t, err)
	pg := cfg.(*recipe.PostgresSource)
	require.Equal(t, "db:5432", pg.HostPort)
	require.True(t, *pg.IncludeViews)
	require.True(t, pg.Profiling.Enabled)
	m, err := pg.SchemaPattern.Compile()
	require.NoError(t, err)
	require.False(t, m.Allowed("TMP_x"), "ignoreCase defaults to true")
	require.True(t, m.Allowed("public"))

	j, err := recipe.Parse([]byte(`{"source":{"type":"mysql","config":{"host_port":"h:3306"}}}`), recipe.FormatAuto)
	require.NoError(t, err)
	require.Equal(t, recipe.DefaultSink, j.Sink.Type, "no sink: records go back to the control plane")
}

func TestParseFaults(t *testing.T) {
	tests := []struct {
		name, text string
		malformed  bool
		want       []string
	}{
		{name: "malformed YAML", text: "source: [unclosed", malformed: true, want: []string{"YAML"}},
		{name: "malformed JSON", text: `{"source": }`, malformed: true, want: []string{"JSON"}},
		{name: "not a mapping", text: "- a\n- b", malformed: true, want: []string{"top level must be a mapping"}},
		{name: "empty", text: "  ", malformed: true, want: []string{"empty"}},
		{name: "missing source", text: "sink: {type: console}", want: []string{"source: required"}},
		{name: "required key", text: "source: {type: postgres}\ntransformers: [{type: simple_add_dataset_tags}]",
			want: []string{"transformers[0].config.tag_urns: required"}},
		{name: "unknown source type", text: "source: {type: snowflake, config: {}}",
			want: []string{`source.type: unknown source type "snowflake" (supported: mysql, postgres)`}},
		{name: "unknown sink type", text: "source: {type: mysql, config: {host_port: h}}\nsink: {type: kafka}",
			want: []string{`sink.type: unknown sink type "kafka" (supported: console, datahub-rest, file, http, outpost)`}},
		{name: "unknown key", text: "source: {type: mysql, config: {host_port: h, hostport: x}}",
			want: []string{"source.config.hostport: unknown key, not supported by this runner (known: "}},
		{name: "misspelt profiling key", text: "source: {type: mysql, config: {host_port: h, profiling: {enabled: true, include_field_nul_count: true}}}",
			want: []string{"source.config.profiling.include_field_nul_count: unknown key"}},
		{name: "wrong type", text: "source: {type: mysql, config: {host_port: h, include_views: yes please}}",
			want: []string{"source.config.include_views: must be true or false, not a string"}},
		{name: "bad regex", text: "source: {type: mysql, config: {host_port: h, table_pattern: {deny: ['(']}}}",
			want: []string{"source.config.table_pattern.deny[0]: invalid regex"}},
		{name: "unknown top-level key", text: "source: {type: mysql, config: {host_port: h}}\nreportin: []",
			want: []string{"reportin: unknown key (known: datahub_api, failure_log, flags, pipeline_name, recording, reporting, run_id, sink, source, transformers)"}},
		{name: "unknown transformer", text: "source: {type: mysql, config: {host_port: h}}\ntransformers: [{type: add_dataset_domain}]",
			want: []string{`transformers[0].type: unknown transformer type "add_dataset_domain" (supported: pattern_add_dataset_ownership, pattern_add_dataset_tags, pattern_add_dataset_terms, set_dataset_browse_path, simple_add_dataset_ownership, simple_add_dataset_properties, simple_add_dataset_tags, simple_add_dataset_terms, simple_remove_dataset_ownership)`}},
		{name: "resolver class transformer", text: "source: {type: mysql}\ntransformers: [{type: add_dataset_properties, config: {add_properties_resolver_class: a.B}}]",
			want: []string{"transformers[0].type: add_dataset_properties calls a Python resolver class, which this runner cannot run; for static properties use simple_add_dataset_properties"}},
		{name: "PATCH semantics", text: "source: {type: mysql}\ntransformers: [{type: simple_add_dataset_tags, config: {semantics: patch, tag_urns: ['urn:li:tag:a']}}]",
			want: []string{"transformers[0].config.semantics: PATCH merges with the aspects on the DataHub server"}},
		{name: "transformer URNs", text: "source: {type: mysql}\ntransformers: [{type: simple_add_dataset_ownership, config: {owner_urns: [bob], ownership_type: boss}}, {type: pattern_add_dataset_terms, config: {term_pattern: {rules: {'(': ['urn:li:glossaryTerm:x'], '.*': ['urn:li:tag:x']}}}}]",
			want: []string{`transformers[0].config.owner_urns[0]: "bob" is not a URN starting with urn:li:corpuser: or urn:li:corpGroup:`,
				`transformers[0].config.ownership_type: unknown value "boss" (supported: CUSTOM, TECHNICAL_OWNER`,
				"transformers[1].config.term_pattern.rules.(: invalid regex",
				`transformers[1].config.term_pattern.rules..*[0]: "urn:li:tag:x" is not a URN starting with urn:li:glossaryTerm:`}},
		{name: "datahub-kafka", text: "source: {type: mysql}\nsink: {type: datahub-kafka, config: {connection: {bootstrap: 'b:9092'}}}",
			want: []string{"sink.type: datahub-kafka is not supported: this runner has no Kafka; send to DataHub's GMS with datahub-rest"}},
		{name: "sqlalchemy_uri", text: "source: {type: postgres, config: {sqlalchemy_uri: 'db.internal:5432'}}",
			want: []string{"source.config.sqlalchemy_uri: must be a URI: scheme://user:password@host:port/database"}},
		{name: "table level only", text: "source: {type: postgres, config: {profiling: {enabled: true, profile_table_level_only: true, include_field_min_value: true, max_number_of_fields_to_profile: 3}}}",
			want: []string{"source.config.profiling.include_field_min_value: cannot enable field-level metrics if profile_table_level_only is set",
				"source.config.profiling.max_number_of_fields_to_profile: must not be set with profile_table_level_only"}},
		{name: "profiling ranges", text: "source: {type: mysql, config: {profiling: {max_number_of_fields_to_profile: 0, limit: -1, operation_config: {profile_day_of_week: 7}}}}",
			want: []string{"source.config.profiling.max_number_of_fields_to_profile: must be a positive number", "source.config.profiling.limit: must not be negative",
				"source.config.profiling.operation_config.profile_day_of_week: must be from 0 (Monday) to 6"}},
		{name: "unknown flag", text: "source: {type: mysql}\nflags: {generate_browse_path_v3: true}",
			want: []string{"flags.generate_browse_path_v3: unknown key, not supported by this runner"}},
		{name: "console takes no keys", text: "source: {type: mysql, config: {host_port: h}}\nsink: {type: console, config: {x: 1}}",
			want: []string{"sink.config.x: unknown key (this section takes no keys)"}},
		{name: "http url", text: "source: {type: mysql, config: {host_port: h}}\nsink: {type: http, config: {url: ftp://x}}",
			want: []string{"sink.config.url: must be an http:// or https:// URL"}},
		{name: "every fault at once", text: "source: {type: postgres, config: {port: 1}}\nsink: {type: file}\nrun_id: 7",
			want: []string{"run_id: must be a string, not a number", "source.config.port: unknown key", "sink.config.filename: required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := recipe.Parse([]byte(tt.text), recipe.FormatAuto)
			require.Error(t, err)
			if tt.malformed {
				require.ErrorIs(t, err, recipe.ErrMalformed)
			} else {
				require.ErrorIs(t, err, recipe.ErrInvalid)
				var ve *recipe.ValidationError
				require.ErrorAs(t, err, &ve)
				require.Len(t, ve.Faults, len(tt.want))
			}
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestParseSource(t *testing.T) {
	s, err := recipe.ParseSource([]byte("type: postgres\nconfig: {host_port: h, database: d}"), recipe.FormatYAML)
	require.NoError(t, err)
	require.Equal(t, "postgres", s.Type)
	_, err = recipe.ParseSource([]byte("type: postgres\nconfig: {port: 5432}"), recipe.FormatYAML)
	require.ErrorContains(t, err, "source.config.port: unknown key")
}

func TestMapStrings(t *testing.T) {
	tree, err := recipe.Decode([]byte("a: {b: [x, '${S}'], n: 3}"), recipe.FormatYAML)
	require.NoError(t, err)
	var paths []string
	out, err := recipe.MapStrings("", tree, func(p, s string) (string, error) {
		paths = append(paths, p)
		return s + "!", nil
	})
	require.NoError(t, err)
	require.Equal(t, []string{"a.b[0]", "a.b[1]"}, paths)
	require.Equal(t, map[string]any{"a": map[string]any{"b": []any{"x!", "${S}!"}, "n": int64(3)}}, out)
	require.Equal(t, "${S}", tree["a"].(map[string]any)["b"].([]any)[1], "the input is not changed")
}
