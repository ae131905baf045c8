// Package dbtest is the project's shared database harness: real PostgreSQL
// and MariaDB servers from Debian, each a private child process with its
// data in a temporary folder, listening on 127.0.0.1 on a free port, with
// its unix socket in that folder.
//
// A server takes a second or two to start, so a test package normally
// shares one per kind and gives each test a fresh database and user:
//
//	func TestMain(m *testing.M) { dbtest.Main(m) } // stops the shared servers
//
//	func TestExtract(t *testing.T) {
//		db := dbtest.SharedPostgres(t) // new database + user, dropped when t ends
//		db.Exec(t, `CREATE TABLE orders (id int PRIMARY KEY)`)
//		conn, err := sql.Open(db.DriverName(), db.DSN())
//		...
//	}
//
// Postgres and MariaDB start a private server for one test instead, stopped
// when it ends; DB.NewDatabase adds more databases to the server of a DB.
//
// The binaries come from Debian (scripts/install-databases.sh installs
// them): the newest /usr/lib/postgresql/<version>/bin, and mariadbd with
// mariadb-install-db, or the folders named by OUTPOST_PG_BIN and
// OUTPOST_MARIADB_BIN. When they are missing a test is skipped with the
// command to run, except in CI (CI=true), where it fails.
//
// PostgreSQL refuses to run as root, so when the tests run as root (as CI
// does) both servers run as an unprivileged user, nobody unless
// OUTPOST_DBTEST_USER names another, and their folder belongs to that user.
// The servers get a parent-death signal: they stop with the test process
// even when it is killed, and a later run removes the folders of such runs.
package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"

	// The drivers behind DriverName: "pgx" and "mysql".
	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// Kind names a database server.
type Kind string

const (
	// KindPostgres is PostgreSQL.
	KindPostgres Kind = "postgres"
	// KindMariaDB is MariaDB (MySQL-compatible).
	KindMariaDB Kind = "mariadb"
)

// Environment variables the harness reads.
const (
	// EnvPostgresBin names a folder holding initdb and postgres, instead of
	// the newest /usr/lib/postgresql/<version>/bin.
	EnvPostgresBin = "OUTPOST_PG_BIN"
	// EnvMariaDBBin names a folder holding mariadbd (or mysqld) and
	// mariadb-install-db (or mysql_install_db), looked at before the
	// system folders.
	EnvMariaDBBin = "OUTPOST_MARIADB_BIN"
	// EnvUser names the unprivileged user the servers run as when the
	// tests run as root; nobody when unset.
	EnvUser = "OUTPOST_DBTEST_USER"
)

// installHint is what to run when a server's binaries are missing.
const installHint = "run scripts/install-databases.sh from the repository root as root (installs postgresql and mariadb-server from Debian)"

// queryTimeout bounds each statement the harness runs for a test.
const queryTimeout = 2 * time.Minute

// DB is one database on a running server, with a user that owns it and
// may do anything in it but cannot reach the server's other databases.
type DB struct {
	// Kind is the server's kind.
	Kind Kind
	// Host is the address the server listens on: always 127.0.0.1.
	Host string
	// Port is the server's TCP port.
	Port int
	// User and Password are the credentials of the database's user.
	User     string
	Password string
	// Database is the database's name.
	Database string

	srv  *server
	mu   sync.Mutex
	pool *sql.DB // for Exec and QueryStrings, multi-statement on MariaDB
}

// Postgres starts a private PostgreSQL server for the test, returns a new
// database on it, and stops the server when the test ends. Prefer
// SharedPostgres unless the test needs a server of its own.
func Postgres(t testing.TB) *DB {
	t.Helper()
	return private(t, KindPostgres)
}

// MariaDB starts a private MariaDB server for the test, returns a new
// database on it, and stops the server when the test ends. Prefer
// SharedMariaDB unless the test needs a server of its own.
func MariaDB(t testing.TB) *DB {
	t.Helper()
	return private(t, KindMariaDB)
}

// SharedPostgres returns a new database, dropped when the test ends, on the
// test binary's PostgreSQL server, started on first use. Safe for parallel
// tests. Call Main from TestMain to stop the server at the end.
func SharedPostgres(t testing.TB) *DB {
	t.Helper()
	return sharedServer(t, KindPostgres).newDatabase(t)
}

// SharedMariaDB returns a new database, dropped when the test ends, on the
// test binary's MariaDB server, started on first use. Safe for parallel
// tests. Call Main from TestMain to stop the server at the end.
func SharedMariaDB(t testing.TB) *DB {
	t.Helper()
	return sharedServer(t, KindMariaDB).newDatabase(t)
}

// Main runs the tests and then stops the shared servers and removes their
// folders. Call it from TestMain:
//
//	func TestMain(m *testing.M) { dbtest.Main(m) }
//
// Without it the shared servers still stop when the test binary exits
// (parent-death signal) and a later run removes their folders.
func Main(m *testing.M) {
	defer StopShared()
	m.Run()
}

// StopShared stops the shared servers that are running. A later
// SharedPostgres or SharedMariaDB starts a new one.
func StopShared() {
	for _, s := range []*shared{&sharedPostgres, &sharedMariaDB} {
		s.mu.Lock()
		if s.srv != nil {
			s.srv.stop()
		}
		s.srv, s.failed = nil, ""
		s.mu.Unlock()
	}
}

// shared is the lazily started server of one kind.
type shared struct {
	mu     sync.Mutex
	srv    *server
	failed string // the test in which the start failed
}

var sharedPostgres, sharedMariaDB shared

func sharedServer(t testing.TB, kind Kind) *server {
	t.Helper()
	s := &sharedPostgres
	if kind == KindMariaDB {
		s = &sharedMariaDB
	}
	eng, err := newEngine(kind)
	if err != nil {
		unavailable(t, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return s.srv
	}
	if s.failed != "" {
		t.Fatalf("dbtest: the shared %s server failed to start in %s; see its log there", kind, s.failed)
	}
	// start may end t with FailNow: stop what it started and remember why.
	var pending *server
	ok := false
	defer func() {
		if !ok {
			s.failed = t.Name()
			if pending != nil {
				pending.stop()
			}
		}
	}()
	srv := start(t, eng, func(p *server) { pending = p })
	s.srv, ok = srv, true
	return srv
}

func private(t testing.TB, kind Kind) *DB {
	t.Helper()
	eng, err := newEngine(kind)
	if err != nil {
		unavailable(t, err)
	}
	srv := start(t, eng, func(p *server) { t.Cleanup(p.stop) })
	return srv.newDatabase(t)
}

// unavailable skips t because a server's binaries are missing, or fails it
// in CI (CI=true), where they must be installed.
func unavailable(t testing.TB, err error) {
	t.Helper()
	testenv.Require(t, "dbtest: database server", err)
}

// HostPort is "127.0.0.1:<port>", the form recipes' host_port takes.
func (d *DB) HostPort() string { return net.JoinHostPort(d.Host, strconv.Itoa(d.Port)) }

// DriverName is the database/sql driver for DSN: "pgx" or "mysql".
func (d *DB) DriverName() string { return d.srv.eng.driver() }

// DSN is the data source name of the database for DriverName, with the
// database's user and password.
func (d *DB) DSN() string { return d.DSNFor(d.User, d.Password) }

// DSNFor is DSN with other credentials, for example a wrong password.
func (d *DB) DSNFor(user, password string) string {
	return d.srv.eng.dsn(d.Port, user, password, d.Database, false)
}

// Open opens a connection pool to the database as its user and closes it
// when the test ends.
func (d *DB) Open(t testing.TB) *sql.DB {
	t.Helper()
	conn, err := sql.Open(d.DriverName(), d.DSN())
	require.NoError(t, err, "dbtest: open %s database %s", d.Kind, d.Database)
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Exec runs SQL in the database as its user and fails the test on an
// error. Without args, query may hold several statements separated by
// semicolons; with args it is one statement with placeholders ($1 on
// PostgreSQL, ? on MariaDB).
func (d *DB) Exec(t testing.TB, query string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	_, err := d.conn(t).ExecContext(ctx, query, args...)
	require.NoError(t, err, "dbtest: exec in %s database %s:\n%s", d.Kind, d.Database, query)
}

// AdminExec is Exec as the server's superuser (postgres, or root on
// MariaDB), connected to this database: for what the database's user may
// not do, like creating other users.
func (d *DB) AdminExec(t testing.TB, query string, args ...any) {
	t.Helper()
	conn, err := sql.Open(d.DriverName(), d.srv.eng.dsn(d.Port, d.srv.eng.adminUser(), d.srv.adminPassword, d.Database, true))
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	_, err = conn.ExecContext(ctx, query, args...)
	require.NoError(t, err, "dbtest: exec as %s in %s database %s:\n%s", d.srv.eng.adminUser(), d.Kind, d.Database, query)
}

// QueryStrings runs a query in the database as its user and returns every
// row, each value as text (NULL as "NULL"), failing the test on an error.
// Meant for assertions on small results.
func (d *DB) QueryStrings(t testing.TB, query string, args ...any) [][]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	rows, err := d.conn(t).QueryContext(ctx, query, args...)
	require.NoError(t, err, "dbtest: query %s database %s:\n%s", d.Kind, d.Database, query)
	defer func() { _ = rows.Close() }()
	cols, err := rows.Columns()
	require.NoError(t, err)
	out := [][]string{}
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...), "dbtest: scan a row of:\n%s", query)
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = "NULL"
			if v.Valid {
				row[i] = v.String
			}
		}
		out = append(out, row)
	}
	require.NoError(t, rows.Err(), "dbtest: query %s database %s:\n%s", d.Kind, d.Database, query)
	return out
}

// NewDatabase creates another database, with its own user, on the same
// server, and drops both when the test ends. Databases are isolated: a
// database's user cannot connect to another one.
func (d *DB) NewDatabase(t testing.TB) *DB {
	t.Helper()
	return d.srv.newDatabase(t)
}

// conn is the pool behind Exec and QueryStrings, opened on first use and
// closed when the database is dropped.
func (d *DB) conn(t testing.TB) *sql.DB {
	t.Helper()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pool == nil {
		pool, err := sql.Open(d.DriverName(), d.srv.eng.dsn(d.Port, d.User, d.Password, d.Database, true))
		require.NoError(t, err, "dbtest: open %s database %s", d.Kind, d.Database)
		d.pool = pool
	}
	return d.pool
}

func (d *DB) closePool() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.pool != nil {
		_ = d.pool.Close()
		d.pool = nil
	}
}

// dbSeq numbers the databases this process creates.
var dbSeq atomic.Uint64

var notWord = regexp.MustCompile(`[^a-z0-9]+`)

// names returns a database and a user name for t: short, unique in the
// process, lower case letters, digits and underscores, recognisably t's.
func names(t testing.TB) (database, user string) {
	base := strings.Trim(notWord.ReplaceAllString(strings.ToLower(t.Name()), "_"), "_")
	if len(base) > 20 {
		base = strings.TrimRight(base[:20], "_")
	}
	n := dbSeq.Add(1)
	return fmt.Sprintf("t%d_%s", n, base), fmt.Sprintf("u%d_%s", n, base)
}

// newDatabase creates a database and its user, and drops them when t ends.
func (s *server) newDatabase(t testing.TB) *DB {
	t.Helper()
	database, user := names(t)
	password, err := randomHex(12)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
	defer cancel()
	if err := s.eng.createDatabase(ctx, s.admin, database, user, password); err != nil {
		t.Fatalf("dbtest: create %s database %s: %v\nserver log:\n%s", s.eng.kind(), database, err, s.proc.Logs())
	}
	d := &DB{
		Kind:     s.eng.kind(),
		Host:     "127.0.0.1",
		Port:     s.port,
		User:     user,
		Password: password,
		Database: database,
		srv:      s,
	}
	t.Cleanup(func() {
		d.closePool()
		if s.stopped() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), queryTimeout)
		defer cancel()
		if err := s.eng.dropDatabase(ctx, s.admin, database, user); err != nil && !errors.Is(err, context.Canceled) {
			t.Logf("dbtest: drop %s database %s: %v", d.Kind, database, err)
		}
	})
	return d
}
