package recipe_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/outposthq/outpost/libs/ingest/recipe"
)

// FuzzParse feeds Parse and Decode any recipe text. A failure is
// ErrMalformed or ErrInvalid (with its faults listed); a tree holds only
// the documented types and reads back the same once re-encoded; a recipe
// Parse accepts decodes into its typed configurations (what the runner
// does next) and parses again, unchanged, from its own tree.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		good,
		defaultsOnly,
		"source: {type: mysql, config: {domain: {'urn:li:domain:a': {allow: ['x']}, Sales: {deny: ['(']}}}}",
		"source: {type: postgres, config: {sqlalchemy_uri: 'postgresql+psycopg2://u:${PG}@db:5432/d?sslmode=require', host_port: h}}",
		"source: {type: mysql, config: {sqlalchemy_uri: 'sqlite://x@/'}}",
		fullProfiling,
		withAPI,
		"source: {type: mysql}\ntransformers: [{type: simple_add_dataset_ownership, config: {owner_urns: ['urn:li:corpuser:a'], ownership_type: 'urn:li:ownershipType:x'}}, {type: simple_remove_dataset_ownership, config: {}}, {type: set_dataset_browse_path, config: {replace_existing: true, path_templates: [/ENV/PLATFORM/DATASET_PARTS]}}, {type: simple_add_dataset_properties, config: {properties: {a: b}}}]",
		"source: {type: postgres, config: {profiling: {enabled: true, profile_table_level_only: true, limit: null}}}\nsink: {type: datahub-kafka}",
		`{"source":{"type":"postgres","config":{"profiling":{"enabled":true,"include_field_histogram":true}}},"datahub_api":{"server":"http://x","extra":[1]},"flags":{"set_system_metadata":false}}`,
		`{"source":{"type":"mysql","config":{"host_port":"h:3306","table_pattern":{"allow":["^a"]}}},"sink":{"type":"console"}}`,
		"source: {type: postgres, config: {host_port: h, database: d, password: '${PG}'}}\nsink: {type: http, config: {url: 'https://x'}}",
		"source: {type: mysql, config: {host_port: h, table_pattern: {deny: ['(']}}}",
		"source: {type: mysql, config: {host_port: h}}\ntransformers: [{type: x}]",
		"source: {type: postgres, config: {port: 1}}\nsink: {type: file}",
		"source: &a {type: mysql, config: {host_port: *a}}",
		"a: !!timestamp 2001-12-14\nb: !!binary aGk=\nc: .nan\nd: -.inf\ne: 18446744073709551615\nf: 0x1F\ng: ~",
		"? [a, b]\n: c",
		"1: x",
		`{"n": 1e400}`,
		`{"n": 12345678901234567890, "f": 3.0}`,
		"- a\n- b",
		"  ",
		`{"source": }`,
		`{} {}`,
	} {
		for _, format := range []recipe.Format{recipe.FormatAuto, recipe.FormatYAML, recipe.FormatJSON} {
			f.Add([]byte(s), uint8(format))
		}
	}

	f.Fuzz(func(t *testing.T, text []byte, formatByte uint8) {
		format := recipe.Format(formatByte % 3)
		tree, err := recipe.Decode(text, format)
		if err != nil {
			require.ErrorIs(t, err, recipe.ErrMalformed)
		} else {
			requireTree(t, "", tree)
			requireReadsBack(t, tree)
		}

		r, err := recipe.Parse(text, format)
		if err != nil {
			malformed, invalid := errors.Is(err, recipe.ErrMalformed), errors.Is(err, recipe.ErrInvalid)
			require.NotEqual(t, malformed, invalid, "exactly one of ErrMalformed or ErrInvalid: %v", err)
			if invalid {
				var ve *recipe.ValidationError
				require.ErrorAs(t, err, &ve)
				require.NotEmpty(t, ve.Faults)
			}
			return
		}
		_, err = recipe.DecodeConfig(r.Source)
		require.NoError(t, err, "an accepted source decodes into its configuration")
		_, err = recipe.DecodeConfig(r.Sink)
		require.NoError(t, err, "an accepted sink decodes into its configuration")

		raw, err := json.Marshal(r.Tree())
		require.NoError(t, err, "an accepted recipe encodes as JSON")
		again, err := recipe.Parse(raw, recipe.FormatJSON)
		require.NoError(t, err, "an accepted recipe parses again from its tree: %s", raw)
		requireSame(t, "", r.Tree(), again.Tree())
	})
}

// requireTree checks that v holds only the types Decode documents.
func requireTree(t *testing.T, path string, v any) {
	t.Helper()
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			requireTree(t, path+"."+k, e)
		}
	case []any:
		for i, e := range x {
			requireTree(t, fmt.Sprintf("%s[%d]", path, i), e)
		}
	case nil, string, bool, int64, float64:
	default:
		require.Failf(t, "undocumented type in a recipe tree", "%s: %T", path, v)
	}
}

// requireReadsBack re-encodes a tree (YAML can say everything a tree
// holds, NaN included) and decodes it again.
func requireReadsBack(t *testing.T, tree map[string]any) {
	t.Helper()
	raw, err := yaml.Marshal(tree)
	require.NoError(t, err)
	back, err := recipe.Decode(raw, recipe.FormatYAML)
	require.NoError(t, err, "a re-encoded tree decodes: %s", raw)
	requireSame(t, "", tree, back)
}

// requireSame compares trees, numbers by value whatever their Go type
// (JSON has one number type) and NaN equal to NaN.
func requireSame(t *testing.T, path string, want, got any) {
	t.Helper()
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		require.True(t, ok, "%s: %T", path, got)
		require.Len(t, g, len(w), path)
		for k, e := range w {
			requireSame(t, path+"."+k, e, g[k])
		}
		return
	case []any:
		g, ok := got.([]any)
		require.True(t, ok, "%s: %T", path, got)
		require.Len(t, g, len(w), path)
		for i, e := range w {
			requireSame(t, fmt.Sprintf("%s[%d]", path, i), e, g[i])
		}
		return
	}
	if wn, ok := number(want); ok {
		gn, isNum := number(got)
		require.True(t, isNum, "%s: %T", path, got)
		require.True(t, wn == gn || math.IsNaN(wn) && math.IsNaN(gn), "%s: %v != %v", path, want, got)
		return
	}
	require.Equal(t, want, got, path)
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}

// TestDecodeKeepsValues pins what the fuzz test's round trip cannot see:
// a value the decoders would change rather than refuse.
func TestDecodeKeepsValues(t *testing.T) {
	tests := []struct {
		name, text string
		want       any
	}{
		{name: "past int64 is a float, not a wrapped int", text: "n: 18446744073709551615", want: float64(18446744073709551615)},
		{name: "JSON past int64", text: `{"n": 18446744073709551615}`, want: float64(18446744073709551615)},
		{name: "int64", text: "n: 9223372036854775807", want: int64(9223372036854775807)},
		{name: "tagged timestamp is text as written", text: "n: !!timestamp 2001-12-14t21:59:43.10-05:00", want: "2001-12-14t21:59:43.10-05:00"},
		{name: "untagged timestamp stays as written", text: "n: 2001-12-14", want: "2001-12-14"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree, err := recipe.Decode([]byte(tt.text), recipe.FormatAuto)
			require.NoError(t, err)
			require.Equal(t, tt.want, tree["n"])
		})
	}
}
