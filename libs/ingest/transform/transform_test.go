package transform_test

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/ingest/recipe"
	"github.com/outposthq/outpost/libs/ingest/transform"
)

const urn = "urn:li:dataset:(urn:li:dataPlatform:postgres,shop.public.orders,PROD)"

var stamp = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// source is what a source emits for a dataset: the transformers must
// leave every aspect they do not name as it is.
func source() transform.Aspects {
	return transform.Aspects{
		"datasetProperties": {"name": "orders", "customProperties": map[string]any{"kept": "yes"}},
		"schemaMetadata":    {"schemaName": "shop.public.orders"},
		"subTypes":          {"typeNames": []any{"Table"}},
	}
}

func chain(t *testing.T, transformers string) *transform.Chain {
	t.Helper()
	r, err := recipe.Parse([]byte("source: {type: postgres}\ntransformers:\n"+transformers), recipe.FormatYAML)
	require.NoError(t, err)
	c, err := transform.New(r, r.Transformers, func() time.Time { return stamp })
	require.NoError(t, err)
	return c
}

func TestTransformers(t *testing.T) {
	ms := stamp.UnixMilli()
	tests := []struct {
		name, transformers string
		// changed are the aspects the transformers set, all others
		// staying as the source emitted them.
		changed transform.Aspects
	}{
		{name: "simple_add_dataset_tags", transformers: `
  - type: simple_add_dataset_tags
    config: {tag_urns: ["urn:li:tag:NeedsDocumentation", "urn:li:tag:Legacy"]}`,
			changed: transform.Aspects{"globalTags": {"tags": []any{
				map[string]any{"tag": "urn:li:tag:NeedsDocumentation"}, map[string]any{"tag": "urn:li:tag:Legacy"}}}}},
		{name: "pattern_add_dataset_tags applies the first rule that matches, in order", transformers: `
  - type: pattern_add_dataset_tags
    config:
      tag_pattern:
        rules:
          ".*customers.*": ["urn:li:tag:People"]
          ".*orders.*": ["urn:li:tag:Sales"]
          ".*": ["urn:li:tag:Other"]`,
			changed: transform.Aspects{"globalTags": {"tags": []any{map[string]any{"tag": "urn:li:tag:Sales"}}}}},
		{name: "pattern rules, every match", transformers: `
  - type: pattern_add_dataset_tags
    config:
      tag_pattern:
        first_match_only: false
        rules: {".*orders.*": ["urn:li:tag:Sales"], ".*": ["urn:li:tag:Other"], "orders": ["urn:li:tag:NotAnchored"]}`,
			changed: transform.Aspects{"globalTags": {"tags": []any{map[string]any{"tag": "urn:li:tag:Sales"}, map[string]any{"tag": "urn:li:tag:Other"}}}}},
		{name: "tags added twice, then replaced", transformers: `
  - {type: simple_add_dataset_tags, config: {tag_urns: ["urn:li:tag:A"]}}
  - {type: simple_add_dataset_tags, config: {tag_urns: ["urn:li:tag:B"]}}
  - {type: simple_add_dataset_tags, config: {tag_urns: ["urn:li:tag:C"], replace_existing: true, semantics: overwrite}}
  - {type: simple_add_dataset_tags, config: {tag_urns: ["urn:li:tag:D"]}}`,
			changed: transform.Aspects{"globalTags": {"tags": []any{map[string]any{"tag": "urn:li:tag:C"}, map[string]any{"tag": "urn:li:tag:D"}}}}},
		{name: "simple_add_dataset_ownership", transformers: `
  - type: simple_add_dataset_ownership
    config:
      owner_urns: ["urn:li:corpuser:username1", "urn:li:corpGroup:groupname"]
      ownership_type: producer`,
			changed: transform.Aspects{"ownership": {"owners": []any{
				map[string]any{"owner": "urn:li:corpuser:username1", "type": "PRODUCER"},
				map[string]any{"owner": "urn:li:corpGroup:groupname", "type": "PRODUCER"}}}}},
		{name: "pattern_add_dataset_ownership with a custom type", transformers: `
  - type: pattern_add_dataset_ownership
    config:
      owner_pattern: {rules: {".*example1.*": ["urn:li:corpuser:u1"], ".*orders.*": ["urn:li:corpuser:u2"]}}
      ownership_type: "urn:li:ownershipType:__system__producer"`,
			changed: transform.Aspects{"ownership": {"owners": []any{
				map[string]any{"owner": "urn:li:corpuser:u2", "type": "CUSTOM", "typeUrn": "urn:li:ownershipType:__system__producer"}}}}},
		{name: "simple_remove_dataset_ownership clears what came before", transformers: `
  - {type: simple_add_dataset_ownership, config: {owner_urns: ["urn:li:corpuser:wrong"]}}
  - {type: simple_remove_dataset_ownership, config: {}}
  - {type: simple_add_dataset_ownership, config: {owner_urns: ["urn:li:corpuser:right"]}}`,
			changed: transform.Aspects{"ownership": {"owners": []any{map[string]any{"owner": "urn:li:corpuser:right", "type": "DATAOWNER"}}}}},
		{name: "simple_remove_dataset_ownership alone emits nothing", transformers: `
  - {type: simple_remove_dataset_ownership}`, changed: transform.Aspects{}},
		{name: "simple_add_dataset_terms", transformers: `
  - {type: simple_add_dataset_terms, config: {term_urns: ["urn:li:glossaryTerm:Email", "urn:li:glossaryTerm:Address"]}}`,
			changed: transform.Aspects{"glossaryTerms": {
				"terms":      []any{map[string]any{"urn": "urn:li:glossaryTerm:Email"}, map[string]any{"urn": "urn:li:glossaryTerm:Address"}},
				"auditStamp": map[string]any{"time": ms, "actor": "urn:li:corpuser:restEmitter"}}}},
		{name: "pattern_add_dataset_terms", transformers: `
  - type: pattern_add_dataset_terms
    config: {term_pattern: {rules: {".*example1.*": ["urn:li:glossaryTerm:Email"], ".*public.orders": ["urn:li:glossaryTerm:PostalCode"]}}}`,
			changed: transform.Aspects{"glossaryTerms": {
				"terms":      []any{map[string]any{"urn": "urn:li:glossaryTerm:PostalCode"}},
				"auditStamp": map[string]any{"time": ms, "actor": "urn:li:corpuser:restEmitter"}}}},
		{name: "set_dataset_browse_path", transformers: `
  - type: set_dataset_browse_path
    config: {path_templates: [/ENV/PLATFORM/DATASET_PARTS, /data_warehouse/DATASET_PARTS]}`,
			changed: transform.Aspects{"browsePaths": {"paths": []any{"/prod/postgres/shop/public/orders", "/data_warehouse/shop/public/orders"}}}},
		{name: "simple_add_dataset_properties", transformers: `
  - {type: simple_add_dataset_properties, config: {properties: {prop1: value1, kept: overwritten}}}`,
			changed: transform.Aspects{"datasetProperties": {"name": "orders", "customProperties": map[string]any{"kept": "overwritten", "prop1": "value1"}}}},
		{name: "simple_add_dataset_properties replacing", transformers: `
  - {type: simple_add_dataset_properties, config: {properties: {prop1: value1}, replace_existing: true}}`,
			changed: transform.Aspects{"datasetProperties": {"name": "orders", "customProperties": map[string]any{"prop1": "value1"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := source()
			chain(t, tt.transformers).Apply(urn, got)
			want := source()
			maps.Copy(want, tt.changed)
			require.Equal(t, want, got)
		})
	}
}

func TestChainRefusesWhatParseRefuses(t *testing.T) {
	r := &recipe.Recipe{}
	_, err := transform.New(r, []recipe.Section{{Type: "simple_add_dataset_tags", Config: map[string]any{"tag_urns": "x"}}}, time.Now)
	require.ErrorIs(t, err, recipe.ErrInvalid)
	require.ErrorContains(t, err, fmt.Sprintf("transformers[0].config: %s", "invalid recipe: config.tag_urns: must be a list"))
}
