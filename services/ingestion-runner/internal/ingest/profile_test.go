package ingest_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/libs/ingest/ingesttest"
)

// profileDBs are the servers the profile tests run on, each with the
// measures table: 7 rows whose numbers give exact means, medians and
// standard deviations.
var profileDBs = []struct {
	kind   string
	db     func(testing.TB) *dbtest.DB
	schema string
	prefix string // what precedes the table in the dataset name
	extra  string
}{
	{"postgres", dbtest.SharedPostgres, `
CREATE SCHEMA shop;
CREATE TABLE shop.m (id int PRIMARY KEY, qty int, price numeric(6,2), label varchar(10), note text);
INSERT INTO shop.m VALUES (1, 8, 2.00, 'a', NULL), (2, 8, 2.00, 'b', NULL), (3, 9, NULL, 'a', REPEAT('x', 300)), (4, 11, 2.50, NULL, NULL),
	(5, 11, 3.00, 'c', NULL), (6, 13, NULL, 'c', NULL), (7, NULL, 3.00, 'a', NULL);
CREATE TABLE shop.n (x int);
`, "DB.shop.", "schema_pattern: {allow: [shop]}"},
	{"mysql", dbtest.SharedMariaDB, `
CREATE TABLE m (id int PRIMARY KEY, qty int, price decimal(6,2), label varchar(10), note text);
INSERT INTO m VALUES (1, 8, 2.00, 'a', NULL), (2, 8, 2.00, 'b', NULL), (3, 9, NULL, 'a', REPEAT('x', 300)), (4, 11, 2.50, NULL, NULL),
	(5, 11, 3.00, 'c', NULL), (6, 13, NULL, 'c', NULL), (7, NULL, 3.00, 'a', NULL);
CREATE TABLE n (x int);
`, "DB.", ""},
}

func profileRecipe(kind string, db *dbtest.DB, extra, profiling, outFile string) string {
	return fmt.Sprintf(`
source:
  type: %s
  config:
    host_port: %s
    database: %s
    username: %s
    password: ${DB_PASSWORD}
    %s
    profile_pattern: {deny: ['.*\.m\.id$']}
    profiling:
      enabled: true
      %s
sink: {type: file, config: {filename: %s}}
`, kind, db.HostPort(), db.Database, db.User, extra, strings.ReplaceAll(strings.TrimSpace(profiling), "\n", "\n      "), outFile)
}

// profiles returns the datasetProfile of each dataset by name (after
// DB.), the random database name replaced.
func profiles(t *testing.T, path, database string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for _, rec := range readLines(t, path) {
		aspects, _ := rec["aspects"].(map[string]any)
		if p, ok := aspects["datasetProfile"].(map[string]any); ok {
			delete(p, "timestampMillis")
			out[strings.ReplaceAll(rec["name"].(string), database, "DB")] = p
		}
	}
	return out
}

func field(path string, kv ...any) map[string]any {
	m := map[string]any{"fieldPath": path}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func samples(vals ...string) []any {
	out := make([]any, len(vals))
	for i, v := range vals {
		out[i] = v
	}
	return out
}

// TestProfileExactly: the column profile of a table the test fills,
// checked number by number, under each profiling switch.
func TestProfileExactly(t *testing.T) {
	// The full profile: id is left out by profile_pattern; numbers for
	// the numeric columns; sample values are the first rows' (3 here).
	full := map[string]any{"rowCount": 7.0, "columnCount": 5.0, "fieldProfiles": []any{
		field("qty", "nullCount", 1.0, "nullProportion", 1.0/7, "uniqueCount", 4.0, "uniqueProportion", 4.0/6,
			"min", "8", "max", "13", "mean", "10", "median", "10", "stdev", "2", "sampleValues", samples("8", "8", "9")),
		field("price", "nullCount", 2.0, "nullProportion", 2.0/7, "uniqueCount", 3.0, "uniqueProportion", 3.0/5,
			"min", "2.00", "max", "3.00", "mean", "2.5", "median", "2.5", "stdev", "0.5", "sampleValues", samples("2.00", "2.00")),
		field("label", "nullCount", 1.0, "nullProportion", 1.0/7, "uniqueCount", 3.0, "uniqueProportion", 3.0/6, "sampleValues", samples("a", "b", "a")),
		field("note", "nullCount", 6.0, "nullProportion", 6.0/7, "uniqueCount", 1.0, "uniqueProportion", 1.0, "sampleValues", samples(strings.Repeat("x", 200))),
	}}
	tests := []struct {
		name, profiling string
		want            map[string]any
		log             []string
	}{
		{name: "full", profiling: "field_sample_values_limit: 3", want: full},
		{name: "rows 2 to 5 of 7", profiling: "limit: 4\noffset: 1\ninclude_field_sample_values: false\nmax_number_of_fields_to_profile: 1",
			want: map[string]any{"rowCount": 7.0, "columnCount": 5.0, "fieldProfiles": []any{
				field("qty", "nullCount", 0.0, "nullProportion", 0.0, "uniqueCount", 3.0, "uniqueProportion", 3.0/4,
					"min", "8", "max", "11", "mean", "9.75", "median", "10", "stdev", "1.5"),
			}}},
		{name: "switches", profiling: "report_dropped_profiles: true\nturn_off_expensive_profiling_metrics: true\ninclude_field_null_count: false\n" +
			"include_field_mean_value: false\ninclude_field_median_value: false\ninclude_field_stddev_value: false\ninclude_field_max_value: false\n" +
			"include_field_distinct_count: false",
			want: map[string]any{"rowCount": 7.0, "columnCount": 5.0, "fieldProfiles": []any{
				field("qty", "min", "8"), field("price", "min", "2.00"), field("label"), field("note"),
			}},
			log: []string{"profiling: DB.%sm.id not profiled: profile_pattern"}},
		{name: "table level only", profiling: "profile_table_level_only: true\nprofile_table_row_limit: 100\nprofile_table_size_limit: 1",
			want: map[string]any{"rowCount": 7.0, "columnCount": 5.0}},
	}
	for _, tc := range profileDBs {
		t.Run(tc.kind, func(t *testing.T) {
			db := tc.db(t)
			ingesttest.Load(t, db, tc.schema)
			secretDir := t.TempDir()
			writeSecret(t, secretDir, "DB_PASSWORD", db.Password)
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					outFile := filepath.Join(t.TempDir(), "records.jsonl")
					res, out := run(t, newTask(secretDir, nil), profileRecipe(tc.kind, db, tc.extra, tt.profiling, outFile))
					require.NoError(t, res.Err, out.text())
					got := profiles(t, outFile, db.Database)
					require.Equal(t, tt.want, got[tc.prefix+"m"], out.text())
					if tt.name == "full" {
						require.Equal(t, map[string]any{"rowCount": 0.0, "columnCount": 1.0, "fieldProfiles": []any{
							field("x", "nullCount", 0.0, "uniqueCount", 0.0, "sampleValues", samples())}},
							got[tc.prefix+"n"], "an empty table has counts, no proportions")
					}
					for _, l := range tt.log {
						require.Contains(t, strings.ReplaceAll(out.text(), db.Database, "DB"), fmt.Sprintf(l, strings.TrimPrefix(tc.prefix, "DB.")))
					}
				})
			}
		})
	}
}

// TestProfileTimeBudget: a table another session holds locked stops its
// profile at the end of the time budget, the run goes on without the
// profiles left, and the job log says so.
func TestProfileTimeBudget(t *testing.T) {
	for _, tc := range profileDBs {
		t.Run(tc.kind, func(t *testing.T) {
			db := tc.db(t)
			ingesttest.Load(t, db, tc.schema)
			secretDir := t.TempDir()
			writeSecret(t, secretDir, "DB_PASSWORD", db.Password)

			ctx := context.Background()
			conn, err := db.Open(t).Conn(ctx)
			require.NoError(t, err)
			defer conn.Close()
			lock := []string{"BEGIN", "LOCK TABLE shop.m IN ACCESS EXCLUSIVE MODE"}
			if tc.kind == "mysql" {
				lock = []string{"LOCK TABLES m WRITE"}
			}
			for _, q := range lock {
				_, err := conn.ExecContext(ctx, q)
				require.NoError(t, err)
			}

			outFile := filepath.Join(t.TempDir(), "records.jsonl")
			started := time.Now()
			res, out := run(t, newTask(secretDir, nil), profileRecipe(tc.kind, db, tc.extra, "time_budget_sec: 2", outFile))
			require.NoError(t, res.Err, out.text())
			require.GreaterOrEqual(t, time.Since(started), 2*time.Second)
			require.Empty(t, profiles(t, outFile, db.Database), "no table was profiled")
			require.Contains(t, out.text(), "warning: profiling: time budget of 2s spent; 2 tables not profiled")
			require.Len(t, readLines(t, outFile), map[string]int{"postgres": 4, "mysql": 3}[tc.kind], "every table is still read")
		})
	}
}
