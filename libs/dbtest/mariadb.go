package dbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// mariadbEngine runs MariaDB (or MySQL-named binaries of it).
type mariadbEngine struct {
	server    string // mariadbd
	installDB string // mariadb-install-db
}

// findMariaDB looks for the server and its install script in
// OUTPOST_MARIADB_BIN, then where Debian puts them, then on PATH.
func findMariaDB() (*mariadbEngine, error) {
	var extra []string
	if dir := os.Getenv(EnvMariaDBBin); dir != "" {
		extra = []string{dir}
	}
	server := findExecutable(append(extra, "/usr/sbin", "/usr/libexec", "/usr/bin"), "mariadbd", "mysqld")
	installDB := findExecutable(append(extra, "/usr/bin", "/usr/sbin", "/usr/local/bin"), "mariadb-install-db", "mysql_install_db")
	if server == "" || installDB == "" {
		return nil, fmt.Errorf("MariaDB server (mariadbd, mariadb-install-db) not found in %s, /usr/sbin, /usr/bin or PATH: %s",
			EnvMariaDBBin, installHint)
	}
	return &mariadbEngine{server: server, installDB: installDB}, nil
}

// findExecutable returns the first of names found in dirs, then on PATH,
// or "".
func findExecutable(dirs []string, names ...string) string {
	for _, name := range names {
		for _, dir := range dirs {
			if hasAll(dir, name) {
				return filepath.Join(dir, name)
			}
		}
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	return ""
}

func (e *mariadbEngine) kind() Kind                  { return KindMariaDB }
func (e *mariadbEngine) driver() string              { return "mysql" }
func (e *mariadbEngine) adminUser() string           { return "root" }
func (e *mariadbEngine) stopSignal() syscall.Signal  { return syscall.SIGTERM }
func (e *mariadbEngine) deathSignal() syscall.Signal { return syscall.SIGKILL }

// innoDB are the storage settings of both the install and the server:
// small, and durability traded for speed.
var innoDB = []string{
	"--innodb-buffer-pool-size=32M",
	"--innodb-log-file-size=8M",
	"--innodb-flush-log-at-trx-commit=0",
	"--innodb-doublewrite=0",
	"--innodb-use-native-aio=0", // io_uring and libaio are often barred in containers
}

// initialize runs mariadb-install-db without the system's option files,
// with root authenticated by password (set at start by the init file).
func (e *mariadbEngine) initialize(s *server) error {
	argv := append([]string{
		e.installDB,
		"--no-defaults", // must come first
		"--datadir=" + filepath.Join(s.dir, "data"),
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--skip-name-resolve",
	}, innoDB...)
	if err := run(argv, s.dir, s.cred, setupTimeout); err != nil {
		return err
	}
	// Run before the server takes connections, at every start: root over
	// TCP from 127.0.0.1 needs the admin password. (root@localhost, over
	// the socket in the private folder, keeps an empty one.)
	init := fmt.Sprintf(`CREATE USER IF NOT EXISTS 'root'@'127.0.0.1';
ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY %[1]s;
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
DROP USER IF EXISTS 'root'@'::1';
`, myLiteral(s.adminPassword))
	return writeOwned(filepath.Join(s.dir, "init.sql"), []byte(init), s.cred)
}

// command listens on 127.0.0.1 only, with the socket and every file in the
// server's folder and no option file read.
func (e *mariadbEngine) command(s *server) []string {
	return append([]string{
		e.server,
		"--no-defaults", // must come first
		"--datadir=" + filepath.Join(s.dir, "data"),
		"--tmpdir=" + filepath.Join(s.dir, "tmp"),
		"--socket=" + filepath.Join(s.dir, "mysqld.sock"),
		"--pid-file=" + filepath.Join(s.dir, "mysqld.pid"),
		"--init-file=" + filepath.Join(s.dir, "init.sql"),
		"--bind-address=127.0.0.1",
		"--port=" + strconv.Itoa(s.port),
		"--skip-name-resolve",
		"--skip-log-bin",
		"--character-set-server=utf8mb4",
		"--collation-server=utf8mb4_general_ci",
		"--max-connections=200",
	}, innoDB...)
}

func (e *mariadbEngine) dsn(port int, user, password, database string, multi bool) string {
	cfg := mysql.NewConfig()
	cfg.User = user
	cfg.Passwd = password
	cfg.Net = "tcp"
	cfg.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cfg.DBName = database
	cfg.Timeout = 10 * time.Second
	cfg.MultiStatements = multi
	return cfg.FormatDSN()
}

// createDatabase creates a database and a user allowed everything in it
// and nothing elsewhere.
func (e *mariadbEngine) createDatabase(ctx context.Context, admin *sql.DB, database, user, password string) error {
	db, account := myIdent(database), myLiteral(user)+"@'%'"
	for _, stmt := range []string{
		"CREATE DATABASE " + db + " CHARACTER SET utf8mb4",
		"CREATE USER " + account + " IDENTIFIED BY " + myLiteral(password),
		"GRANT ALL PRIVILEGES ON " + db + ".* TO " + account,
	} {
		if _, err := admin.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", strings.SplitN(stmt, " IDENTIFIED BY ", 2)[0], err)
		}
	}
	return nil
}

// dropDatabase drops the database and its user.
func (e *mariadbEngine) dropDatabase(ctx context.Context, admin *sql.DB, database, user string) error {
	var errs []error
	for _, stmt := range []string{
		"DROP DATABASE IF EXISTS " + myIdent(database),
		"DROP USER IF EXISTS " + myLiteral(user) + "@'%'",
	} {
		if _, err := admin.ExecContext(ctx, stmt); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", stmt, err))
		}
	}
	return errors.Join(errs...)
}

// myIdent quotes a MariaDB identifier.
func myIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// myLiteral quotes a MariaDB string literal (backslashes escape by default).
func myLiteral(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}
