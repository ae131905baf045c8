package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/jackc/pgx/v5"
)

// debianPostgres is where Debian installs each PostgreSQL major version.
const debianPostgres = "/usr/lib/postgresql"

// postgresEngine runs PostgreSQL (13 or newer) from its bin folder.
type postgresEngine struct {
	bin string // holds initdb and postgres

	strategyOnce sync.Once
	strategy     string // CREATE DATABASE option: FILE_COPY, quicker on 15+
}

// findPostgres looks for initdb and postgres in OUTPOST_PG_BIN, then the
// newest /usr/lib/postgresql/<version>/bin, then PATH.
func findPostgres() (*postgresEngine, error) {
	if dir := os.Getenv(EnvPostgresBin); dir != "" {
		if !hasAll(dir, "initdb", "postgres") {
			return nil, fmt.Errorf("%s=%s does not hold initdb and postgres (unset it to use Debian's, or %s)", EnvPostgresBin, dir, installHint)
		}
		return &postgresEngine{bin: dir}, nil
	}
	dirs, _ := filepath.Glob(filepath.Join(debianPostgres, "*", "bin"))
	slices.SortFunc(dirs, func(a, b string) int { // newest version first
		return compareVersions(filepath.Base(filepath.Dir(b)), filepath.Base(filepath.Dir(a)))
	})
	for _, dir := range dirs {
		if hasAll(dir, "initdb", "postgres") {
			return &postgresEngine{bin: dir}, nil
		}
	}
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if initdb, err = filepath.EvalSymlinks(initdb); err == nil && hasAll(filepath.Dir(initdb), "postgres") {
			return &postgresEngine{bin: filepath.Dir(initdb)}, nil
		}
	}
	return nil, fmt.Errorf("PostgreSQL server (initdb, postgres) not found in %s/<version>/bin, %s or PATH: %s",
		debianPostgres, EnvPostgresBin, installHint)
}

// hasAll tells whether dir holds all the named executables.
func hasAll(dir string, names ...string) bool {
	for _, name := range names {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// compareVersions orders dotted version numbers ("9.6" < "15"); parts that
// are not numbers compare as text.
func compareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range min(len(pa), len(pb)) {
		na, errA := strconv.Atoi(pa[i])
		nb, errB := strconv.Atoi(pb[i])
		if errA != nil || errB != nil {
			if c := strings.Compare(pa[i], pb[i]); c != 0 {
				return c
			}
			continue
		}
		if na != nb {
			return na - nb
		}
	}
	return len(pa) - len(pb)
}

func (e *postgresEngine) kind() Kind                  { return KindPostgres }
func (e *postgresEngine) driver() string              { return "pgx" }
func (e *postgresEngine) adminUser() string           { return "postgres" }
func (e *postgresEngine) stopSignal() syscall.Signal  { return syscall.SIGINT }  // fast shutdown
func (e *postgresEngine) deathSignal() syscall.Signal { return syscall.SIGQUIT } // immediate shutdown

// initialize runs initdb: superuser postgres with the admin password,
// password (SCRAM) authentication everywhere, UTF-8 with the C locale, no
// fsync.
func (e *postgresEngine) initialize(s *server) error {
	pwfile := filepath.Join(s.dir, "pwfile")
	if err := writeOwned(pwfile, []byte(s.adminPassword+"\n"), s.cred); err != nil {
		return err
	}
	defer func() { _ = os.Remove(pwfile) }()
	return run([]string{
		filepath.Join(e.bin, "initdb"),
		"--pgdata=" + filepath.Join(s.dir, "data"),
		"--username=postgres",
		"--pwfile=" + pwfile,
		"--auth=scram-sha-256",
		"--encoding=UTF8",
		"--no-locale",
		"--no-sync",
	}, s.dir, s.cred, setupTimeout)
}

// command listens on 127.0.0.1 only, with the socket in the server's
// folder, durability traded for speed.
func (e *postgresEngine) command(s *server) []string {
	argv := []string{filepath.Join(e.bin, "postgres"), "-D", filepath.Join(s.dir, "data")}
	for _, c := range []string{
		"listen_addresses=127.0.0.1",
		"port=" + strconv.Itoa(s.port),
		"unix_socket_directories=" + s.dir,
		"fsync=off",
		"synchronous_commit=off",
		"full_page_writes=off",
		"shared_buffers=32MB",
		"max_connections=100",
		"logging_collector=off",
	} {
		argv = append(argv, "-c", c)
	}
	return argv
}

func (e *postgresEngine) dsn(port int, user, password, database string, _ bool) string {
	if database == "" {
		database = "postgres"
	}
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(user, password),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable&connect_timeout=10",
	}
	return u.String()
}

// createDatabase creates a login role and a database it owns, which no
// other role (but superusers) may connect to.
func (e *postgresEngine) createDatabase(ctx context.Context, admin *sql.DB, database, user, password string) error {
	db, role := pgx.Identifier{database}.Sanitize(), pgx.Identifier{user}.Sanitize()
	e.strategyOnce.Do(func() {
		// PostgreSQL 15 copies the template through the WAL by default;
		// copying the files is about twice as quick for a small template.
		var version int
		if admin.QueryRowContext(ctx, "SELECT current_setting('server_version_num')::int").Scan(&version) == nil && version >= 150000 {
			e.strategy = " STRATEGY FILE_COPY"
		}
	})
	// One statement per Exec: CREATE DATABASE cannot run in the implicit
	// transaction of a multi-statement query.
	for _, stmt := range []string{
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD %s", role, pgLiteral(password)),
		fmt.Sprintf("CREATE DATABASE %s OWNER %s%s", db, role, e.strategy),
		fmt.Sprintf("REVOKE ALL ON DATABASE %s FROM PUBLIC", db),
	} {
		if _, err := admin.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", strings.SplitN(stmt, " PASSWORD ", 2)[0], err)
		}
	}
	return nil
}

// dropDatabase drops the database, ending its sessions, and its role.
func (e *postgresEngine) dropDatabase(ctx context.Context, admin *sql.DB, database, user string) error {
	var errs []error
	for _, stmt := range []string{
		fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{database}.Sanitize()),
		fmt.Sprintf("DROP ROLE IF EXISTS %s", pgx.Identifier{user}.Sanitize()),
	} {
		if _, err := admin.ExecContext(ctx, stmt); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", stmt, err))
		}
	}
	return errors.Join(errs...)
}

// pgLiteral quotes s as a PostgreSQL string literal
// (standard_conforming_strings is on).
func pgLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
