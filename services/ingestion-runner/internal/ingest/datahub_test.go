package ingest_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/libs/ingest/ingesttest"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/ingest"
)

// TestDataHubDefaults: a recipe with only username and password reaches
// DataHub's default address.
func TestDataHubDefaults(t *testing.T) {
	for _, kind := range []string{"postgres", "mysql"} {
		t.Run(kind, func(t *testing.T) {
			dir := t.TempDir()
			writeSecret(t, dir, "DB_PASSWORD", secretValue)
			res, out := run(t, newTask(dir, nil), "source:\n  type: "+kind+"\n  config: {username: u, password: '${DB_PASSWORD}'}\nsink: {type: console}\n")
			require.Error(t, res.Err)
			require.True(t, errorsIsAny(res.Err, ingest.ErrUnreachable, ingest.ErrAuth, ingest.ErrSourceConfig), res.Err)
			port := map[string]string{"postgres": "5432", "mysql": "3306"}[kind]
			require.Contains(t, out.reason(res.Err), kind+" at localhost:"+port+` as "u"`)
		})
	}
}

// dataHubRecipe is written in DataHub's documented shapes: datahub_api
// (its token never resolved: nothing reads it), run_id, flags, reporting,
// a profiling block with keys that have no effect here, and a list of
// transformers.
const dataHubRecipe = `
pipeline_name: shop-catalogue
run_id: shop-nightly
datahub_api:
  server: https://acme.acryl.io/gms
  token: ${NO_SUCH_SECRET}
reporting: [{type: datahub, required: false}]
flags: {set_system_metadata: true}
source:
  type: %[1]s
  config:
    host_port: %[2]s
    database: %[3]s
    username: %[4]s
    password: ${DB_PASSWORD}
    %[5]s
    table_pattern: {deny: ['.*\.tmp_']}
    include_view_lineage: true
    stateful_ingestion: {enabled: true}
    domain:
      "urn:li:domain:people": {allow: ['.*\.customers$']}
      "urn:li:domain:shop": {allow: ['.*']}
      Marketing: {allow: ['.*']}
    profiling:
      enabled: true
      profile_table_level_only: true
      max_workers: 2
transformers:
  - type: simple_add_dataset_tags
    config: {tag_urns: ["urn:li:tag:Shop"]}
  - type: pattern_add_dataset_ownership
    config:
      owner_pattern: {rules: {".*customers.*": ["urn:li:corpuser:crm"], ".*": ["urn:li:corpGroup:data"]}}
      ownership_type: TECHNICAL_OWNER
  - type: simple_add_dataset_terms
    config: {term_urns: ["urn:li:glossaryTerm:Sales"]}
  - type: set_dataset_browse_path
    config: {path_templates: [/ENV/PLATFORM/DATASET_PARTS]}
  - type: simple_add_dataset_properties
    config: {properties: {team: shop}}
sink: {type: file, config: {filename: %[6]s}}
`

// TestDataHubRecipe runs dataHubRecipe on both servers: the datasets carry
// the transformers' aspects, exactly; containers none of them; views
// their upstreams; and the job log names every key without effect.
func TestDataHubRecipe(t *testing.T) {
	for _, tc := range []struct {
		kind, schema, extra, prefix string
		db                          func(testing.TB) *dbtest.DB
		upstreams                   map[string][]string
	}{
		{kind: "postgres", db: dbtest.SharedPostgres, prefix: "DB.shop.", extra: "schema_pattern: {allow: [shop]}",
			schema: ingesttest.PostgresSchema + `
CREATE VIEW shop.order_emails AS SELECT o.id, c.email FROM shop.orders o JOIN shop.customers c ON c.id = o.customer_id;
CREATE VIEW shop.bigger_orders AS SELECT id FROM shop.big_orders;
`,
			upstreams: map[string][]string{"big_orders": {"orders"}, "order_emails": {"customers", "orders"}, "bigger_orders": {"big_orders"}}},
		{kind: "mysql", db: dbtest.SharedMariaDB, prefix: "DB.", schema: ingesttest.MariaDBSchema, upstreams: map[string][]string{}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			db := tc.db(t)
			ingesttest.Load(t, db, tc.schema)
			dir := t.TempDir()
			writeSecret(t, dir, "DB_PASSWORD", db.Password)
			outFile := filepath.Join(t.TempDir(), "records.jsonl")
			res, out := run(t, newTask(dir, nil), fmt.Sprintf(dataHubRecipe, tc.kind, db.HostPort(), db.Database, db.User, tc.extra, outFile))
			require.NoError(t, res.Err, out.text())
			log := out.text()
			for _, key := range []string{"datahub_api", "reporting", "source.config.stateful_ingestion", "source.config.profiling.max_workers"} {
				require.Contains(t, log, "warning: "+key+": accepted, has no effect here")
			}
			require.Contains(t, log, "ingest shop-catalogue: source "+tc.kind+", 5 transformers, sink file, run_id shop-nightly")
			require.Contains(t, log, "warning: source.config.domain.Marketing: skipped: a domain name is resolved on DataHub's server")

			urn := func(name string) string {
				return fmt.Sprintf("urn:li:dataset:(urn:li:dataPlatform:%s,%s%s,PROD)", tc.kind, strings.Replace(tc.prefix, "DB", db.Database, 1), name)
			}
			datasets := 0
			for _, rec := range readLines(t, outFile) {
				aspects := rec["aspects"].(map[string]any)
				name := strings.TrimPrefix(strings.Replace(rec["name"].(string), db.Database, "DB", 1), tc.prefix)
				domain := "urn:li:domain:shop"
				if name == "customers" {
					domain = "urn:li:domain:people"
				}
				require.Equal(t, map[string]any{"domains": []any{domain}}, aspects["domains"], name)
				if rec["entity_type"] == "database" || rec["entity_type"] == "schema" {
					for _, a := range []string{"globalTags", "ownership", "glossaryTerms", "browsePaths", "datasetProfile"} {
						require.NotContains(t, aspects, a, "container %s", name)
					}
					continue
				}
				datasets++
				owner := "urn:li:corpGroup:data"
				if name == "customers" {
					owner = "urn:li:corpuser:crm"
				}
				require.Equal(t, map[string]any{"tags": []any{map[string]any{"tag": "urn:li:tag:Shop"}}}, aspects["globalTags"], name)
				require.Equal(t, map[string]any{"owners": []any{map[string]any{"owner": owner, "type": "TECHNICAL_OWNER"}}}, aspects["ownership"], name)
				require.Equal(t, map[string]any{"terms": []any{map[string]any{"urn": "urn:li:glossaryTerm:Sales"}},
					"auditStamp": map[string]any{"time": float64(fixedNow.UnixMilli()), "actor": "urn:li:corpuser:restEmitter"}}, aspects["glossaryTerms"], name)
				path := "/prod/" + tc.kind + "/" + strings.ReplaceAll(strings.Replace(tc.prefix, "DB", db.Database, 1)+name, ".", "/")
				require.Equal(t, map[string]any{"paths": []any{path}}, aspects["browsePaths"], name)
				require.Equal(t, map[string]any{"team": "shop"}, aspects["datasetProperties"].(map[string]any)["customProperties"], name)
				if rec["entity_type"] == "table" {
					require.Equal(t, map[string]any{"timestampMillis": float64(fixedNow.UnixMilli()), "rowCount": map[string]float64{"customers": 2, "orders": 1}[name], "columnCount": columns(aspects)},
						aspects["datasetProfile"], "table level only: %s", name)
				}
				var ups []any
				for _, u := range tc.upstreams[name] {
					ups = append(ups, map[string]any{"dataset": urn(u), "type": "VIEW", "auditStamp": map[string]any{"time": 0.0, "actor": "urn:li:corpuser:unknown"}})
				}
				if ups == nil {
					require.NotContains(t, aspects, "upstreamLineage", name)
				} else {
					require.Equal(t, map[string]any{"upstreams": ups}, aspects["upstreamLineage"], name)
				}
			}
			require.Equal(t, map[string]int{"postgres": 5, "mysql": 3}[tc.kind], datasets)
		})
	}
}

func columns(aspects map[string]any) float64 {
	return float64(len(aspects["schemaMetadata"].(map[string]any)["fields"].([]any)))
}

func errorsIsAny(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// TestPostgresEveryDatabase: without database, the postgres source lists
// the server's databases from initial_database and reads those
// database_pattern allows, as DataHub's.
func TestPostgresEveryDatabase(t *testing.T) {
	db := dbtest.SharedPostgres(t)
	ingesttest.Load(t, db, "CREATE TABLE t1 (x int)")
	dir := t.TempDir()
	writeSecret(t, dir, "DB_PASSWORD", db.Password)
	outFile := filepath.Join(t.TempDir(), "records.jsonl")
	res, out := run(t, newTask(dir, nil), fmt.Sprintf(`
source:
  type: postgres
  config:
    host_port: %s
    initial_database: %s
    database_pattern: {allow: ['^%s$']}
    username: %s
    password: ${DB_PASSWORD}
sink: {type: file, config: {filename: %s}}
`, db.HostPort(), db.Database, db.Database, db.User, outFile))
	require.NoError(t, res.Err, out.text())
	var names []string
	for _, rec := range readLines(t, outFile) {
		names = append(names, strings.Replace(rec["name"].(string), db.Database, "DB", 1))
	}
	require.Equal(t, []string{"DB", "DB.public", "DB.public.t1"}, names, "only the database the pattern allows")
}

// TestSQLAlchemyURI: a sqlalchemy_uri takes precedence over host_port and
// database, as DataHub's; a resolved password cannot move the address.
func TestSQLAlchemyURI(t *testing.T) {
	for _, tc := range []struct {
		kind, scheme string
		db           func(testing.TB) *dbtest.DB
	}{
		{"postgres", "postgresql+psycopg2", dbtest.SharedPostgres},
		{"mysql", "mysql+pymysql", dbtest.SharedMariaDB},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			db := tc.db(t)
			ingesttest.Load(t, db, "CREATE TABLE t1 (x int)")
			dir := t.TempDir()
			writeSecret(t, dir, "DB_PASSWORD", db.Password)
			writeSecret(t, dir, "BAD_PASSWORD", "x@127.0.0.1:1/")
			outFile := filepath.Join(t.TempDir(), "records.jsonl")
			text := func(secret string) string {
				return fmt.Sprintf("source:\n  type: %s\n  config:\n    host_port: 127.0.0.1:1\n    database: nothere\n    sqlalchemy_uri: '%s://%s:${%s}@%s/%s'\nsink: {type: file, config: {filename: %s}}\n",
					tc.kind, tc.scheme, db.User, secret, db.HostPort(), db.Database, outFile)
			}
			res, out := run(t, newTask(dir, nil), text("DB_PASSWORD"))
			require.NoError(t, res.Err, out.text())
			require.Len(t, readLines(t, outFile), map[string]int{"postgres": 3, "mysql": 2}[tc.kind])

			res, out = run(t, newTask(dir, nil), text("BAD_PASSWORD"))
			require.ErrorIs(t, res.Err, ingest.ErrSourceConfig)
			require.Contains(t, out.reason(res.Err), "the source no longer connects to "+db.HostPort()+", the address written")
			require.NotContains(t, out.reason(res.Err), "x@127.0.0.1")
		})
	}
}
