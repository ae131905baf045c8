package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/testenv"
)

const (
	// dirPrefix starts the name of every server folder, so that a later
	// run can find and remove those of a killed one.
	dirPrefix = "outpost-dbtest-"
	// ownerFile in a server folder holds the pid of the test process.
	ownerFile = "owner.pid"
	// setupTimeout bounds initdb / mariadb-install-db.
	setupTimeout = 2 * time.Minute
	// readyTimeout bounds the wait for a started server to accept
	// connections.
	readyTimeout = time.Minute
	// stopGrace is how long a server may take to shut down cleanly before
	// it is killed.
	stopGrace = 15 * time.Second
	// portAttempts bounds the starts retried because another process took
	// the free port between our check and the server's bind.
	portAttempts = 3
	// maxSweep bounds the stale folders looked at per start.
	maxSweep = 200
)

// engine is what differs between PostgreSQL and MariaDB.
type engine interface {
	kind() Kind
	// initialize creates the data folder of s under s.dir, with
	// s.adminPassword for the superuser.
	initialize(s *server) error
	// command is the server's command line for listening on s.port.
	command(s *server) []string
	// stopSignal asks the server for a quick clean shutdown.
	stopSignal() syscall.Signal
	// deathSignal is what the server gets when the test process dies.
	deathSignal() syscall.Signal
	driver() string
	// dsn is a DSN for 127.0.0.1:port; multi allows several statements in
	// one Exec where the driver needs to be told.
	dsn(port int, user, password, database string, multi bool) string
	adminUser() string
	createDatabase(ctx context.Context, admin *sql.DB, database, user, password string) error
	dropDatabase(ctx context.Context, admin *sql.DB, database, user string) error
}

// newEngine finds kind's binaries, or says which are missing and how to
// install them.
func newEngine(kind Kind) (engine, error) {
	switch kind {
	case KindPostgres:
		return findPostgres()
	case KindMariaDB:
		return findMariaDB()
	}
	return nil, fmt.Errorf("unknown database kind %q", kind)
}

// server is a running database server and its folder.
type server struct {
	eng           engine
	dir           string              // private folder: data, socket, temporary files
	cred          *syscall.Credential // who the server runs as; nil: as the test process
	port          int
	adminPassword string
	proc          *testenv.Process
	admin         *sql.DB // superuser pool, no particular database

	stopOnce sync.Once
	done     chan struct{} // closed by stop
}

// start creates and starts a server and waits until it accepts
// connections. own receives the server before anything is started and must
// make sure stop is called, even when start ends t with FailNow.
func start(t testing.TB, eng engine, own func(*server)) *server {
	t.Helper()
	cred, who, err := runAs()
	require.NoError(t, err, "dbtest: %s", eng.kind())
	password, err := randomHex(16)
	require.NoError(t, err)
	s := &server{eng: eng, cred: cred, adminPassword: password, done: make(chan struct{})}
	own(s)

	base := tempBase(cred != nil)
	sweepStale(base)
	s.dir, err = makeDir(base, dirPrefix+string(eng.kind())+"-", cred)
	require.NoError(t, err, "dbtest: %s folder%s (%s names the user the servers run as when the tests run as root)", eng.kind(), who, EnvUser)
	require.NoError(t, writeOwned(filepath.Join(s.dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), cred))
	_, err = makeDir(s.dir, "tmp", cred)
	require.NoError(t, err)

	begin := time.Now()
	require.NoError(t, eng.initialize(s), "dbtest: initialize %s in %s%s", eng.kind(), s.dir, who)
	initialized := time.Since(begin)

	ready := false
	for attempt := 1; attempt <= portAttempts; attempt++ {
		s.port, err = pickPort()
		require.NoError(t, err)
		s.proc, err = launch(eng.command(s), s.dir, cred, eng.deathSignal(), eng.stopSignal())
		require.NoError(t, err, "dbtest: %s", eng.kind())
		s.admin, err = sql.Open(eng.driver(), eng.dsn(s.port, eng.adminUser(), s.adminPassword, "", true))
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			if s.proc.Exited() {
				return true
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			return s.admin.PingContext(ctx) == nil
		}, readyTimeout, 25*time.Millisecond,
			"dbtest: %s on 127.0.0.1:%d does not accept connections within %s; its output:\n%s",
			eng.kind(), s.port, readyTimeout, s.proc.Logs())
		if !s.proc.Exited() {
			ready = true
			break
		}
		_ = s.admin.Close()
		if !strings.Contains(s.proc.Logs(), "Address already in use") {
			t.Fatalf("dbtest: %s exited before accepting connections (%v)%s; its output:\n%s", eng.kind(), s.proc.Err(), who, s.proc.Logs())
		}
		t.Logf("dbtest: port %d was taken before %s could bind it (attempt %d of %d)", s.port, eng.kind(), attempt, portAttempts)
	}
	if !ready {
		t.Fatalf("dbtest: %s found no free port in %d attempts; its output:\n%s", eng.kind(), portAttempts, s.proc.Logs())
	}
	t.Logf("dbtest: %s ready on 127.0.0.1:%d in %s (initialize %s)%s, folder %s",
		eng.kind(), s.port, time.Since(begin).Round(time.Millisecond), initialized.Round(time.Millisecond), who, s.dir)
	return s
}

// stop shuts the server down, kills it if it does not stop within
// stopGrace, and removes its folder. Safe to call more than once.
func (s *server) stop() {
	s.stopOnce.Do(func() {
		close(s.done)
		if s.admin != nil {
			_ = s.admin.Close()
		}
		if s.proc != nil {
			_ = s.proc.Stop() // killed after stopGrace: stopped all the same
		}
		if s.dir != "" {
			_ = os.RemoveAll(s.dir)
		}
	})
}

func (s *server) stopped() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// runAs is who the servers run as: the test process's user, or when that
// is root (PostgreSQL refuses to run as root) the unprivileged user named
// by OUTPOST_DBTEST_USER, nobody by default. who describes it for logs.
func runAs() (cred *syscall.Credential, who string, err error) {
	if os.Geteuid() != 0 {
		return nil, "", nil
	}
	name := os.Getenv(EnvUser)
	if name == "" {
		name = "nobody"
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, "", fmt.Errorf("look up user %s to run the server as (the tests run as root; set %s to an unprivileged user): %w", name, EnvUser, err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, "", fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, "", fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	if uid == 0 {
		return nil, "", fmt.Errorf("%s=%s is root: PostgreSQL refuses to run as root, name an unprivileged user", EnvUser, name)
	}
	// An empty Groups drops the supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, " as user " + name, nil
}

// tempBase is where server folders go: the temporary folder, unless the
// server user cannot reach it or its path is too long for unix sockets
// (108 bytes with the socket name), then /tmp.
func tempBase(otherUser bool) string {
	base := os.TempDir()
	if len(base) > 60 || (otherUser && !searchableByAll(base)) {
		return "/tmp"
	}
	return base
}

// searchableByAll tells whether every folder from / down to dir lets any
// user through (the x bit for others).
func searchableByAll(dir string) bool {
	dir = filepath.Clean(dir)
	for range 64 { // bounded: deeper paths are not worth the walk
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return true
		}
		dir = parent
	}
	return false
}

// makeDir creates a private (0700) folder under parent, named prefix plus
// a random suffix when prefix ends in "-", owned by cred's user.
func makeDir(parent, prefix string, cred *syscall.Credential) (string, error) {
	var dir string
	var err error
	if strings.HasSuffix(prefix, "-") {
		dir, err = os.MkdirTemp(parent, prefix)
	} else {
		dir = filepath.Join(parent, prefix)
		err = os.Mkdir(dir, 0o700)
	}
	if err != nil {
		return "", fmt.Errorf("create folder: %w", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return "", fmt.Errorf("give %s to uid %d: %w", dir, cred.Uid, err)
		}
	}
	return dir, nil
}

// writeOwned writes a private (0600) file owned by cred's user.
func writeOwned(path string, data []byte, cred *syscall.Credential) error {
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if cred != nil {
		if err := os.Chown(path, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("give %s to uid %d: %w", path, cred.Uid, err)
		}
	}
	return nil
}

// sweepStale removes the server folders under base left by test processes
// that are gone (killed before they could clean up). Folders of running
// processes, and those this user may not remove, stay.
func sweepStale(base string) {
	dirs, err := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
	if err != nil {
		return
	}
	for i, dir := range dirs {
		if i >= maxSweep {
			return
		}
		raw, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

// pickPort chooses the port of a server; tests replace it.
var pickPort = freePort

// freePort is a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ports, err := testenv.FreePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// launch starts argv in dir as cred's user, in its own process group,
// with sig as its parent-death signal and stop as its stop signal, and with
// an environment free of the test's client settings.
func launch(argv []string, dir string, cred *syscall.Credential, sig, stop syscall.Signal) (*testenv.Process, error) {
	env := []string{"LC_ALL=C", "HOME=" + dir, "TMPDIR=" + filepath.Join(dir, "tmp")}
	for _, kv := range os.Environ() {
		if name, _, _ := strings.Cut(kv, "="); name == "PATH" || name == "TZ" {
			env = append(env, kv)
		}
	}
	p, err := testenv.Launch(testenv.Spec{
		Path:        argv[0],
		Args:        argv[1:],
		Env:         env,
		Dir:         dir,
		Credential:  cred,
		DeathSignal: sig,
		StopSignal:  stop,
		Grace:       stopGrace,
		LogLimit:    logLimit,
	})
	if err != nil {
		return nil, fmt.Errorf("dbtest: %w", err)
	}
	return p, nil
}

// logLimit is how much of a server's output is kept for error messages.
const logLimit = 32 << 10

// run runs argv to its end, killing it after timeout, and returns its
// output with the error.
func run(argv []string, dir string, cred *syscall.Credential, timeout time.Duration) error {
	p, err := launch(argv, dir, cred, syscall.SIGKILL, syscall.SIGTERM)
	if err != nil {
		return err
	}
	if !p.Wait(timeout) {
		_ = p.Kill()
		return fmt.Errorf("%s did not finish within %s; its output:\n%s", filepath.Base(argv[0]), timeout, p.Logs())
	}
	if err := p.Err(); err != nil {
		return fmt.Errorf("%s: %w; its output:\n%s", filepath.Base(argv[0]), err, p.Logs())
	}
	return nil
}
