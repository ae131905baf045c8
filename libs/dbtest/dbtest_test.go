package dbtest_test

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/dbtest"
)

func TestMain(m *testing.M) { dbtest.Main(m) }

// kinds runs each test against both servers.
var kinds = []struct {
	kind    dbtest.Kind
	shared  func(testing.TB) *dbtest.DB
	private func(testing.TB) *dbtest.DB
}{
	{dbtest.KindPostgres, dbtest.SharedPostgres, dbtest.Postgres},
	{dbtest.KindMariaDB, dbtest.SharedMariaDB, dbtest.MariaDB},
}

func ping(t *testing.T, driver, dsn string) error {
	t.Helper()
	conn, err := sql.Open(driver, dsn)
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return conn.PingContext(ctx)
}

// serverProcess is the pid of the server process behind db (a backend of
// it on PostgreSQL) and the server's data folder.
func serverProcess(t *testing.T, db *dbtest.DB) (pid int, dataDir string) {
	t.Helper()
	if db.Kind == dbtest.KindPostgres {
		pid, err := strconv.Atoi(db.QueryStrings(t, `SELECT pg_backend_pid()`)[0][0])
		require.NoError(t, err)
		dataDir, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid)) // a backend runs in the data folder
		require.NoError(t, err)
		return pid, dataDir
	}
	row := db.QueryStrings(t, `SELECT @@pid_file, @@datadir`)[0]
	raw, err := os.ReadFile(row[0])
	require.NoError(t, err)
	pid, err = strconv.Atoi(strings.TrimSpace(string(raw)))
	require.NoError(t, err)
	return pid, row[1]
}

// processUID is the real uid of a running process.
func processUID(t *testing.T, pid int) string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return ""
}

// TestPrivateServer starts a server of each kind for one subtest, checks
// where and as whom it runs, and that it is gone with its folder after.
func TestPrivateServer(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			var port, pid int
			var dataDir string
			t.Run("running", func(t *testing.T) {
				db := k.private(t)
				require.Equal(t, "127.0.0.1", db.Host)
				require.Equal(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(db.Port)), db.HostPort())
				require.NoError(t, ping(t, db.DriverName(), db.DSN()))
				port = db.Port
				pid, dataDir = serverProcess(t, db)
				if db.Kind == dbtest.KindPostgres {
					require.Equal(t, [][]string{{"127.0.0.1"}}, db.QueryStrings(t, `SHOW listen_addresses`))
				} else {
					require.Equal(t, [][]string{{"127.0.0.1"}}, db.QueryStrings(t, `SELECT @@bind_address`))
				}
				if os.Geteuid() == 0 {
					require.NotEqual(t, "0", processUID(t, pid), "the server must not run as root")
				}
				// Only loopback: the port is not open on another address.
				if addrs, err := net.InterfaceAddrs(); err == nil {
					for _, a := range addrs {
						ip, _, _ := net.ParseCIDR(a.String())
						if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
							continue
						}
						c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)), time.Second)
						if err == nil {
							_ = c.Close()
						}
						require.Error(t, err, "%s answers on %s", db.Kind, ip)
					}
				}
			})
			if t.Failed() || port == 0 {
				return
			}
			c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
			if err == nil {
				_ = c.Close()
			}
			require.Error(t, err, "the server still listens after the test")
			_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
			require.ErrorIs(t, err, os.ErrNotExist, "the server process is still there after the test")
			_, err = os.Stat(filepath.Dir(filepath.Clean(dataDir)))
			require.ErrorIs(t, err, os.ErrNotExist, "the server folder is still there after the test")
		})
	}
}

// TestSchemaRoundTrip creates a schema with tables, a view, primary and
// foreign keys and comments, and reads all of it back from the catalog.
func TestSchemaRoundTrip(t *testing.T) {
	t.Run("postgres", func(t *testing.T) {
		db := dbtest.SharedPostgres(t)
		db.Exec(t, `
CREATE SCHEMA shop;
CREATE TABLE shop.customers (
	id    integer PRIMARY KEY,
	email text NOT NULL,
	name  varchar(100)
);
CREATE TABLE shop.orders (
	id          bigint PRIMARY KEY,
	customer_id integer NOT NULL,
	total       numeric(10,2),
	placed_at   timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES shop.customers (id)
);
CREATE VIEW shop.big_orders AS SELECT id, customer_id, total FROM shop.orders WHERE total > 100;
COMMENT ON TABLE shop.orders IS 'One row per order';
COMMENT ON COLUMN shop.orders.total IS 'Amount in EUR';
COMMENT ON VIEW shop.big_orders IS 'Orders over 100';
INSERT INTO shop.customers VALUES (1, 'a@example.com', NULL);
INSERT INTO shop.orders (id, customer_id, total) VALUES (10, 1, 250.00), (11, 1, 5.50);
`)
		require.Equal(t, [][]string{
			{"big_orders", "VIEW"},
			{"customers", "BASE TABLE"},
			{"orders", "BASE TABLE"},
		}, db.QueryStrings(t, `SELECT table_name, table_type FROM information_schema.tables
			WHERE table_schema = 'shop' ORDER BY table_name`))
		require.Equal(t, [][]string{
			{"id", "bigint", "NO", "1"},
			{"customer_id", "integer", "NO", "2"},
			{"total", "numeric", "YES", "3"},
			{"placed_at", "timestamp with time zone", "NO", "4"},
		}, db.QueryStrings(t, `SELECT column_name, data_type, is_nullable, ordinal_position
			FROM information_schema.columns WHERE table_schema = 'shop' AND table_name = 'orders'
			ORDER BY ordinal_position`))
		require.Equal(t, [][]string{
			{"id", "bigint"}, {"customer_id", "integer"}, {"total", "numeric"},
		}, db.QueryStrings(t, `SELECT column_name, data_type FROM information_schema.columns
			WHERE table_schema = 'shop' AND table_name = 'big_orders' ORDER BY ordinal_position`))
		require.Equal(t, [][]string{
			{"customers", "PRIMARY KEY", "customers_pkey", "id", "", ""},
			{"orders", "FOREIGN KEY", "orders_customer_fk", "customer_id", "customers", "id"},
			{"orders", "PRIMARY KEY", "orders_pkey", "id", "", ""},
		}, db.QueryStrings(t, `
			SELECT tc.table_name, tc.constraint_type, tc.constraint_name, kcu.column_name,
				COALESCE(ccu.table_name, ''), COALESCE(ccu.column_name, '')
			FROM information_schema.table_constraints tc
			JOIN information_schema.key_column_usage kcu
				ON kcu.constraint_schema = tc.constraint_schema AND kcu.constraint_name = tc.constraint_name
			LEFT JOIN information_schema.constraint_column_usage ccu
				ON tc.constraint_type = 'FOREIGN KEY'
				AND ccu.constraint_schema = tc.constraint_schema AND ccu.constraint_name = tc.constraint_name
			WHERE tc.table_schema = 'shop' AND tc.constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')
			ORDER BY 1, 2, 4`))
		require.Equal(t, [][]string{{"One row per order", "Amount in EUR", "Orders over 100", "NULL"}},
			db.QueryStrings(t, `SELECT obj_description('shop.orders'::regclass, 'pg_class'),
				col_description('shop.orders'::regclass, 3),
				obj_description('shop.big_orders'::regclass, 'pg_class'),
				col_description('shop.orders'::regclass, 1)`))
		require.Equal(t, [][]string{{"10", "250.00"}},
			db.QueryStrings(t, `SELECT id, total FROM shop.big_orders ORDER BY id`))
	})

	t.Run("mariadb", func(t *testing.T) {
		db := dbtest.SharedMariaDB(t)
		db.Exec(t, `
CREATE TABLE customers (
	id    INT PRIMARY KEY,
	email VARCHAR(200) NOT NULL,
	name  VARCHAR(100)
) ENGINE=InnoDB COMMENT='People who order';
CREATE TABLE orders (
	id          BIGINT PRIMARY KEY,
	customer_id INT NOT NULL,
	total       DECIMAL(10,2) COMMENT 'Amount in EUR',
	placed_at   DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
	CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE=InnoDB COMMENT='One row per order';
CREATE VIEW big_orders AS SELECT id, customer_id, total FROM orders WHERE total > 100;
INSERT INTO customers VALUES (1, 'a@example.com', NULL);
INSERT INTO orders (id, customer_id, total) VALUES (10, 1, 250.00), (11, 1, 5.50);
`)
		require.Equal(t, [][]string{
			{"big_orders", "VIEW", "VIEW"},
			{"customers", "BASE TABLE", "People who order"},
			{"orders", "BASE TABLE", "One row per order"},
		}, db.QueryStrings(t, `SELECT TABLE_NAME, TABLE_TYPE, TABLE_COMMENT FROM information_schema.TABLES
			WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME`, db.Database))
		require.Equal(t, [][]string{
			{"id", "bigint", "NO", "1", ""},
			{"customer_id", "int", "NO", "2", ""},
			{"total", "decimal", "YES", "3", "Amount in EUR"},
			{"placed_at", "datetime", "NO", "4", ""},
		}, db.QueryStrings(t, `SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE, ORDINAL_POSITION, COLUMN_COMMENT
			FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'orders'
			ORDER BY ORDINAL_POSITION`, db.Database))
		require.Equal(t, [][]string{
			{"id", "bigint"}, {"customer_id", "int"}, {"total", "decimal"},
		}, db.QueryStrings(t, `SELECT COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS
			WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'big_orders' ORDER BY ORDINAL_POSITION`, db.Database))
		require.Equal(t, [][]string{
			{"customers", "PRIMARY KEY", "PRIMARY", "id", "", ""},
			{"orders", "FOREIGN KEY", "orders_customer_fk", "customer_id", "customers", "id"},
			{"orders", "PRIMARY KEY", "PRIMARY", "id", "", ""},
		}, db.QueryStrings(t, `
			SELECT tc.TABLE_NAME, tc.CONSTRAINT_TYPE, tc.CONSTRAINT_NAME, kcu.COLUMN_NAME,
				COALESCE(kcu.REFERENCED_TABLE_NAME, ''), COALESCE(kcu.REFERENCED_COLUMN_NAME, '')
			FROM information_schema.TABLE_CONSTRAINTS tc
			JOIN information_schema.KEY_COLUMN_USAGE kcu
				ON kcu.CONSTRAINT_SCHEMA = tc.CONSTRAINT_SCHEMA AND kcu.TABLE_NAME = tc.TABLE_NAME
				AND kcu.CONSTRAINT_NAME = tc.CONSTRAINT_NAME
			WHERE tc.TABLE_SCHEMA = ? AND tc.CONSTRAINT_TYPE IN ('PRIMARY KEY', 'FOREIGN KEY')
			ORDER BY 1, 2, 4`, db.Database))
		require.Equal(t, [][]string{{"10", "250.00"}},
			db.QueryStrings(t, `SELECT id, total FROM big_orders ORDER BY id`))
	})
}

// TestWrongPasswordRefused: the right password gets in, a wrong one is
// refused with the server's authentication error.
func TestWrongPasswordRefused(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			db := k.shared(t)
			require.NoError(t, ping(t, db.DriverName(), db.DSN()))
			err := ping(t, db.DriverName(), db.DSNFor(db.User, db.Password+"-wrong"))
			require.Error(t, err)
			if db.Kind == dbtest.KindPostgres {
				var pgErr *pgconn.PgError
				require.ErrorAs(t, err, &pgErr)
				require.Equal(t, "28P01", pgErr.Code, "invalid_password: %v", err) // invalid_password
				require.Contains(t, err.Error(), "password authentication failed for user")
			} else {
				var myErr *mysql.MySQLError
				require.ErrorAs(t, err, &myErr)
				require.EqualValues(t, 1045, myErr.Number, "ER_ACCESS_DENIED_ERROR: %v", err)
				require.Contains(t, err.Error(), "Access denied for user")
			}
			require.Error(t, ping(t, db.DriverName(), db.DSNFor(db.User, "")), "an empty password must be refused")
		})
	}
}

// TestDatabasesIsolated: two databases of one server do not see each
// other's tables, and neither user can get into the other database.
func TestDatabasesIsolated(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			a := k.shared(t)
			b := a.NewDatabase(t)
			require.Equal(t, a.Port, b.Port, "one server")
			require.NotEqual(t, a.Database, b.Database)
			require.NotEqual(t, a.User, b.User)

			a.Exec(t, `CREATE TABLE secrets (v varchar(20)); INSERT INTO secrets VALUES ('in a')`)
			b.Exec(t, `CREATE TABLE secrets (v varchar(20)); INSERT INTO secrets VALUES ('in b')`)
			require.Equal(t, [][]string{{"in a"}}, a.QueryStrings(t, `SELECT v FROM secrets`))
			require.Equal(t, [][]string{{"in b"}}, b.QueryStrings(t, `SELECT v FROM secrets`))

			// Neither user may connect to the other's database.
			for _, c := range []struct{ db, other *dbtest.DB }{{a, b}, {b, a}} {
				err := ping(t, c.db.DriverName(), c.other.DSNFor(c.db.User, c.db.Password))
				require.Error(t, err, "%s reached database %s", c.db.User, c.other.Database)
				if db := c.db; db.Kind == dbtest.KindPostgres {
					var pgErr *pgconn.PgError
					require.ErrorAs(t, err, &pgErr)
					require.Equal(t, "42501", pgErr.Code, "insufficient_privilege: %v", err)
				} else {
					var myErr *mysql.MySQLError
					require.ErrorAs(t, err, &myErr)
					require.EqualValues(t, 1044, myErr.Number, "ER_DBACCESS_DENIED_ERROR: %v", err)
				}
			}
			if a.Kind == dbtest.KindMariaDB {
				// Nor read across databases on its own connection.
				_, err := b.Open(t).Exec(fmt.Sprintf("SELECT v FROM `%s`.secrets", a.Database))
				require.Error(t, err)
				require.Empty(t, b.QueryStrings(t,
					`SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?`, a.Database))
			}
		})
	}
}

// TestSharedParallel: parallel tests each get their own database on the
// one shared server.
func TestSharedParallel(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			var mu sync.Mutex
			ports, dbs := map[int]bool{}, map[string]bool{}
			t.Cleanup(func() {
				require.Len(t, ports, 1, "one server")
				require.Len(t, dbs, 4, "one database each")
			})
			for i := range 4 {
				t.Run(strconv.Itoa(i), func(t *testing.T) {
					t.Parallel()
					db := k.shared(t)
					db.Exec(t, `CREATE TABLE items (n int); INSERT INTO items VALUES (`+strconv.Itoa(i)+`)`)
					require.Equal(t, [][]string{{strconv.Itoa(i)}}, db.QueryStrings(t, `SELECT n FROM items`))
					mu.Lock()
					defer mu.Unlock()
					ports[db.Port], dbs[db.Database] = true, true
				})
			}
		})
	}
}

// TestAdminExec: the superuser can do what the database's user may not.
func TestAdminExec(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			db := k.shared(t)
			db.Exec(t, `CREATE TABLE t (n int)`)
			if db.Kind == dbtest.KindPostgres {
				db.AdminExec(t, `CREATE ROLE dbtest_reader_`+db.Database+` LOGIN PASSWORD 'reader-pw'`)
				t.Cleanup(func() { db.AdminExec(t, `DROP ROLE dbtest_reader_`+db.Database) })
				return
			}
			db.AdminExec(t, `CREATE USER 'r_`+db.Database+`'@'%' IDENTIFIED BY 'reader-pw'; DROP USER 'r_`+db.Database+`'@'%'`)
		})
	}
}

// fakeTB records how a harness call ended a test instead of ending it.
type fakeTB struct {
	testing.TB
	mu      sync.Mutex
	failed  bool
	skipped bool
	msgs    []string
}

func (f *fakeTB) Helper()             {}
func (f *fakeTB) Logf(string, ...any) {}
func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failed = true
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
}
func (f *fakeTB) FailNow() {
	f.mu.Lock()
	f.failed = true
	f.mu.Unlock()
	runtime.Goexit()
}
func (f *fakeTB) Fatalf(format string, args ...any) { f.Errorf(format, args...); runtime.Goexit() }
func (f *fakeTB) Skipf(format string, args ...any) {
	f.mu.Lock()
	f.skipped = true
	f.msgs = append(f.msgs, fmt.Sprintf(format, args...))
	f.mu.Unlock()
	runtime.Goexit()
}

// runFake runs fn with a fakeTB in its own goroutine (FailNow and SkipNow
// end it) and returns the record.
func runFake(t *testing.T, fn func(testing.TB)) *fakeTB {
	f := &fakeTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f
}

// TestMissingBinaries: without the server binaries a test is skipped with
// the install command, or fails in CI.
func TestMissingBinaries(t *testing.T) {
	t.Setenv(dbtest.EnvPostgresBin, t.TempDir())
	for _, start := range []func(testing.TB) *dbtest.DB{dbtest.Postgres, dbtest.SharedPostgres} {
		t.Setenv("CI", "")
		f := runFake(t, func(tb testing.TB) { start(tb) })
		require.True(t, f.skipped, "skipped outside CI")
		require.False(t, f.failed)
		require.Contains(t, strings.Join(f.msgs, "\n"), "scripts/install-databases.sh")

		t.Setenv("CI", "true")
		f = runFake(t, func(tb testing.TB) { start(tb) })
		require.True(t, f.failed, "failed in CI")
		require.False(t, f.skipped)
		require.Contains(t, strings.Join(f.msgs, "\n"), "scripts/install-databases.sh")
	}
}

// TestExecFails: an error in any statement of a script fails the test,
// with the server's message.
func TestExecFails(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k.kind), func(t *testing.T) {
			db := k.shared(t)
			f := runFake(t, func(tb testing.TB) {
				db.Exec(tb, `CREATE TABLE ok_table (n int); INSERT INTO no_such_table VALUES (1)`)
			})
			require.True(t, f.failed, "a failing second statement must fail the test")
			require.Contains(t, strings.Join(f.msgs, "\n"), "no_such_table")
			f = runFake(t, func(tb testing.TB) { db.QueryStrings(tb, `SELECT nope FROM nowhere`) })
			require.True(t, f.failed)
		})
	}
}
