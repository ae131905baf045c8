//go:build bench

package bench

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/tests/harness"
)

// ingestColumns is the number of columns of every generated table.
const ingestColumns = 20

// TestIngestCatalogue ingests generated PostgreSQL catalogues of 1,000 and
// 5,000 tables of 20 columns (primary key, comment) with the file sink, so
// the figure is extraction (catalogue queries, records, JSON) and not the
// control plane, through a runner process; beside it, in the same run, a
// plain read of the same information_schema rows (tables, columns, key
// columns). A fresh runner per size gives its peak memory (VmHWM).
func TestIngestCatalogue(t *testing.T) {
	server := dbtest.Postgres(t) // private server, stopped when the test ends
	s := harness.StartStack(t, harness.StackOptions{
		Tenant:       benchTenant,
		SchedulerEnv: map[string]string{"OUTPOST_LOG_LEVEL": "warn"},
	})
	c := s.Client()
	secretsDir, sinkDir := t.TempDir(), t.TempDir()
	// The runner's policy: the database on loopback, its password, and
	// the file sink under sinkDir.
	policy := map[string]string{
		"OUTPOST_SECRETS_DIR":          secretsDir,
		"OUTPOST_POLICY_ALLOWED_HOSTS": "127.0.0.1,localhost,[::1]",
		"OUTPOST_POLICY_SECRETS":       "*=PG_PASSWORD",
		"OUTPOST_POLICY_FILE_SINK_DIR": sinkDir,
	}

	for _, n := range []int{1000, 5000} {
		db := server.NewDatabase(t)
		start := time.Now()
		generateCatalogue(t, db, n)
		t.Logf("%d tables generated in %s", n, time.Since(start).Round(time.Millisecond))
		plainRead(t, db) // warm the catalogue caches for both readers

		require.NoError(t, os.WriteFile(filepath.Join(secretsDir, "PG_PASSWORD"), []byte(db.Password), 0o600))
		// At info level: the harness waits for the runner's start line.
		runner := s.StartRunner(fmt.Sprintf("ingest-%d", n), policy)
		idle := vmHWM(t, runner.Pid())
		cpu0 := cpuSeconds(t, runner.Pid())
		out := filepath.Join(sinkDir, fmt.Sprintf("records-%d.jsonl", n))
		recipe := fmt.Sprintf("source:\n  type: postgres\n  config: {host_port: '%s', database: '%s', username: '%s', password: '${PG_PASSWORD}', schema_pattern: {allow: [bench]}}\nsink: {type: file, config: {filename: '%s'}}\n",
			db.HostPort(), db.Database, db.User, out)
		job := c.Submit(map[string]any{
			"pool":    s.Pool,
			"task":    map[string]any{"ingest": map[string]any{"recipe": recipe, "format": "yaml"}},
			"retry":   map[string]any{"max_attempts": 1},
			"timeout": "10m",
		})
		done := c.WaitTerminal(job.ID, 10*time.Minute)
		require.Equal(t, "SUCCEEDED", done.State, done.String())
		peak := vmHWM(t, runner.Pid())
		cpu := cpuSeconds(t, runner.Pid()) - cpu0
		records, err := strconv.Atoi(done.Outputs["records"])
		require.NoError(t, err)
		require.Equal(t, n+2, records, "database, schema, tables") // database and schema containers
		require.Equal(t, n+2, countLines(t, out))
		took := summaryDuration(t, c, job.ID)
		runner.Stop(30 * time.Second)

		plain := plainRead(t, db)
		prefix := fmt.Sprintf("ingest_pg_%dx%d_", n, ingestColumns)
		record(prefix+"seconds", took.Seconds())
		record(prefix+"records_per_s", float64(records)/took.Seconds())
		record(prefix+"plain_information_schema_read_seconds", plain.Seconds())
		record(prefix+"ratio_to_plain_read", took.Seconds()/plain.Seconds())
		record(prefix+"runner_cpu_seconds", cpu)
		record(prefix+"runner_peak_rss_mb", float64(peak)/1024)
		record(prefix+"runner_idle_rss_mb", float64(idle)/1024)
	}
	note("ingest_pg", "file sink through a runner process; seconds is the runner's own summary duration "+
		"(connect to last record written); plain read is information_schema tables, columns and key columns "+
		"of the same schema over one connection, after a warm-up read; peak RSS is VmHWM of a fresh runner per size")
}

// generateCatalogue creates schema bench with n tables of ingestColumns
// columns, a primary key and a comment each, 500 tables per transaction
// (a transaction takes a lock per table, index and TOAST table).
func generateCatalogue(t *testing.T, db *dbtest.DB, n int) {
	t.Helper()
	db.Exec(t, `CREATE SCHEMA bench`)
	for from := 1; from <= n; from += 500 {
		to := min(from+499, n)
		db.Exec(t, fmt.Sprintf(`DO $$
DECLARE cols text;
BEGIN
  SELECT string_agg(format('c%%s %%s', g, (ARRAY['bigint', 'varchar(64)', 'text', 'timestamptz', 'numeric(12,2)', 'boolean', 'integer'])[1 + g %% 7]), ', ')
    INTO cols FROM generate_series(2, %d) g;
  FOR i IN %d..%d LOOP
    EXECUTE format('CREATE TABLE bench.t%%s (c1 integer PRIMARY KEY, %%s)', lpad(i::text, 5, '0'), cols);
    EXECUTE format('COMMENT ON TABLE bench.t%%s IS %%L', lpad(i::text, 5, '0'), 'generated table ' || i);
  END LOOP;
END $$`, ingestColumns, from, to))
	}
}

// plainRead reads the information_schema rows of schema bench that the
// ingest turns into records, every value scanned, and returns the time.
func plainRead(t *testing.T, db *dbtest.DB) time.Duration {
	t.Helper()
	conn := db.Open(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	rows := 0
	for _, q := range []string{
		`SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'bench' ORDER BY 1`,
		`SELECT table_name, column_name, data_type, is_nullable, ordinal_position::text
			FROM information_schema.columns WHERE table_schema = 'bench' ORDER BY table_name, ordinal_position`,
		`SELECT tc.table_name, tc.constraint_name, tc.constraint_type, k.column_name
			FROM information_schema.table_constraints tc
			JOIN information_schema.key_column_usage k
			  ON k.constraint_schema = tc.constraint_schema AND k.constraint_name = tc.constraint_name
			WHERE tc.table_schema = 'bench' AND tc.constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')`,
	} {
		rows += scanAll(t, ctx, conn, q)
	}
	took := time.Since(start)
	require.Positive(t, rows)
	return took
}

func scanAll(t *testing.T, ctx context.Context, conn *sql.DB, q string) int {
	t.Helper()
	rs, err := conn.QueryContext(ctx, q)
	require.NoError(t, err)
	defer rs.Close()
	cols, err := rs.Columns()
	require.NoError(t, err)
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	n := 0
	for rs.Next() {
		require.NoError(t, rs.Scan(ptrs...))
		n++
	}
	require.NoError(t, rs.Err())
	return n
}

// vmHWM is the peak resident set size of a process, in KiB.
func vmHWM(t *testing.T, pid int) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			require.NoError(t, err)
			return kb
		}
	}
	t.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// cpuSeconds is the user and system CPU time a process used so far.
func cpuSeconds(t *testing.T, pid int) float64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	require.NoError(t, err)
	// Fields after the command name, which is in parentheses: utime and
	// stime are the 12th and 13th, in clock ticks (100 per second on Linux).
	_, rest, ok := strings.Cut(string(data), ") ")
	require.True(t, ok)
	f := strings.Fields(rest)
	utime, err := strconv.Atoi(f[11])
	require.NoError(t, err)
	stime, err := strconv.Atoi(f[12])
	require.NoError(t, err)
	return float64(utime+stime) / 100
}

var summaryRe = regexp.MustCompile(`summary: .*; duration ([0-9.]+[a-zµ]+)`)

// summaryDuration is the duration in the job's summary log line.
func summaryDuration(t *testing.T, c *harness.Client, id string) time.Duration {
	t.Helper()
	var m []string
	require.Eventually(t, func() bool {
		_, body, err := c.Try("GET", "/api/v1/jobs/"+id+"/logs", nil)
		if err != nil {
			return false
		}
		m = summaryRe.FindStringSubmatch(string(body))
		return m != nil
	}, 30*time.Second, 100*time.Millisecond, "no summary line in the log of %s", id)
	d, err := time.ParseDuration(m[1])
	require.NoError(t, err)
	return d
}

func countLines(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	n := 0
	for sc.Scan() {
		n++
	}
	require.NoError(t, sc.Err())
	return n
}
