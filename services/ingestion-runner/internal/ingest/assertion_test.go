package ingest_test

import (
	"cmp"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/libs/queue"
	ingestv1 "github.com/outposthq/outpost/proto/outpost/ingest/v1"
	jobsv1 "github.com/outposthq/outpost/proto/outpost/jobs/v1"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/ingest"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

const (
	pass = ingestv1.CheckOutcome_CHECK_OUTCOME_PASS
	fail = ingestv1.CheckOutcome_CHECK_OUTCOME_FAIL
	erro = ingestv1.CheckOutcome_CHECK_OUTCOME_ERROR
)

// assertionDB is one server kind with the DDL for the checked table.
type assertionDB struct {
	kind   string
	open   func(testing.TB) *dbtest.DB
	source string // recipe source type
	setup  []string
	// weird is a table whose name would end a naive quoting.
	weird string
	// schema qualifies a table name ("" for the database itself).
	schema string
}

var assertionDBs = []assertionDB{
	{
		kind: "postgres", open: dbtest.SharedPostgres, source: "postgres",
		setup: []string{
			`CREATE TABLE orders (id int PRIMARY KEY, email text, sku text, created_at timestamptz, paid bool)`,
			`INSERT INTO orders VALUES (1, 'a@x', 'A', now() - interval '2 hours', true), (2, NULL, 'A', now() - interval '3 hours', true), (3, 'c@x', 'B', now() - interval '1 day', false)`,
			`CREATE TABLE "odd""; DROP TABLE orders; --" (id int)`,
			`CREATE TABLE empty (ts timestamp)`,
		},
		weird: `odd"; DROP TABLE orders; --`, schema: "public",
	},
	{
		kind: "mariadb", open: dbtest.SharedMariaDB, source: "mysql",
		setup: []string{
			"CREATE TABLE orders (id int PRIMARY KEY, email varchar(50), sku varchar(10), created_at datetime, paid bool)",
			"INSERT INTO orders VALUES (1, 'a@x', 'A', NOW() - INTERVAL 2 HOUR, true), (2, NULL, 'A', NOW() - INTERVAL 3 HOUR, true), (3, 'c@x', 'B', NOW() - INTERVAL 1 DAY, false)",
			"CREATE TABLE `odd``; DROP TABLE orders; --` (id int)",
			"CREATE TABLE empty (ts datetime)",
		},
		weird: "odd`; DROP TABLE orders; --",
	},
}

func i64(v int64) *int64 { return &v }

func rowCountCheck(table string, lo, hi *int64) *ingestv1.Check {
	return &ingestv1.Check{Kind: &ingestv1.Check_RowCount{RowCount: &ingestv1.RowCountCheck{Table: table, Min: lo, Max: hi}}}
}

func freshCheck(table, col, maxAge string) *ingestv1.Check {
	return &ingestv1.Check{Kind: &ingestv1.Check_Freshness{Freshness: &ingestv1.FreshnessCheck{Table: table, Column: col, MaxAge: maxAge}}}
}

func sqlCheck(q string) *ingestv1.Check {
	return &ingestv1.Check{Kind: &ingestv1.Check_Sql{Sql: &ingestv1.SQLCheck{Query: q}}}
}

func columnCheck(table, col string, notNull, unique bool) *ingestv1.Check {
	return &ingestv1.Check{Kind: &ingestv1.Check_Column{Column: &ingestv1.ColumnCheck{Table: table, Column: col, NotNull: notNull, Unique: unique}}}
}

func assertionSpec(source string, checks ...*ingestv1.Check) *jobsv1.JobSpec {
	return &jobsv1.JobSpec{Task: &jobsv1.Task{Kind: &jobsv1.Task_Assertion{Assertion: &ingestv1.AssertionTask{Source: source, Checks: checks}}}}
}

func sourceText(typ, hostPort, db, user string) string {
	return fmt.Sprintf("type: %s\nconfig:\n  host_port: %q\n  database: %s\n  username: %s\n  password: ${DB_PASSWORD}\n", typ, hostPort, db, user)
}

func runAssertion(t *testing.T, dir string, pub *publisher, spec *jobsv1.JobSpec) (tasks.Result, *output) {
	t.Helper()
	task := &ingest.Assertion{
		Resolver:  &secrets.Resolver{Providers: []secrets.Provider{secrets.Dir{Path: dir}}},
		Publisher: pub,
		Subjects:  queue.NewSubjects(""),
	}
	out := newOutput()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return task.Run(ctx, tasks.Input{Tenant: "acme", JobID: "job-1", Attempt: 2, Spec: spec}, out), out
}

// published decodes the one JobRecords the task sent.
func published(t *testing.T, pub *publisher) *ingestv1.JobRecords {
	t.Helper()
	pub.mu.Lock()
	defer pub.mu.Unlock()
	require.Len(t, pub.msgs, 1)
	m := pub.msgs[0]
	require.Equal(t, queue.NewSubjects("").JobRecords("acme", "job-1"), m.Subject)
	require.Equal(t, "job-1-2-checks-1", m.DedupeID)
	var recs ingestv1.JobRecords
	require.NoError(t, proto.Unmarshal(m.Data, &recs))
	require.EqualValues(t, 2, recs.GetEnvelope().GetAttempt())
	return &recs
}

func TestAssertionChecks(t *testing.T) {
	for _, k := range assertionDBs {
		t.Run(k.kind, func(t *testing.T) {
			db := k.open(t)
			for _, q := range k.setup {
				db.Exec(t, q)
			}
			dir := t.TempDir()
			writeSecret(t, dir, "DB_PASSWORD", db.Password)
			src := sourceText(k.source, db.HostPort(), db.Database, db.User)

			tests := []struct {
				name     string
				check    *ingestv1.Check
				outcome  ingestv1.CheckOutcome
				observed string
				message  string
			}{
				{"row count within", rowCountCheck("orders", i64(1), i64(3)), pass, "3", "orders has 3 rows, want [1, 3]"},
				{"row count above max", rowCountCheck("orders", nil, i64(2)), fail, "3", "want [-inf, 2]"},
				{"row count below min", rowCountCheck("orders", i64(10), nil), fail, "3", ""},
				{"row count qualified name", rowCountCheck(cmp.Or(k.schema, db.Database)+".orders", i64(3), i64(3)), pass, "3", ""},
				{"injection in a table name is a name", rowCountCheck(k.weird, i64(0), i64(0)), pass, "0", ""},
				{"missing table errors", rowCountCheck("nope", nil, nil), erro, "", "nope"},
				{"fresh", freshCheck("orders", "created_at", "150m"), pass, "", "is 2h0m"}, // a second may pass between the insert and the check
				{"stale", freshCheck("orders", "created_at", "1h"), fail, "", "max_age 1h0m0s"},
				{"no values", freshCheck("empty", "ts", "1h"), fail, "", "has no values"},
				{"sql true", sqlCheck("SELECT count(*) = 3 FROM orders"), pass, "true", ""},
				{"sql false", sqlCheck("SELECT count(*) = 4 FROM orders"), fail, "false", ""},
				{"sql no rows", sqlCheck("SELECT id FROM orders WHERE id < 0"), pass, "0 rows", ""},
				{"sql offending rows", sqlCheck("SELECT id, sku FROM orders WHERE email IS NULL"), fail, "1 rows", "first (2, A)"},
				{"sql many rows", sqlCheck("SELECT id FROM orders ORDER BY id"), fail, "2+ rows", ""},
				{"sql refused", sqlCheck("SELECT nothing FROM nowhere"), erro, "", "query:"},
				{"sql read only", sqlCheck("DELETE FROM orders"), erro, "", ""},
				{"not null holds", columnCheck("orders", "sku", true, false), pass, "0 nulls", ""},
				{"not null broken", columnCheck("orders", "email", true, false), fail, "1 nulls", "orders.email has 1 NULLs"},
				{"unique holds", columnCheck("orders", "id", false, true), pass, "0 duplicated values", ""},
				{"unique broken", columnCheck("orders", "sku", false, true), fail, "1 duplicated values", ""},
				{"both", columnCheck("orders", "email", true, true), fail, "1 nulls, 0 duplicated values", ""},
				{"injection in a column name", columnCheck("orders", "id) OR (1=1", true, false), erro, "", ""},
			}
			for _, tc := range tests {
				t.Run(tc.name, func(t *testing.T) {
					tc.check.Name = tc.name
					pub := &publisher{}
					res, out := runAssertion(t, dir, pub, assertionSpec(src, tc.check))
					recs := published(t, pub)
					require.Equal(t, 1, res.RecordBatches, "the terminal status names the checks' batch")
					require.Len(t, recs.GetChecks(), 1)
					got := recs.GetChecks()[0]
					require.Equal(t, tc.outcome, got.GetOutcome(), got.GetMessage())
					require.Equal(t, tc.name, got.GetName())
					if tc.observed != "" {
						require.Equal(t, tc.observed, got.GetObserved())
					}
					require.Contains(t, got.GetMessage(), tc.message)
					require.Contains(t, out.text(), "check "+tc.name+": "+map[ingestv1.CheckOutcome]string{pass: "PASS", fail: "FAIL", erro: "ERROR"}[tc.outcome])
					require.NotContains(t, out.text(), db.Password)
					switch tc.outcome {
					case pass:
						require.NoError(t, res.Err)
					case fail:
						require.ErrorIs(t, res.Err, ingest.ErrChecksFailed)
						require.True(t, tasks.IsPermanent(res.Err))
						require.Contains(t, res.Err.Error(), tc.name)
					case erro:
						require.ErrorIs(t, res.Err, ingest.ErrChecksErrored)
						require.False(t, tasks.IsPermanent(res.Err))
					}
				})
			}
			// Nothing of the injected names ran.
			require.Equal(t, [][]string{{"3"}}, db.QueryStrings(t, "SELECT count(*) FROM orders"))
		})
	}
}

func TestAssertionJob(t *testing.T) {
	db := dbtest.SharedPostgres(t)
	db.Exec(t, `CREATE TABLE t (id int)`)
	db.Exec(t, `INSERT INTO t VALUES (1), (2)`)
	dir := t.TempDir()
	writeSecret(t, dir, "DB_PASSWORD", db.Password)
	src := sourceText("postgres", db.HostPort(), db.Database, db.User)

	tests := []struct {
		name      string
		spec      *jobsv1.JobSpec
		published bool
		outcomes  []ingestv1.CheckOutcome
		errIs     error
		permanent bool
		reason    []string
	}{
		{
			name:      "all pass",
			spec:      assertionSpec(src, rowCountCheck("t", i64(2), nil), columnCheck("t", "id", true, true)),
			published: true, outcomes: []ingestv1.CheckOutcome{pass, pass},
		},
		{
			name:      "a failure beats an error and names both",
			spec:      assertionSpec(src, rowCountCheck("t", i64(5), nil), sqlCheck("SELECT broken"), rowCountCheck("t", nil, nil)),
			published: true, outcomes: []ingestv1.CheckOutcome{fail, erro, pass},
			errIs: ingest.ErrChecksFailed, permanent: true, reason: []string{"checks failed: #1 row_count", "errors: #2 sql"},
		},
		{
			name:      "unreachable database: every check errors, retryable",
			spec:      assertionSpec(sourceText("postgres", "127.0.0.1:1", db.Database, db.User), rowCountCheck("t", nil, nil)),
			published: true, outcomes: []ingestv1.CheckOutcome{erro},
			errIs: ingest.ErrUnreachable, reason: []string{"source unreachable"},
		},
		{
			name:  "wrong password is permanent",
			spec:  assertionSpec(fmt.Sprintf("type: postgres\nconfig: {host_port: %q, database: %s, username: %s, password: wrong}", db.HostPort(), db.Database, db.User), rowCountCheck("t", nil, nil)),
			errIs: ingest.ErrAuth, permanent: true, published: true, outcomes: []ingestv1.CheckOutcome{erro},
		},
		{
			name:  "bad max_age refused before connecting",
			spec:  assertionSpec(src, freshCheck("t", "id", "soon")),
			errIs: ingest.ErrInvalidCheck, permanent: true, reason: []string{`check "#1 freshness"`, "max_age"},
		},
		{
			name:  "no checks",
			spec:  assertionSpec(src),
			errIs: ingest.ErrInvalidCheck, permanent: true,
		},
		{
			name:  "unknown source key",
			spec:  assertionSpec(src+"  bogus: 1\n", rowCountCheck("t", nil, nil)),
			errIs: nil, permanent: true, reason: []string{"source.config.bogus"},
		},
		{
			name:  "unknown secret",
			spec:  assertionSpec(sourceText("postgres", db.HostPort(), db.Database, "${NOPE}"), rowCountCheck("t", nil, nil)),
			errIs: secrets.ErrUnknownSecret, permanent: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pub := &publisher{}
			res, out := runAssertion(t, dir, pub, tc.spec)
			if tc.published {
				recs := published(t, pub)
				var got []ingestv1.CheckOutcome
				for _, c := range recs.GetChecks() {
					got = append(got, c.GetOutcome())
				}
				require.Equal(t, tc.outcomes, got)
			} else {
				require.Empty(t, pub.msgs)
			}
			if tc.outcomes != nil && tc.errIs == nil && !tc.permanent {
				require.NoError(t, res.Err)
				require.Equal(t, "2", res.Outputs["passed"])
				return
			}
			require.Error(t, res.Err)
			if tc.errIs != nil {
				require.ErrorIs(t, res.Err, tc.errIs)
			}
			require.Equal(t, tc.permanent, tasks.IsPermanent(res.Err))
			for _, s := range tc.reason {
				require.Contains(t, res.Err.Error(), s)
			}
			require.NotContains(t, out.reason(res.Err), db.Password)
			require.NotContains(t, out.text(), db.Password)
		})
	}
}
