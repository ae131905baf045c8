package ingest_test

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/dbtest"
	"github.com/outposthq/outpost/libs/ingest/recipe"

	"github.com/outposthq/outpost/services/ingestion-runner/internal/ingest"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/secrets"
	"github.com/outposthq/outpost/services/ingestion-runner/internal/tasks"
)

const secretValue = "s3cret-Value-42"

func sqlRecipe(kind, hostPort, database, user, password, sink string) string {
	return fmt.Sprintf("source:\n  type: %s\n  config: {host_port: '%s', database: '%s', username: '%s', password: '%s'}\nsink: %s\n",
		kind, hostPort, database, user, password, sink)
}

// TestFailures: each fault ends the job with a specific reason, permanent
// unless a retry could fix it, and no secret value in the reason or log.
func TestFailures(t *testing.T) {
	pg := dbtest.SharedPostgres(t)
	maria := dbtest.SharedMariaDB(t)
	console := "{type: console}"
	tests := []struct {
		name      string
		recipe    string
		wantErr   error
		want      string
		permanent bool
	}{
		{name: "wrong password postgres", recipe: sqlRecipe("postgres", pg.HostPort(), pg.Database, pg.User, "${DB_PASSWORD}", console),
			wantErr: ingest.ErrAuth, permanent: true,
			want: fmt.Sprintf(`authentication failed: postgres at %s as %q: wrong username or password`, pg.HostPort(), pg.User)},
		{name: "wrong password mariadb", recipe: sqlRecipe("mysql", maria.HostPort(), maria.Database, maria.User, "${DB_PASSWORD}", console),
			wantErr: ingest.ErrAuth, permanent: true,
			want: fmt.Sprintf(`authentication failed: mysql at %s as %q: wrong username or password`, maria.HostPort(), maria.User)},
		{name: "unreachable postgres", recipe: sqlRecipe("postgres", "127.0.0.1:1", "db", "u", "${DB_PASSWORD}", console),
			wantErr: ingest.ErrUnreachable, want: `source unreachable: postgres at 127.0.0.1:1 as "u"`},
		{name: "unreachable mariadb", recipe: sqlRecipe("mysql", "127.0.0.1:1", "db", "u", "${DB_PASSWORD}", console),
			wantErr: ingest.ErrUnreachable, want: `source unreachable: mysql at 127.0.0.1:1 as "u"`},
		{name: "unknown secret", recipe: sqlRecipe("postgres", pg.HostPort(), pg.Database, pg.User, "${NO_SUCH_SECRET}", console),
			wantErr: secrets.ErrUnknownSecret, permanent: true, want: `source.config.password: unknown secret "NO_SUCH_SECRET"`},
		{name: "unknown source type", recipe: "source: {type: oracle, config: {password: '${DB_PASSWORD}'}}",
			wantErr: recipe.ErrInvalid, permanent: true, want: `source.type: unknown source type "oracle" (supported: mysql, postgres)`},
		{name: "malformed YAML", recipe: "source:\n  type: postgres\n config: [",
			wantErr: recipe.ErrMalformed, permanent: true, want: "malformed recipe: YAML: yaml: line 2: did not find expected key"},
		{name: "unknown config key", recipe: sqlRecipe("postgres", pg.HostPort(), pg.Database, pg.User, "x", "{type: file, config: {filename: /tmp/x, mode: w}}"),
			wantErr: recipe.ErrInvalid, permanent: true, want: "sink.config.mode: unknown key, not supported by this runner (known: filename, legacy_nested_json)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeSecret(t, dir, "DB_PASSWORD", secretValue)
			res, out := run(t, newTask(dir, nil), tt.recipe)
			require.ErrorIs(t, res.Err, tt.wantErr)
			require.Equal(t, tt.permanent, tasks.IsPermanent(res.Err), res.Err)
			reason := out.reason(res.Err)
			require.Contains(t, reason, tt.want)
			for _, text := range []string{reason, out.text(), res.Outputs["records"]} {
				require.NotContains(t, text, secretValue)
			}
		})
	}
}

// TestSecretFileRotation: the second run reads the rewritten file.
func TestSecretFileRotation(t *testing.T) {
	db := dbtest.SharedPostgres(t)
	dir := t.TempDir()
	task := newTask(dir, nil)
	outFile := filepath.Join(t.TempDir(), "out.jsonl")
	text := sqlRecipe("postgres", db.HostPort(), db.Database, db.User, "${PG_PASSWORD}",
		fmt.Sprintf("{type: file, config: {filename: '%s'}}", outFile))

	writeSecret(t, dir, "PG_PASSWORD", "not-the-password")
	res, _ := run(t, task, text)
	require.ErrorIs(t, res.Err, ingest.ErrAuth)

	writeSecret(t, dir, "PG_PASSWORD", db.Password)
	res, out := run(t, task, text)
	require.NoError(t, res.Err, out.text())
	require.NotEmpty(t, readLines(t, outFile))
	require.NotContains(t, out.text(), db.Password)
}
