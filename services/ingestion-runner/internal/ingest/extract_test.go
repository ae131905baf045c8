package ingest_test

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/libs/ingest/ingesttest"
)

func TestExtractExactly(t *testing.T) {
	for _, tc := range []struct {
		kind   string
		db     func(testing.TB) *dbtest.DB
		schema string
		config string
	}{
		{"postgres", dbtest.SharedPostgres, ingesttest.PostgresSchema, "schema_pattern: {deny: [scratch, public]}"},
		{"mysql", dbtest.SharedMariaDB, ingesttest.MariaDBSchema, ""},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			db := tc.db(t)
			ingesttest.Load(t, db, tc.schema)
			secretDir := t.TempDir()
			writeSecret(t, secretDir, "DB_PASSWORD", db.Password)
			outFile := filepath.Join(t.TempDir(), "records.jsonl")
			recipeText := fmt.Sprintf(`
source:
  type: %s
  config:
    host_port: %s
    database: %s
    username: %s
    password: ${DB_PASSWORD}
    include_views: true
    table_pattern: {deny: ['.*\.tmp_']}
    profiling: {enabled: true}
    %s
sink: {type: file, config: {filename: %s}}
`, tc.kind, db.HostPort(), db.Database, db.User, tc.config, outFile)
			res, out := run(t, newTask(secretDir, nil), recipeText)
			require.NoError(t, res.Err, out.text())
			var got strings.Builder
			for _, rec := range readLines(t, outFile) {
				got.WriteString(project(rec))
			}
			require.Equal(t, want[tc.kind], normalize(got.String(), db.Database))
			require.Contains(t, out.text(), "records written to file; 0 warnings; 0 failures")
			if tc.kind == "mysql" {
				require.Contains(t, out.text(), "lineage: this server has no information_schema.VIEW_TABLE_USAGE (MariaDB): views get no upstreamLineage")
			}
			require.NotContains(t, out.text(), db.Password)
		})
	}
}

// normalize replaces the test's random database name and numbers the
// container URNs (md5 of names that hold it) by first appearance.
func normalize(s, database string) string {
	s = strings.ReplaceAll(s, database, "DB")
	// PostgreSQL 16 stopped qualifying view columns; compare without.
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

var containerURN = regexp.MustCompile(`urn:li:container:[0-9a-f]{32}`)

var want = map[string]string{
	"postgres": `database DB urn:li:container:C1
  subTypes: [Database]
schema DB.shop urn:li:container:C2
  subTypes: [Schema]
  container: urn:li:container:C1
view DB.shop.big_orders urn:li:dataset:(urn:li:dataPlatform:postgres,DB.shop.big_orders,PROD)
  description: Multi-line orders
  subTypes: [View]
  field id bigint (NumberType) nullable=true key=false
  view: SELECT id FROM shop.orders WHERE (line > 1);
  upstream VIEW urn:li:dataset:(urn:li:dataPlatform:postgres,DB.shop.orders,PROD)
  container: urn:li:container:C2
table DB.shop.customers urn:li:dataset:(urn:li:dataPlatform:postgres,DB.shop.customers,PROD)
  description: People who buy
  subTypes: [Table]
  field id integer (NumberType) nullable=false key=true
  field email text (StringType) nullable=false key=false "Login address"
  field note character varying(20) (StringType) nullable=true key=false
  primaryKeys: [id]
  rowCount: 2 at 1.767323045e+12
  container: urn:li:container:C2
table DB.shop.orders urn:li:dataset:(urn:li:dataPlatform:postgres,DB.shop.orders,PROD)
  subTypes: [Table]
  field id bigint (NumberType) nullable=false key=true
  field line integer (NumberType) nullable=false key=true
  field customer_id integer (NumberType) nullable=false key=false
  field placed_at timestamp with time zone (TimeType) nullable=true key=false
  field paid boolean (BooleanType) nullable=true key=false
  primaryKeys: [id line]
  fk orders_customer_fk: [urn:li:schemaField:(urn:li:dataset:(urn:li:dataPlatform:postgres,DB.shop.orders,PROD),customer_id)] -> [urn:li:schemaField:(urn:li:dataset:(urn:li:dataPlatform:postgres,DB.shop.customers,PROD),id)]
  rowCount: 1 at 1.767323045e+12
  container: urn:li:container:C2
`,
	"mysql": "database DB urn:li:container:C1\n" +
		"  subTypes: [Database]\n" +
		"view DB.big_orders urn:li:dataset:(urn:li:dataPlatform:mysql,DB.big_orders,PROD)\n" +
		"  subTypes: [View]\n" +
		"  field id bigint(20) (NumberType) nullable=false key=false\n" +
		"  view: select `DB`.`orders`.`id` AS `id` from `DB`.`orders` where `DB`.`orders`.`line` > 1\n" +
		"  container: urn:li:container:C1\n" +
		`table DB.customers urn:li:dataset:(urn:li:dataPlatform:mysql,DB.customers,PROD)
  description: People who buy
  subTypes: [Table]
  field id int(11) (NumberType) nullable=false key=true
  field email text (StringType) nullable=false key=false "Login address"
  field note varchar(20) (StringType) nullable=true key=false
  primaryKeys: [id]
  rowCount: 2 at 1.767323045e+12
  container: urn:li:container:C1
table DB.orders urn:li:dataset:(urn:li:dataPlatform:mysql,DB.orders,PROD)
  subTypes: [Table]
  field id bigint(20) (NumberType) nullable=false key=true
  field line int(11) (NumberType) nullable=false key=true
  field customer_id int(11) (NumberType) nullable=false key=false
  field placed_at timestamp (TimeType) nullable=true key=false
  field paid tinyint(1) (NumberType) nullable=true key=false
  primaryKeys: [id line]
  fk orders_customer_fk: [urn:li:schemaField:(urn:li:dataset:(urn:li:dataPlatform:mysql,DB.orders,PROD),customer_id)] -> [urn:li:schemaField:(urn:li:dataset:(urn:li:dataPlatform:mysql,DB.customers,PROD),id)]
  rowCount: 1 at 1.767323045e+12
  container: urn:li:container:C1
`,
}
